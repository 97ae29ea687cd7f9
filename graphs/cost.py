"""Analytic cost of a network: exact parameter count and FLOPs as multiply-accumulates with
thop's per-op rules (the NADER budget convention), computed from the DAG without building it;
budget fitting of the `nader` width x; and `fit_design`, the one entry point that costs a design in
a macro under a budget (the design loop and `python -m graphs cost|export` use it).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, NamedTuple

from .errors import BlockError
from .infer import infer, topo_order
from .ir import Architecture, Block
from .macro import MACROS, DatasetShape, Layout, MacroError, Section, dataset_shape, layout
from .registry import Ctx, Registry, resolve_registry
from .shapes import concrete_env

MIN_WIDTH = 4
MAX_WIDTH = 4096


@dataclass(frozen=True)
class Budget:
    max_params: int = 1_500_000
    max_flops: int | None = None  # None: the dataset's default (0.2G at 32x32, 0.05G at 16x16)


@dataclass(frozen=True)
class Cost:
    params: int
    flops: int


@dataclass(frozen=True)
class Fit:
    widths: tuple[int, int, int]
    params: int
    flops: int


class DesignFit(NamedTuple):
    """A design costed in its macro: the `nader` base width x (None for a fixed-width macro), the
    stage widths, parameters and FLOPs (MACs)."""

    x: int | None
    widths: tuple[int, int, int]
    params: int
    flops: int


class BudgetError(ValueError):
    """The candidate cannot be made to fit the size budget at any allowed width."""


# What a run checks when the config does not say otherwise. nb201's widths are fixed, so its budget is
# only a check, set to admit the whole NB201 space (largest cell: 1.53M params, 224M MACs at 32x32).
MACRO_BUDGETS: Mapping[str, Budget] = MappingProxyType({
    "nader": Budget(),
    "nb201": Budget(max_params=1_600_000, max_flops=250_000_000),
})


def default_budget(macro: str) -> Budget:
    try:
        return MACRO_BUDGETS[macro]
    except KeyError:
        raise MacroError(f"unknown macro {macro!r}; valid macros: {', '.join(MACROS)}") from None


def section_contexts(sec: Section, registry: Registry | None = None) -> dict[int, Ctx]:
    """Inferred per-node contexts of one section at its real sizes; BlockError if it does not build."""
    order = topo_order(sec.block)
    if order is None:
        raise BlockError([])
    env = concrete_env(sec.c_in, sec.c_out, sec.size, sec.size)
    ctxs, issues = infer(sec.block, env, order, registry)
    if issues:
        raise BlockError(issues)
    if len(ctxs) != len(sec.block.nodes):
        raise BlockError([])
    return ctxs


def section_cost(sec: Section, registry: Registry | None = None) -> Cost:
    reg = resolve_registry(registry)
    params = flops = 0
    for ctx in section_contexts(sec, reg).values():
        spec = reg.lookup(ctx.op)
        params += spec.n_params(ctx)
        flops += spec.macs(ctx)
    return Cost(params, flops)


def layout_cost(lay: Layout, cache: dict | None = None, registry: Registry | None = None) -> Cost:
    """Sum over sections; identical sections (the N base blocks of a stage) are computed once.
    A `cache` is for one registry: callers pass the same registry with it."""
    cache = {} if cache is None else cache
    params = flops = 0
    for sec in lay.sections:
        key = (sec.block, sec.kind, sec.c_in, sec.c_out, sec.size)
        if key not in cache:
            cache[key] = section_cost(sec, registry)
        params += cache[key].params
        flops += cache[key].flops
    return Cost(params, flops)


def network_cost(arch: Block | Architecture, macro: str, dataset: str | DatasetShape, x: int | None = None,
                 registry: Registry | None = None) -> Cost:
    return layout_cost(layout(arch, macro, dataset, x), registry=registry)


def fit_design(arch: Block | Architecture, macro: str, dataset: str | DatasetShape, budget: Budget | None = None,
               registry: Registry | None = None) -> DesignFit:
    """The design costed in the macro under the budget (None: the macro's default, `default_budget`).
    `nader` fits the widths [x,2x,4x] to it; a fixed-width macro (`nb201`) is checked against it.
    BudgetError when it does not fit, BlockError when it does not build, MacroError for an unknown
    macro or dataset."""
    budget = default_budget(macro) if budget is None else budget
    ds = dataset_shape(dataset)
    if macro == "nader":
        fit = fit_width(arch, ds, budget, registry=registry)
        return DesignFit(fit.widths[0], fit.widths, fit.params, fit.flops)
    lay = layout(arch, macro, ds)
    c = layout_cost(lay, registry=registry)
    max_flops = budget.max_flops if budget.max_flops is not None else ds.max_flops
    if c.params > budget.max_params or c.flops > max_flops:
        raise BudgetError(f"{c.params:,} params (limit {budget.max_params:,}), {c.flops:,} FLOPs "
                          f"(limit {max_flops:,}) in the fixed-width {macro} skeleton on {ds.name}")
    return DesignFit(None, lay.widths, c.params, c.flops)


def fit_width(arch: Block | Architecture, dataset: str | DatasetShape, budget: Budget = Budget(),
              min_width: int = MIN_WIDTH, registry: Registry | None = None) -> Fit:
    """The largest x (widths [x,2x,4x]) whose network keeps params and FLOPs within budget.

    Cost grows with x, so a binary search finds the boundary; widths where the block does not
    build (e.g. groups that do not divide x) are skipped by stepping down to the nearest valid one.
    """
    ds = dataset_shape(dataset)
    max_flops = budget.max_flops if budget.max_flops is not None else ds.max_flops
    cache: dict = {}
    costs: dict[int, Cost | None] = {}

    def cost_at(x: int) -> Cost | None:
        if x not in costs:
            try:
                costs[x] = layout_cost(layout(arch, "nader", ds, x), cache, registry)
            except BlockError:
                costs[x] = None
        return costs[x]

    def valid_below(x: int) -> int | None:
        for y in range(x, max(min_width, x - 256) - 1, -1):
            if cost_at(y) is not None:
                return y
        return None

    def fits(x: int) -> bool:
        y = valid_below(x)
        if y is None:
            return True  # nothing buildable yet below x: keep looking higher
        c = costs[y]
        return c.params <= budget.max_params and c.flops <= max_flops

    first = valid_below(min_width)
    if first is not None and not fits(min_width):
        c = costs[first]
        raise BudgetError(f"does not fit the budget even at the smallest width x={first}: "
                          f"{c.params:,} params (limit {budget.max_params:,}), {c.flops:,} FLOPs "
                          f"(limit {max_flops:,}) on {ds.name}")
    lo, hi = min_width, min_width
    while hi < MAX_WIDTH and fits(hi):
        lo, hi = hi, min(hi * 2, MAX_WIDTH)
    if fits(hi):
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    best = valid_below(lo)
    if best is None:
        raise BudgetError(f"the block does not build at any width x in [{min_width}, {lo}] on {ds.name}")
    c = costs[best]
    if c.params > budget.max_params or c.flops > max_flops:
        raise BudgetError(f"does not fit the budget at any buildable width on {ds.name} "
                          f"(x={best}: {c.params:,} params, {c.flops:,} FLOPs)")
    return Fit((best, 2 * best, 4 * best), c.params, c.flops)
