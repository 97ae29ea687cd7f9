"""Export a compiled network as one standalone Python file that imports only torch.

The file rebuilds the same module tree (same attribute names, so state dicts load both ways)
from the recorded ModuleSpecs, and its forward is the code torch.fx generated for the graph.
"""
from __future__ import annotations

import inspect
import textwrap

from . import torch_ops
from .compile import Compiled
from .registry import ModuleSpec

_HEADER = '''"""Standalone PyTorch model exported by nader-autogen ({macro} macro, widths {widths}, {dataset}: \
{classes} classes, {size}x{size} input).

Analytic cost at batch 1: {params:,} parameters, {flops:,} multiply-accumulates.
Needs only torch. Usage: `model = build_model()`.
"""
import torch
from torch import nn
'''


def _render(spec: ModuleSpec) -> str:
    parts = [repr(a) for a in spec.args] + [f"{k}={v!r}" for k, v in spec.kwargs]
    return f"{spec.cls}({', '.join(parts)})"


def export_source(compiled: Compiled, class_name: str = "NaderNet") -> str:
    lay = compiled.layout
    used = {s.cls for s in compiled.specs.values()}
    classes = [inspect.getsource(cls) for cls in torch_ops.CUSTOM if cls.__name__ in used]
    init = "\n".join(f"        self.{name} = {_render(spec)}" for name, spec in compiled.specs.items())
    forward = textwrap.indent(compiled.module.code.strip("\n"), "    ")
    parts = [
        _HEADER.format(macro=lay.macro, widths=list(lay.widths), dataset=lay.dataset.name,
                       classes=lay.dataset.num_classes, size=lay.dataset.image_size,
                       params=compiled.cost.params, flops=compiled.cost.flops),
        *classes,
        f"class {class_name}(nn.Module):\n"
        f"    def __init__(self):\n"
        f"        super().__init__()\n{init}\n\n"
        f"{forward}\n",
        f"def build_model():\n    return {class_name}()\n",
        'if __name__ == "__main__":\n'
        "    model = build_model()\n"
        f"    x = torch.randn(2, {lay.dataset.in_channels}, {lay.dataset.image_size}, {lay.dataset.image_size})\n"
        '    print(model(x).shape, sum(p.numel() for p in model.parameters()), "parameters")\n',
    ]
    return "\n\n".join(p.rstrip("\n") + "\n" for p in parts)
