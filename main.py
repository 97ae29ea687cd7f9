"""Entry point. Until the design team lands (issue 4), this runs the block-DAG core end to end on
the embedded defaults, offline: a base block is validated, hashed, fitted to the size budget,
compiled, run forward and backward, and exported as standalone PyTorch source.

    python main.py                      # NADER's ResNet basic block, CIFAR-10 budget
    python main.py path/to/block.txt cifar100
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

DEFAULT_BLOCK = """##ResNetBasic##
0:input
1:output
2:Conv2d(out_channels=C,kernel_size=3)
3:BN
4:ReLU
5:Conv2d(out_channels=C,kernel_size=3)
6:BN
7:Add
8:ReLU
0->2
2->3
3->4
4->5
5->6
6,0->7
7->8
8->1
"""


def main(argv: list[str]) -> int:
    import torch

    from graphs.compile import build_model, count_params
    from graphs.cost import fit_width
    from graphs.export import export_source
    from graphs.hashing import canonical_hash
    from graphs.ir import parse_block
    from graphs.validate import validate

    text = Path(argv[0]).read_text() if argv else DEFAULT_BLOCK
    dataset = argv[1] if len(argv) > 1 else "cifar10"
    block = parse_block(text)
    issues = validate(block, "base")
    if issues:
        for i in issues:
            print(i)
        return 1
    print(f"block {block.name}: valid, hash {canonical_hash(block)}")
    t = time.perf_counter()
    fit = fit_width(block, dataset)
    print(f"fitted to {dataset}: widths {list(fit.widths)}, {fit.params:,} params, {fit.flops:,} MACs "
          f"({(time.perf_counter() - t) * 1000:.1f} ms)")
    compiled = build_model(block, "nader", dataset, fit.widths[0])
    size = compiled.layout.dataset.image_size
    out = compiled.module(torch.randn(2, 3, size, size))
    out.logsumexp(1).mean().backward()
    print(f"compiled: {count_params(compiled.module):,} params, forward {tuple(out.shape)}, backward ok")
    dest = Path("outputs") / f"{block.name}_{dataset}.py"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(export_source(compiled))
    print(f"standalone source: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
