"""Export a compiled network as one standalone Python file that imports only torch.

The file rebuilds the same module tree (same attribute names, so state dicts load both ways)
from the recorded ModuleSpecs, and its forward is the code torch.fx generated for the graph.
Module classes outside torch.nn (graphs.torch_ops, or a class an extension op names) are embedded
as their source, so each must stand alone on torch.
"""
from __future__ import annotations

import inspect
import textwrap

from .compile import Compiled, module_class
from .registry import ModuleSpec, RegistryError

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
    return f"{spec.source_name}({', '.join(parts)})"


def _class_sources(specs: list[ModuleSpec], reserved: set[str]) -> list[str]:
    """Source of each non-torch.nn class used, in order of first use; names must not clash."""
    out, seen = [], {}
    for spec in specs:
        if isinstance(spec.cls, str) and spec.cls.startswith("nn."):
            continue
        cls = module_class(spec.cls)
        name = spec.source_name
        if name in seen:
            if seen[name] is not cls:
                raise RegistryError(f"two module classes are both named {name!r}; exported source needs distinct names")
            continue
        if name in reserved:
            raise RegistryError(f"module class name {name!r} clashes with a name of the exported file")
        seen[name] = cls
        try:
            out.append(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError) as exc:
            raise RegistryError(f"cannot export module class {name!r}: its source is not available ({exc}); "
                                f"define it at the top level of a .py file") from None
    return out


def _normalization(mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    return (f"# The input normalisation the model was trained with: images in [0, 1], per channel.\n"
            f"MEAN = {tuple(round(float(m), 6) for m in mean)!r}\n"
            f"STD = {tuple(round(float(s), 6) for s in std)!r}\n\n\n"
            "def normalize(x: torch.Tensor) -> torch.Tensor:\n"
            '    """(B, C, H, W) images in [0, 1] -> what the model takes."""\n'
            "    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)\n"
            "    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)\n"
            "    return (x - mean) / std\n")


def export_source(compiled: Compiled, class_name: str = "NaderNet",
                  normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> str:
    """`normalization`: (mean, std) per channel of the training data, written as MEAN, STD and
    normalize() beside the model (a model is only usable with the inputs it was trained on)."""
    lay = compiled.layout
    classes = _class_sources(list(compiled.specs.values()), {class_name, "build_model", "torch", "nn"})
    init = "\n".join(f"        self.{name} = {_render(spec)}" for name, spec in compiled.specs.items())
    forward = textwrap.indent(compiled.module.code.strip("\n"), "    ")
    parts = [
        _HEADER.format(macro=lay.macro, widths=list(lay.widths), dataset=lay.dataset.name,
                       classes=lay.dataset.num_classes, size=lay.dataset.image_size,
                       params=compiled.cost.params, flops=compiled.cost.flops),
        *([_normalization(*normalization)] if normalization else []),
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
