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
from .registry import ModuleRef, ModuleSpec, Registry, RegistryError, resolve_registry


def module_class(ref: ModuleRef) -> type[nn.Module]:
    """The class a registry entry names: `nn.Name` from torch.nn, `Name` from graphs.torch_ops, or
    the class itself. RegistryError when that is not an nn.Module class."""
    if isinstance(ref, type):
        cls = ref
    elif isinstance(ref, str) and ref.startswith("nn."):
        cls = getattr(nn, ref[3:], None)
    elif isinstance(ref, str):
        cls = getattr(torch_ops, ref, None)
    else:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise RegistryError(f"module {ref!r} is not an nn.Module class; a registry entry names 'nn.Name' "
                            f"(torch.nn), a class of graphs.torch_ops, or a module class")
    return cls


def instantiate(spec: ModuleSpec, registry: Registry | None = None) -> nn.Module:
    """Build a module whose class a registry entry names; nothing from text is ever evaluated,
    and block text cannot pick a class: only the registry's `module` entries are allowed."""
    reg = resolve_registry(registry)
    if spec.cls not in reg.module_refs:
        raise RegistryError(f"module class {spec.cls!r} is not named by any op of the registry")
    return module_class(spec.cls)(*spec.args, **dict(spec.kwargs))


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


def compile_layout(lay: Layout, class_name: str = "NaderNet", registry: Registry | None = None) -> Compiled:
    reg = resolve_registry(registry)
    graph = fx.Graph()
    root = nn.Module()
    specs: dict[str, ModuleSpec] = {}
    current = graph.placeholder("x")
    for sec in lay.sections:
        ctxs = section_contexts(sec, reg)
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
                spec = reg.lookup(op).module_spec(ctxs[nid])
                name = f"{sec.prefix}_n{nid}"
                root.add_module(name, instantiate(spec, reg))
                specs[name] = spec
                values[nid] = graph.call_module(name, tuple(values[s] for s in srcs))
    graph.output(current)
    gm = fx.GraphModule(root, graph, class_name=class_name)
    return Compiled(gm, lay, specs, layout_cost(lay, registry=reg))


def build_model(arch: Block | Architecture, macro: str = "nader", dataset: str | DatasetShape = "cifar10",
                x: int | None = None, registry: Registry | None = None) -> Compiled:
    """Compile a base block (with the macro's stem and downsample) or an architecture.
    For `nader` without x, the width is fitted to the default budget."""
    if macro == "nader" and x is None:
        from .cost import fit_width

        x = fit_width(arch, dataset, registry=registry).widths[0]
    return compile_layout(layout(arch, macro, dataset, x), registry=registry)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
