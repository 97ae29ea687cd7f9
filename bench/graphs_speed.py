"""Speed of the block-DAG core (issue 2 goals): validating a 30-node block (< 5 ms), hashing
10,000 blocks of about 20 nodes (< 2 s), budget fitting (< 50 ms per candidate).

    python bench/graphs_speed.py
"""
from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from graphs.cost import fit_width  # noqa: E402
from graphs.hashing import canonical_hash  # noqa: E402
from graphs.ir import parse_block  # noqa: E402
from graphs.registry import DEFAULT_REGISTRY  # noqa: E402
from graphs.validate import validate  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"


def op_text(name: str, **params) -> str:
    """An op's text with the registry's spelling; a name the registry lacks stops the benchmark."""
    spec = DEFAULT_REGISTRY.lookup(name)
    if spec is None:
        raise SystemExit(f"bench op {name!r} is not in the registry: {', '.join(DEFAULT_REGISTRY.names)}")
    body = ",".join(f"{k}={v}" for k, v in params.items())
    return f"{spec.name}({body})" if body else spec.name


# The shape-keeping ops of the workload (fixed, so figures compare across versions).
OPS = [op_text("Conv2d", out_channels="C", kernel_size=3), op_text("Conv2d", out_channels="C", kernel_size=1),
       op_text("BN"), op_text("ReLU"), op_text("GELU"), op_text("Conv2d", out_channels="C", kernel_size=3, groups="C"),
       op_text("AvgPool2d", kernel_size=3), op_text("MaxPool2d", kernel_size=3),
       op_text("Conv2d", out_channels="C", kernel_size=5, dilation=2), op_text("Sigmoid")]


def chain_block(n_nodes: int, rng: random.Random) -> str:
    """A valid random base block: a chain of ops with residual Adds every few nodes."""
    lines, edges, prev, nid = ["0:input", "1:output"], [], 0, 2
    while nid < n_nodes:
        lines.append(f"{nid}:{rng.choice(OPS)}")
        edges.append(f"{prev}->{nid}")
        prev, nid = nid, nid + 1
        if nid % 5 == 0 and nid < n_nodes:
            lines.append(f"{nid}:{op_text('Add')}")
            edges.append(f"{prev},0->{nid}")
            prev, nid = nid, nid + 1
    edges.append(f"{prev}->1")
    return "\n".join(lines + edges) + "\n"


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    rng = random.Random(0)
    text30 = chain_block(30, rng)
    b30 = parse_block(text30)
    assert not validate(b30), validate(b30)
    v = timed(lambda: validate(text30), 200)
    print(f"validate 30-node block (parse included): median {statistics.median(v) * 1e3:.2f} ms "
          f"(goal < 5 ms)")

    blocks = [parse_block(chain_block(20, rng)) for _ in range(10_000)]
    t = time.perf_counter()
    for b in blocks:
        canonical_hash(b)
    hash_s = time.perf_counter() - t
    print(f"hash 10,000 blocks of 20 nodes: {hash_s:.2f} s (goal < 2 s)")

    corpus = [parse_block(p.read_text()) for p in sorted(CORPUS.glob("*.txt"))
              if p.stem not in ("stem_conv", "resnet_reduction")] + blocks[:20]
    times = []
    for b in corpus:
        times += timed(lambda: fit_width(b, "cifar10"), 3)
    print(f"budget fitting ({len(corpus)} candidates x 3): median {statistics.median(times) * 1e3:.1f} ms, "
          f"max {max(times) * 1e3:.1f} ms (goal < 50 ms)")


if __name__ == "__main__":
    main()
