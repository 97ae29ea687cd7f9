"""Shape inference over a structurally sound block: resolve each node's parameters at the given
symbol values, then run the op's shape rule in topological order."""
from __future__ import annotations

from typing import Any

from .dims import Dim
from .errors import ErrorCode as E, Issue, issue
from .expr import MAX_INT, Expr
from .ir import Block, Node
from .registry import REQUIRED, Ctx, OpSpec, Param, Registry, param_signature, resolve_registry
from .shapes import ShapeError, input_shape


def named_values(node: Node, spec: OpSpec) -> dict[str, Any]:
    """Named and positional values of a node by parameter name (positional ones in schema order)."""
    given = dict(node.params)
    if node.args:
        if spec.varargs:
            given[spec.varargs] = node.args if len(node.args) > 1 else node.args[0]
        else:
            for p, a in zip(spec.params, node.args):
                given[p.name] = a
    return given


def param_issues(node: Node, spec: OpSpec) -> list[Issue]:
    """Unknown, missing, repeated and misplaced parameters, and symbols an op may not use."""
    out = []
    given = dict(node.params)
    if node.args and not spec.varargs:
        if len(node.args) > len(spec.params):
            out.append(issue(node.id, E.UNKNOWN_PARAM, f"{spec.name} takes at most {len(spec.params)} positional "
                                                       f"values, got {len(node.args)}"))
        for p in spec.params[: len(node.args)]:
            if p.name in given:
                out.append(issue(node.id, E.BAD_PARAM, f"{spec.name}: {p.name} given both by position and by name"))
    if node.args and spec.varargs and spec.varargs in given:
        out.append(issue(node.id, E.BAD_PARAM, f"{spec.name}: {spec.varargs} given both by position and by name"))
    valid = ", ".join(spec.param_names) or "none"
    for k in given:
        if k not in spec.param_names:
            out.append(issue(node.id, E.UNKNOWN_PARAM, f"{spec.name} has no parameter {k!r}; valid parameters: {valid}"))
    values = named_values(node, spec)
    for p in spec.params:
        if p.required and p.name not in values:
            out.append(issue(node.id, E.MISSING_PARAM, f"{spec.name} needs parameter {p.name!r} "
                                                       f"(parameters: {param_signature(spec) or 'none'})"))
    for name, v in values.items():
        for e in _exprs(v):
            bad = e.symbols - spec.symbols
            if bad:
                out.append(issue(node.id, E.BAD_PARAM, f"{spec.name}: {name}={e.text} uses {', '.join(sorted(bad))}; "
                                                       f"{spec.name} parameters may use only {', '.join(sorted(spec.symbols))}"))
    return out


def _exprs(v):
    if isinstance(v, Expr):
        yield v
    elif isinstance(v, tuple):
        for x in v:
            yield from _exprs(x)


def resolve(node: Node, spec: OpSpec, env: dict[str, Dim]) -> dict[str, Any]:
    """Parameter values at the given symbol values, checked against their kinds."""
    width = len(env["C"].vals)
    values = named_values(node, spec)
    out = {}
    for p in spec.params:
        v = values.get(p.name, p.default)
        if v is REQUIRED:
            raise ShapeError(E.MISSING_PARAM, f"{spec.name} needs parameter {p.name!r}")
        out[p.name] = _resolve_one(spec, p, v, env, width)
    return out


def _bad(spec: OpSpec, p: Param, v, want: str) -> ShapeError:
    from .expr import show_value
    return ShapeError(E.BAD_PARAM, f"{spec.name}: {p.name}={show_value(v)} is not valid; expected {want}")


def _as_dim(spec, p, v, env, width) -> Dim:
    if not isinstance(v, Expr):
        raise _bad(spec, p, v, "an integer or an expression in C and dim")
    try:
        d = v.evaluate(env)
    except ZeroDivisionError:
        raise ShapeError(E.BAD_PARAM, f"{spec.name}: {p.name}={v.text} divides by zero") from None
    d = d if isinstance(d, Dim) else Dim.const(d, width)
    big = [x for x in d.vals if abs(x) > MAX_INT]
    if big:
        raise ShapeError(E.BAD_PARAM, f"{spec.name}: {p.name}={v.text} evaluates to {big[0]}, which is out of range "
                                      f"(|value| <= {MAX_INT:,})")
    return d


