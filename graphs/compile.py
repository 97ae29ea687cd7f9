"""Compile a macro network to PyTorch: one torch.fx graph whose nodes call flat submodules
(`<section>_n<id>`), so the same graph prints as standalone source (see export.py)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

from . import torch_ops
from .cost import Cost, layout_cost, section_contexts
from .infer import topo_order
from .ir import Architecture, Block
from .macro import DatasetShape, Layout, layout
from .registry import ModuleSpec, lookup

_CUSTOM = {cls.__name__: cls for cls in torch_ops.CUSTOM}
_TORCH = {"Conv2d", "Linear", "BatchNorm2d", "LayerNorm", "AvgPool2d", "MaxPool2d", "AdaptiveAvgPool2d",
          "AdaptiveMaxPool2d", "ReLU", "GELU", "Sigmoid", "Softmax"}


def instantiate(spec: ModuleSpec) -> nn.Module:
    """Build a module from a whitelisted class name; nothing from text is ever evaluated."""
    if spec.cls.startswith("nn.") and spec.cls[3:] in _TORCH:
        cls = getattr(nn, spec.cls[3:])
    elif spec.cls in _CUSTOM:
        cls = _CUSTOM[spec.cls]
    else:
        raise ValueError(f"module class {spec.cls!r} is not in the whitelist")
    return cls(*spec.args, **dict(spec.kwargs))


@dataclass
class Compiled:
    """The network plus what it was built from: layout, per-module specs (for export), analytic cost."""

    module: fx.GraphModule
    layout: Layout
    specs: dict[str, ModuleSpec]
    cost: Cost

    @property
    def widths(self) -> tuple[int, int, int]:
        return self.layout.widths


def compile_layout(lay: Layout, class_name: str = "NaderNet") -> Compiled:
    graph = fx.Graph()
    root = nn.Module()
    specs: dict[str, ModuleSpec] = {}
    current = graph.placeholder("x")
    for sec in lay.sections:
        ctxs = section_contexts(sec)
        block = sec.block
        values: dict[int, fx.Node] = {}
        for nid in topo_order(block):
            op = ctxs[nid].op
            srcs = block.inputs.get(nid, [])
            if op == "input":
                values[nid] = current
            elif op == "output":
                current = values[srcs[0]]
            else:
                spec = lookup(op).build(ctxs[nid])
                name = f"{sec.prefix}_n{nid}"
                root.add_module(name, instantiate(spec))
                specs[name] = spec
                values[nid] = graph.call_module(name, tuple(values[s] for s in srcs))
    graph.output(current)
    gm = fx.GraphModule(root, graph, class_name=class_name)
    return Compiled(gm, lay, specs, layout_cost(lay))


def build_model(arch: Block | Architecture, macro: str = "nader", dataset: str | DatasetShape = "cifar10",
                x: int | None = None) -> Compiled:
    """Compile a base block (with the macro's stem and downsample) or an architecture.
    For `nader` without x, the width is fitted to the default budget."""
    if macro == "nader" and x is None:
        from .cost import fit_width

        x = fit_width(arch, dataset).widths[0]
    return compile_layout(layout(arch, macro, dataset, x))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