def _const(spec, p, v, env, width, minimum) -> int:
    if not isinstance(v, Expr):
        raise _bad(spec, p, v, "an integer")
    d = _as_dim(spec, p, v, env, width)
    if not d.is_const:
        raise ShapeError(E.BAD_PARAM, f"{spec.name}: {p.name}={v.text} must be a fixed integer, not depend on the widths")
    if minimum is not None and d.value < minimum:
        raise ShapeError(E.BAD_PARAM, f"{spec.name}: {p.name}={d.value} must be >= {minimum}")
    if abs(d.value) > 4096:
        raise ShapeError(E.BAD_PARAM, f"{spec.name}: {p.name}={d.value} is out of range (|value| <= 4096)")
    return d.value


def _resolve_one(spec: OpSpec, p: Param, v, env, width):
    kind = p.kind
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, Expr) and v.text in ("0", "1"):
            return v.text == "1"
        raise _bad(spec, p, v, "True or False")
    if kind == "float":
        if isinstance(v, Expr) and not v.symbols:
            v = v.evaluate(env)  # no symbols: a plain int
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            raise _bad(spec, p, v, "a probability in [0, 1)")
        return float(v)
    if kind == "channels":
        if isinstance(v, int) and not isinstance(v, bool):  # a default
            return Dim.const(v, width)
        return _as_dim(spec, p, v, env, width)
    if kind == "int":
        return v if isinstance(v, int) and not isinstance(v, bool) else _const(spec, p, v, env, width, p.minimum)
    if kind == "pair":
        if isinstance(v, int) and not isinstance(v, bool):
            return (v, v)
        if isinstance(v, tuple):
            if len(v) != 2:
                raise _bad(spec, p, v, "an integer or a pair (h,w)")
            return tuple(_const(spec, p, x, env, width, p.minimum) for x in v)
        k = _const(spec, p, v, env, width, p.minimum)
        return (k, k)
    if kind == "axis":
        return v if isinstance(v, int) and not isinstance(v, bool) else _const(spec, p, v, env, width, None)
    if kind == "axes":
        items = v if isinstance(v, tuple) else (v,)
        return tuple(_const(spec, p, x, env, width, None) for x in items)
    if kind == "shape":
        items = v if isinstance(v, tuple) else (v,)
        if len(items) > 8:
            raise _bad(spec, p, v, "at most 8 sizes")
        return tuple(_as_dim(spec, p, x, env, width) for x in items)
    raise AssertionError(f"unknown parameter kind {kind}")


def topo_order(block: Block) -> list[int] | None:
    """Kahn's algorithm, ties broken by node id so the order is reproducible; None on a cycle."""
    import heapq

    ins = block.inputs
    indeg = {n.id: len(ins.get(n.id, [])) for n in block.nodes}
    ready = [n for n, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for m in block.consumers.get(n, []):
            indeg[m] -= 1
            if indeg[m] == 0:
                heapq.heappush(ready, m)
    return order if len(order) == len(block.nodes) else None


def infer(block: Block, env: dict[str, Dim], order: list[int],
          registry: Registry | None = None) -> tuple[dict[int, Ctx], list[Issue]]:
    """Run shape rules in `order`; a node whose inputs failed is skipped, not reported again."""
    reg = resolve_registry(registry)
    ctxs: dict[int, Ctx] = {}
    issues: list[Issue] = []
    nodes = block.node_map
    for nid in order:
        node = nodes[nid]
        spec = reg.lookup(node.op)
        srcs = block.inputs.get(nid, [])
        if spec is None or any(s not in ctxs for s in srcs):
            continue
        ins = [ctxs[s].out for s in srcs]
        try:
            params = resolve(node, spec, env)
            ctx = Ctx(nid, spec.name, params, ins, env)
            ctx.out = input_shape(env) if spec.name == "input" else spec.shape(ctx)
        except ShapeError as exc:
            issues.append(issue(nid, exc.code, exc.message))
            continue
        ctxs[nid] = ctx
    return ctxs, issues
