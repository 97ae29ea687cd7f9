"""Repair from validator feedback: the offline designer's Modifier reading the flow validator.

`repair(block, issues, rng)` turns typed validator issues into an edit list that fixes them, plus a
one-line rationale phrased as advice ("Node 7's Add has a single input; connect node 0 (the block
input) as its second input"). It works greedily: for the most basic open issue it tries a short
list of candidate fixes in order of how much of the design they keep (reconnect before remove),
keeps the first that makes the block measurably better (fewer issues, or issues only at a later
validation stage), and repeats on the result. The edits returned apply to the block given, in
order, atomically.
"""
from __future__ import annotations

import difflib
import random
from dataclasses import dataclass

from graphs.edits import (AddEdge, AddNode, Edit, InsertOnEdge, RemoveEdge, RemoveNode, ReplaceBlock, SetOp,
                          apply_edits)
from graphs.errors import BlockError, ErrorCode as E, Issue
from graphs.expr import show_value
from graphs.infer import named_values
from graphs.ir import Block, Node, print_block
from graphs.registry import OPS, lookup
from graphs.validate import validate

from .strategies import View, conv_op

__all__ = ["repair", "Fix", "candidates", "repair_duplicate", "DUPLICATE_CODE"]

_STRUCTURE = {E.SYNTAX, E.DUPLICATE_NODE, E.UNDEFINED_NODE, E.UNUSED_NODE, E.CYCLE, E.MISSING_INPUT_NODE,
              E.EXTRA_INPUT_NODE, E.MISSING_OUTPUT_NODE, E.EXTRA_OUTPUT_NODE, E.UNKNOWN_OP, E.UNKNOWN_PARAM,
              E.MISSING_PARAM, E.BAD_PARAM, E.ARITY, E.SECTIONS}
# Which issue to work on first: the validator's own order, most basic first.
_PRIORITY = [E.UNDEFINED_NODE, E.CYCLE, E.UNKNOWN_OP, E.UNKNOWN_PARAM, E.MISSING_PARAM, E.BAD_PARAM, E.ARITY,
             E.UNUSED_NODE, E.EXTRA_OUTPUT_NODE, E.EXTRA_INPUT_NODE, E.GROUPS, E.SAME_PADDING, E.EMPTY_DIM,
             E.CHANNEL_AXIS, E.RANK, E.RESHAPE, E.SHAPE_MISMATCH, E.OUTPUT_CONTRACT]
_MULTI = {"add", "mul", "concat", "multiply"}
_PASS = {"bn", "relu", "gelu", "sigmoid", "droppath", "avgpool2d", "maxpool2d", "softmax", "ln"}
_ALIASES = {
    "batchnorm": "BN", "batchnorm2d": "BN", "bn2d": "BN", "batchnorm1d": "BN", "layernorm": "LN",
    "relu6": "ReLU", "leakyrelu": "ReLU", "elu": "ReLU", "silu": "GELU", "swish": "GELU", "hardswish": "GELU",
    "gelu2d": "GELU", "conv": "Conv2d", "conv2": "Conv2d", "conv2d3x3": "Conv2d", "convolution": "Conv2d",
    "avgpool": "AvgPool2d", "maxpool": "MaxPool2d", "avg_pool": "AvgPool2d", "max_pool": "MaxPool2d",
    "globalavgpool": "AdaptiveAvgPool2d(output_size=1)", "gap": "AdaptiveAvgPool2d(output_size=1)",
    "cat": "concat(dim=1)", "concatenate": "concat(dim=1)", "plus": "Add", "sum2": "Add", "residual": "Add",
    "multiply_": "Mul", "mult": "Mul", "prod": "Mul", "matmul": "multiply", "bmm": "multiply", "linear2d": "Linear",
    "dense": "Linear", "fc": "Linear", "sigmoid_": "Sigmoid", "droppath2d": "DropPath", "stochasticdepth": "DropPath",
}
_REMOVABLE = {"identity", "dropout", "dropout2d", "noop", "none", "flatten", "contiguous"}
_DEFAULTS = {"out_channels": "C", "kernel_size": "3", "out_features": "C", "output_size": "1", "dim": "(2,3)",
             "dims": "(0,2,3,1)", "sizes": "(1,1,1,1)", "shape": "(B,C,H,W)"}


@dataclass
class Fix:
    """A candidate: edits on the current block and the advice that explains them."""

    edits: list
    why: str


def _stage(code: E) -> int:
    if code in _STRUCTURE:
        return 0
    return 2 if code == E.OUTPUT_CONTRACT else 1


def _score(issues: list[Issue]) -> tuple[int, int]:
    if not issues:
        return (3, 0)
    return (min(_stage(i.code) for i in issues), -len(issues))


def _rank(i: Issue) -> int:
    try:
        return _PRIORITY.index(i.code)
    except ValueError:
        return len(_PRIORITY)


def repair(block: Block, issues: list[Issue], rng: random.Random, kind: str = "base",
           max_steps: int = 10) -> tuple[list[Edit], str] | None:
    """Edits that fix the block's validator issues (all of them when it can) and a one-line
    rationale; None when nothing it knows makes the block better."""
    cur = block
    cur_issues = list(issues) if issues else validate(block, kind)
    if not cur_issues:
        return None
    edits: list[Edit] = []
    reasons: list[str] = []
    for _ in range(max_steps):
        if not cur_issues:
            break
        base = _score(cur_issues)
        step = None
        for iss in sorted(cur_issues, key=_rank):
            best = None
            for fix in candidates(cur, iss, cur_issues, rng, kind):
                try:
                    nb = apply_edits(cur, fix.edits)
                except BlockError:
                    continue
                ni = validate(nb, kind)
                sc = _score(ni)
                if sc > base and (best is None or sc > best[0]):
                    best = (sc, fix, nb, ni)
                    if sc == (3, 0):
                        break
            if best is not None:
                step = best
                break
        if step is None:
            break
        _, fix, cur, cur_issues = step
        edits += fix.edits
        if fix.why not in reasons:
            reasons.append(fix.why)
    if not edits:
        return None
    why = reasons[0] + (f"; then {reasons[1][0].lower()}{reasons[1][1:]}" if len(reasons) > 1 else "")
    if len(reasons) > 2:
        why += f" (and {len(reasons) - 2} more fix{'es' if len(reasons) > 3 else ''})"
    return edits, why


DUPLICATE_CODE = "duplicate_candidate"  # the validate tool's code for a draft that repeats an earlier candidate


def repair_duplicate(original: Block, avoid: set[str], rng: random.Random, kind: str = "base",
                     draft: Block | None = None, taken: frozenset[str] = frozenset()) -> tuple[list[Edit], str, str] | None:
    """A different design for a draft that repeats an earlier candidate of the run (the validate
    tool's `duplicate_candidate`): nothing in the draft is wrong, so no local fix helps.

    Without `draft`: start again from the original block with a strategy not in `avoid` (those
    already used in this trial), or, when every applicable one was used, one of them at another
    site. With `draft` (a second repeat in a row: single changes of this block are likely all
    tried): keep the repeated change and add another strategy's change on top of it, a combination
    far less likely to have been tried. Designs whose canonical hash is in `taken` (drafted in this
    trial already) are passed over. Returns the edits (applying to any draft: they replace it by
    their base first), the strategy's name and a one-line advice; None when no strategy gives a
    valid new block."""
    from graphs.hashing import canonical_hash

    from .strategies import STRATEGIES

    base = draft if draft is not None else original
    fresh = [s for s in STRATEGIES if s.name not in avoid]
    rng.shuffle(fresh)
    used = [s for s in STRATEGIES if s.name in avoid]
    rng.shuffle(used)
    for strategy in fresh + used:
        plan = strategy.try_propose(base, rng)
        if plan is None:
            continue
        try:
            new = apply_edits(base, plan.edits)
            if validate(new, kind) or canonical_hash(new) in taken:
                continue
        except BlockError:
            continue
        how = "keep the repeated change and add" if draft is not None else "start again from the original block and apply"
        why = f"the draft repeats an earlier candidate; {how} {strategy.name} instead: {plan.summary}"
        return [ReplaceBlock(text=print_block(base))] + list(plan.edits), strategy.name, why
    return None


# ------------------------------------------------------------------------------ candidates

def candidates(block: Block, iss: Issue, issues: list[Issue], rng: random.Random, kind: str = "base") -> list[Fix]:
    """Candidate fixes for one issue, most design-preserving first."""
    try:
        v = View(block, kind)
    except Exception:  # noqa: BLE001 - an unreadable draft: nothing to suggest
        return []
    n = iss.node
    out: list[Fix] = []
    handler = _HANDLERS.get(iss.code)
    if handler is not None:
        try:
            out += handler(v, n, iss, issues, rng)
        except Exception:  # noqa: BLE001 - a handler that cannot read this draft offers nothing
            pass
    if n is not None and n in v.nodes and v.op(n) not in ("input", "output"):
        ins = list(dict.fromkeys(v.ins.get(n, [])))
        if len(ins) > 1:  # keep one input and let the node go (last resort for a combiner)
            for keep in ins:
                out.append(Fix([RemoveEdge(src=s, dst=n) for s in v.ins[n] if s != keep] + [RemoveNode(id=n)],
                               f"{_name(v, n)} cannot combine these inputs; keep only {v.desc(keep)} and drop "
                               f"node {n}"))
        else:
            out.append(Fix([RemoveNode(id=n)], f"{_name(v, n)} cannot be made to fit here; remove it"))
    return out


def _name(v: View, n: int) -> str:
    node = v.nodes.get(n)
    if node is None:
        return f"Node {n}"
    spec = lookup(node.op)
    return f"Node {n}'s {spec.name if spec else node.op}"


def _op_text(op: str, params: list[tuple[str, str]], args: list[str] = ()) -> str:
    body = list(args) + [f"{k}={x}" for k, x in params]
    return f"{op}({','.join(body)})" if body else op


def _params(node: Node) -> list[tuple[str, str]]:
    return [(k, show_value(x)) for k, x in node.params]


def _with(v: View, n: int, **over: str | None) -> str:
    """Node n's op text with named parameters replaced (None drops one, back to its default);
    positional values are written by name."""
    node = v.nodes[n]
    spec = lookup(node.op)
    vals = ({k: show_value(x) for k, x in named_values(node, spec).items()} if spec is not None
            else dict(_params(node)))
    vals.update(over)
    return _op_text(spec.name if spec else node.op, [(k, x) for k, x in vals.items() if x is not None])


def _dangling(block: Block, start: int, keep: set[int]) -> list[int]:
    """`start` and the ancestors that would have no consumer left once it is removed, in an order
    that removes consumers before their inputs."""
    cons = block.consumers
    ins = block.inputs
    removed: list[int] = []
    gone = set()
    stack = [start]
    while stack:
        x = stack.pop()
        if x in gone or x in keep:
            continue
        node = block.node_map.get(x)
        if node is None or node.op.lower() in ("input", "output"):
            continue
        if any(c not in gone for c in cons.get(x, []) if c != x) and x != start:
            continue
        gone.add(x)
        removed.append(x)
        stack.extend(dict.fromkeys(ins.get(x, [])))
    return removed


def _remove_chain(block: Block, start: int) -> list[Edit]:
    return [RemoveNode(id=x) for x in _dangling(block, start, set())]


def _undefined(v: View, n, iss, issues, rng) -> list[Fix]:
    ids = set(v.nodes)
    bad = [(a, b) for a, b in v.block.edges if a not in ids or b not in ids]
    if not bad:
        return []
    kept = tuple(e for e in v.block.edges if e not in bad)
    text = print_block(Block(name=v.block.name, nodes=v.block.nodes, edges=kept))
    shown = ", ".join(f"{a}->{b}" for a, b in bad[:3])
    return [Fix([ReplaceBlock(text=text)], f"Edge {shown} refers to a node that does not exist; drop "
                                            f"{'it' if len(bad) == 1 else 'them'} (or define the node first)")]


def _cycle(v: View, n, iss, issues, rng) -> list[Fix]:
    import networkx as nx

    g = nx.DiGraph()
    g.add_edges_from(v.block.edges)
    try:
        cyc = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return []
    # Prefer dropping the edge that points back to a smaller id (most likely the back edge).
    cyc = sorted(cyc, key=lambda e: (e[1] > e[0], e))
    return [Fix([RemoveEdge(src=a, dst=b)], f"Edge {a}->{b} closes a cycle; remove it so the block stays a DAG")
            for a, b in cyc]


def _unknown_op(v: View, n, iss, issues, rng) -> list[Fix]:
    node = v.nodes[n]
    key = node.op.lower()
    out = []
    alias = _ALIASES.get(key)
    if alias is None:
        close = difflib.get_close_matches(key, list(OPS), n=2, cutoff=0.6)
        alias = lookup(close[0]).name if close else None
    if alias is not None:
        if "(" not in alias and (node.params or node.args):
            args = [show_value(a) for a in node.args]
            out.append(Fix([SetOp(id=n, op=_op_text(alias, _params(node), args))],
                           f"{node.op} is not an operation here; write {alias} at node {n}"))
        if alias == "Conv2d":
            op = _with_raw(node, "Conv2d", {"out_channels": "C", "kernel_size": "3"})
            out.append(Fix([SetOp(id=n, op=op)], f"{node.op} is not an operation here; use {op} at node {n}"))
        else:
            out.append(Fix([SetOp(id=n, op=alias)], f"{node.op} is not an operation here; use {alias} at node {n}"))
    if key in _REMOVABLE or alias is None:
        out.append(Fix([RemoveNode(id=n)], f"{node.op} at node {n} is not an operation of the registry and does "
                                           f"nothing needed here; remove it"))
    return out


def _with_raw(node: Node, op: str, need: dict[str, str]) -> str:
    vals = dict(_params(node))
    for k, x in need.items():
        vals.setdefault(k, x)
    return _op_text(op, list(vals.items()))


def _unknown_param(v: View, n, iss, issues, rng) -> list[Fix]:
    node = v.nodes[n]
    spec = lookup(node.op)
    if spec is None:
        return []
    out = []
    names = spec.param_names
    unknown = [k for k, _ in node.params if k not in names]
    args = [show_value(a) for a in node.args]
    if node.args and not spec.varargs and len(node.args) > len(spec.params):
        keep = args[: len(spec.params)]
        out.append(Fix([SetOp(id=n, op=_op_text(spec.name, _params(node), keep))],
                       f"{_name(v, n)} takes at most {len(spec.params)} positional values; drop the extra ones"))
    for k in unknown:
        close = difflib.get_close_matches(k, names, n=1, cutoff=0.6)
        given = dict(node.params)
        if close and close[0] not in given:
            params = [(close[0] if kk == k else kk, show_value(x)) for kk, x in node.params]
            out.append(Fix([SetOp(id=n, op=_op_text(spec.name, params, args))],
                           f"{_name(v, n)} has no parameter '{k}'; the parameter is spelled '{close[0]}'"))
        params = [(kk, show_value(x)) for kk, x in node.params if kk != k]
        out.append(Fix([SetOp(id=n, op=_op_text(spec.name, params, args))],
                       f"{_name(v, n)} has no parameter '{k}' (valid: {', '.join(names) or 'none'}); drop it"))
    if len(unknown) > 1:
        params = [(kk, show_value(x)) for kk, x in node.params if kk in names]
        out.append(Fix([SetOp(id=n, op=_op_text(spec.name, params, args))],
                       f"{_name(v, n)} has unknown parameters {', '.join(unknown)}; drop them"))
    return out


def _missing_param(v: View, n, iss, issues, rng) -> list[Fix]:
    node = v.nodes[n]
    spec = lookup(node.op)
    if spec is None:
        return []
    have = named_values(node, spec)
    missing = [p.name for p in spec.params if p.required and p.name not in have]
    if not missing:
        return []
    vals = {k: show_value(x) for k, x in have.items()}
    fills = {k: _DEFAULTS.get(k, "1") for k in missing}
    if v.kind != "base":
        for k in ("out_channels", "out_features"):
            if k in fills:
                fills[k] = "dim"
    vals.update(fills)
    shown = ", ".join(f"{k}={x}" for k, x in fills.items())
    return [Fix([SetOp(id=n, op=_op_text(spec.name, list(vals.items())))],
                f"{_name(v, n)} needs {', '.join(missing)}; give {shown}")]


def _bad_param(v: View, n, iss, issues, rng) -> list[Fix]:
    node = v.nodes[n]
    spec = lookup(node.op)
    if spec is None:
        return []
    out = []
    have = named_values(node, spec)
    for p in spec.params:
        if p.name not in have:
            continue
        if p.name in iss.message or len(have) == 1:
            new = None if not p.required else _DEFAULTS.get(p.name, "1")
            shown = "its default" if new is None else f"{p.name}={new}"
            out.append(Fix([SetOp(id=n, op=_with(v, n, **{p.name: new}))],
                           f"{_name(v, n)} has an invalid {p.name}; use {shown}"))
    return out


def _sources(v: View, n: int) -> list[int]:
    """Plausible extra inputs for node n: unused nodes first, then (for an Add) the block input as
    a shortcut, then full-resolution features latest first, then the rest; never n's descendants
    (that would close a cycle)."""
    bad = _descendants(v, n) | {n, v.out}
    have = set(v.ins.get(n, []))
    unused = [x for x in v.order if not v.cons.get(x) and x not in bad and v.op(x) != "output"]
    latest = sorted((x for x in v.order if x not in bad), key=lambda x: -v.pos.get(x, 0))
    shortcut = [v.inp] if v.op(n) == "add" and v.inp not in bad else []
    ordered = unused + shortcut + [x for x in latest if v.fmap(x)] + latest
    return [x for x in dict.fromkeys(ordered) if x not in have][:10]


def _descendants(v: View, n: int) -> set[int]:
    seen, stack = set(), list(v.cons.get(n, []))
    while stack:
        x = stack.pop()
        if x not in seen:
            seen.add(x)
            stack.extend(v.cons.get(x, []))
    return seen


def _arity(v: View, n, iss, issues, rng) -> list[Fix]:
    node = v.nodes[n]
    spec = lookup(node.op)
    if spec is None:
        return []
    ins = v.ins.get(n, [])
    lo, hi = spec.arity
    out = []
    if len(ins) < lo:
        for s in _sources(v, n):
            role = "the shortcut from " if s == v.inp else ""
            has = "a single input" if len(ins) == 1 else "no input"
            out.append(Fix([AddEdge(src=s, dst=n)], f"{_name(v, n)} has {has}; connect {role}{v.desc(s)} as its "
                                                    f"{'second' if len(ins) == 1 else 'first'} input"))
            if spec.ordered and ins:
                out.append(Fix([AddEdge(src=s, dst=n, position=0)],
                               f"{_name(v, n)} has {has}; connect {role}{v.desc(s)} as its first input"))
        if len(ins) == 1 and spec.name.lower() in _MULTI:
            out.append(Fix([RemoveNode(id=n)], f"{_name(v, n)} has a single input and nothing to combine it with; "
                                               f"remove it and pass {v.desc(ins[0])} straight through"))
    elif hi is not None and len(ins) > hi:
        uniq = list(dict.fromkeys(ins))
        if hi == 1 and len(uniq) > 1:
            a = v.new()
            merge = [AddNode(id=a, op="Add", inputs=uniq)] + [RemoveEdge(src=s, dst=n) for s in ins] + \
                [AddEdge(src=a, dst=n)]
            out.append(Fix(merge, f"{_name(v, n)} takes one input but gets {len(ins)} ({uniq}); sum them in an Add "
                                  f"(node {a}) first"))
        for s in reversed(ins):
            out.append(Fix([RemoveEdge(src=s, dst=n)],
                           f"{_name(v, n)} takes {hi} input{'s' if hi > 1 else ''} but gets {len(ins)}; drop the "
                           f"edge {s}->{n}"))
    return out


def _unused(v: View, n, iss, issues, rng) -> list[Fix]:
    out = []
    for m in v.order:
        spec = lookup(v.nodes[m].op)
        if spec is None or v.op(m) not in _MULTI or m == n:
            continue
        if m in v.ancestors(n):
            continue
        k = len(v.ins.get(m, []))
        short = k < spec.arity[0]
        same = v.shape(m) is not None and v.shape(n) is not None and v.shape(m).same(v.shape(n))
        mine = set(v.ins.get(n, []))
        sibling = any(mine & set(v.ins.get(x, [])) for x in v.ins.get(m, []))  # fed by n's siblings
        rank = (not short, not sibling, not same, v.op(m) != "add", v.pos.get(m, 0))
        out.append((rank, Fix([AddEdge(src=n, dst=m)],
                                           f"{_name(v, n)} is computed but never used; "
                                           f"{'complete' if short else 'feed it into'} {v.desc(m)} with it")))
    fixes = [f for _, f in sorted(out, key=lambda x: x[0])]
    s = v.out_src()
    if s is not None and s != n and v.shape(s) is not None and v.shape(n) is not None and \
            v.shape(s).same(v.shape(n)) and n not in _descendants(v, s):
        a = v.new()
        fixes.append(Fix([InsertOnEdge(src=s, dst=v.out, op="Add", id=a), AddEdge(src=n, dst=a)],
                         f"{_name(v, n)} is computed but never used; sum it with {v.desc(s)} before the output"))
    chain = _remove_chain(v.block, n)
    if len(chain) > 1:
        fixes.append(Fix(chain, f"{_name(v, n)} feeds nothing; remove it and the dangling branch behind it "
                                f"(nodes {', '.join(map(str, chain))})"))
    fixes.append(Fix([RemoveNode(id=n)], f"{_name(v, n)} feeds nothing; remove it"))
    return fixes


def _producer(v: View, s: int, depth: int = 0) -> int | None:
    """The Conv2d or Linear that sets the channel count seen at s, through channel-preserving ops
    (and through Add/Mul, along an input with the same channel count)."""
    if depth > 40 or s not in v.nodes:
        return None
    op = v.op(s)
    if op in ("conv2d", "linear"):
        return s
    ins = v.ins.get(s, [])
    if op in _PASS or op in ("adaptiveavgpool2d", "adaptivemaxpool2d"):
        return _producer(v, ins[0], depth + 1) if len(ins) == 1 else None
    if op in ("add", "mul") and s in v.ctx:
        ch = v.shape(s).dims[1] if v.shape(s).rank == 4 else None
        for x in dict.fromkeys(ins):
            xs = v.shape(x)
            if ch is not None and xs is not None and xs.rank == 4 and xs.dims[1].eq(ch) and x != v.inp:
                p = _producer(v, x, depth + 1)
                if p is not None:
                    return p
    return None


def _set_width(v: View, p: int, target: str) -> list[Fix]:
    key = "out_channels" if v.op(p) == "conv2d" else "out_features"
    got = v.expr(v.ctx[p].p[key]) if p in v.ctx else None
    lit = got is not None and got.isdigit()
    why = (f"{_name(v, p)} writes {got} channels{', a literal' if lit else ''}; use {key}={target}"
           if got else f"{_name(v, p)} has the wrong width; use {key}={target}")
    fixes = [Fix([SetOp(id=p, op=_with(v, p, **{key: target}))], why)]
    if key == "out_channels":
        fixes.append(Fix([SetOp(id=p, op=_with(v, p, **{key: target, "groups": None}))], why + " and groups=1"))
    return fixes


def _shape(v: View, n, iss, issues, rng) -> list[Fix]:
    ins = v.ins.get(n, [])
    shapes = {s: v.shape(s) for s in ins}
    if not ins or any(x is None for x in shapes.values()):
        return []
    op = v.op(n)
    want_c = "C" if v.kind == "base" else "dim"
    out: list[Fix] = []
    four = [s for s in ins if shapes[s].rank == 4]
    chans = [v.expr(shapes[s].dims[1]) for s in four]
    target = want_c if want_c in chans else next((c for c in chans if c and c != "1"), None)
    ref = next((s for s in four if v.expr(shapes[s].dims[1]) == target), None)
    full = [s for s in four if v.fmap(s)]
    for s in dict.fromkeys(ins):
        sh = shapes[s]
        if sh.rank != 4:
            continue
        ch = v.expr(sh.dims[1])
        if op != "concat" and target and ch != target and not (op in ("add", "mul") and ch == "1"):
            p = _producer(v, s)
            if p is not None:
                for f in _set_width(v, p, target):
                    f.why = f"{f.why} so that it matches node {ref} into {_name(v, n)}"
                    out.append(f)
            if v.fmap(s):
                pj = v.new()
                out.append(Fix([InsertOnEdge(src=s, dst=n, op=conv_op(target, 1, bias=v.bias()), id=pj)],
                               f"{_name(v, n)} gets {ch or sh.show(v.env)} from node {s} but {target} channels from "
                               f"node {ref}; "
                               f"project node {s} with a 1x1 conv to {target}"))
        spatial_one = sh.dims[2].eq(1) and sh.dims[3].eq(1)
        if full and not v.fmap(s) and not (op in ("add", "mul") and spatial_one):
            for x in [s] + sorted(v.ancestors(s), reverse=True):
                if x in v.ctx and v.op(x) in ("conv2d", "avgpool2d", "maxpool2d") and \
                        tuple(v.ctx[x].p["stride"]) != (1, 1):
                    out.append(Fix([SetOp(id=x, op=_with(v, x, stride=None))],
                                   f"{_name(v, x)} halves the resolution, so {_name(v, n)} gets mismatched "
                                   f"spatial sizes; use stride=1"))
        if len(ins) > 2:
            out.append(Fix([RemoveEdge(src=s, dst=n)], f"{_name(v, n)} gets a mismatched input from node {s}; "
                                                       f"drop the edge {s}->{n}"))
    return out


def _widths(v: View) -> list[str]:
    """Channel counts in use in the block (symbolic), most common first."""
    seen: dict[str, int] = {}
    for n in v.order:
        sh = v.shape(n)
        if sh is not None and sh.rank == 4 and sh.tags[1] == "C":
            e = v.expr(sh.dims[1])
            if e and not e.isdigit():
                seen[e] = seen.get(e, 0) + 1
    base = "C" if v.kind == "base" else "dim"
    ordered = [base] + sorted(seen, key=lambda e: -seen[e])
    return list(dict.fromkeys(ordered + ["C/8", "C/4", "C/2", "2*C"]))[:8]


def _literal_suspects(v: View, n, iss, issues, rng) -> list[Fix]:
    """Convs and linears upstream of node n written with a literal width (a typical mistake):
    try the widths the block uses elsewhere."""
    out = []
    for p in sorted(v.ancestors(n), key=lambda x: -v.pos.get(x, 0)):
        if p not in v.ctx or v.op(p) not in ("conv2d", "linear"):
            continue
        node = v.nodes[p]
        key = "out_channels" if v.op(p) == "conv2d" else "out_features"
        given = named_values(node, lookup(node.op)).get(key)
        if given is None or not show_value(given).isdigit():
            continue
        for w in _widths(v):
            out += _set_width(v, p, w)
    return out


def _width_search(v: View, n, iss, issues, rng) -> list[Fix]:
    """For a shape error the validator attributes to node n: the conv or linear behind n's inputs
    may have the wrong width; try the widths the block uses elsewhere."""
    out = []
    for s in dict.fromkeys(v.ins.get(n, [])):
        p = _producer(v, s)
        if p is None or p not in v.ctx:
            continue
        key = "out_channels" if v.op(p) == "conv2d" else "out_features"
        got = v.expr(v.ctx[p].p[key])
        for w in _widths(v):
            if w == got:
                continue
            for f in _set_width(v, p, w):
                f.why = f"{f.why} so that {_name(v, n)} gets the shape it expects"
                out.append(f)
    return out


def _groups(v: View, n, iss, issues, rng) -> list[Fix]:
    node = v.nodes[n]
    g = named_values(node, lookup(node.op)).get("groups")
    shown = show_value(g) if g is not None else "?"
    out = [Fix([SetOp(id=n, op=_with(v, n, groups=None))],
               f"groups={shown} at node {n} does not divide its input and output channels; use groups=1")]
    oc = named_values(node, lookup(node.op)).get("out_channels")
    src = v.ins.get(n, [None])[0]
    cin = v.expr(v.shape(src).dims[1]) if src in v.ctx and v.shape(src).rank == 4 else None
    if oc is not None and show_value(oc).isdigit() and cin:
        fix = Fix([SetOp(id=n, op=_with(v, n, out_channels=cin))],
                  f"{_name(v, n)} writes a literal {show_value(oc)} channels, which groups={shown} does not divide; "
                  f"use out_channels={cin} like its input")
        out.insert(0, fix)
    return out


def _padding(v: View, n, iss, issues, rng) -> list[Fix]:
    c = v.nodes[n]
    spec = lookup(c.op)
    vals = named_values(c, spec)
    out = []
    k = vals.get("kernel_size")
    if k is not None:
        ks = show_value(k).strip("()").split(",")
        try:
            odd = [int(x) + (1 - int(x) % 2) for x in ks]
            new = str(odd[0]) if len(set(odd)) == 1 else f"({odd[0]},{odd[1]})"
            out.append(Fix([SetOp(id=n, op=_with(v, n, kernel_size=new))],
                           f"{_name(v, n)} cannot keep 'same' shape with kernel {show_value(k)}; use an odd kernel "
                           f"({new})"))
        except ValueError:
            pass
    if "stride" in vals:
        out.append(Fix([SetOp(id=n, op=_with(v, n, stride=None))],
                       f"{_name(v, n)} cannot keep 'same' shape with stride {show_value(vals['stride'])}; "
                       f"use stride=1"))
    if "dilation" in vals:
        out.append(Fix([SetOp(id=n, op=_with(v, n, dilation=None))], f"{_name(v, n)}: drop the dilation"))
    return out


def _empty(v: View, n, iss, issues, rng) -> list[Fix]:
    if v.op(n) == "conv2d":
        return _set_width(v, n, "C")[:1]
    if v.op(n) == "linear":
        return _set_width(v, n, "C")[:1]
    return []


def _contract(v: View, n, iss, issues, rng) -> list[Fix]:
    o = v.out
    s = v.out_src()
    if s is None:
        return []
    env = v.env
    want_c = "C" if v.kind == "base" else "dim"
    out = []
    sh = v.shape(s)
    good = []
    for x in reversed(v.order):
        if x in (o, s) or x not in v.ctx:
            continue
        xs = v.shape(x)
        if xs.rank == 4 and xs.tags[1] == "C" and v.expr(xs.dims[1]) == want_c and \
                _spatial_ok(xs, env, v.kind):
            good.append(x)
    for k in good[:3]:
        try:
            mid = apply_edits(v.block, [RemoveEdge(src=s, dst=o), AddEdge(src=k, dst=o)])
        except BlockError:
            continue
        chain = _remove_chain(mid, s) if k not in _dangling(mid, s, set()) else []
        chain = [e for e in chain if e.id != k]
        out.append(Fix([RemoveEdge(src=s, dst=o), AddEdge(src=k, dst=o)] + chain,
                       f"The output must be {'(B,C,H,W)' if v.kind == 'base' else 'the contract shape'} but gets "
                       f"{sh.show(env) if sh else 'something else'} from node {s}; reconnect {v.desc(k)}, the last "
                       f"{want_c}-channel node, to the output"))
    if sh is not None and sh.rank == 4 and sh.tags[1] == "C" and _spatial_ok(sh, env, v.kind):
        p = _producer(v, s)
        if p is not None:
            out += _set_width(v, p, want_c)
        pj = v.new()
        out.append(Fix([InsertOnEdge(src=s, dst=o, op=conv_op(want_c, 1, bias=v.bias()), id=pj)],
                       f"The output gets {v.expr(sh.dims[1])} channels from node {s}; project it back to {want_c} "
                       f"with a 1x1 conv (node {pj}) before the output"))
    return out


def _spatial_ok(s, env, kind: str) -> bool:
    h, w = env["H"], env["W"]
    if kind == "downsample":
        h, w = h // 2, w // 2
    return s.dims[2].eq(h) and s.dims[3].eq(w)


_HANDLERS = {
    E.UNDEFINED_NODE: _undefined, E.CYCLE: _cycle, E.UNKNOWN_OP: _unknown_op, E.UNKNOWN_PARAM: _unknown_param,
    E.MISSING_PARAM: _missing_param, E.BAD_PARAM: _bad_param, E.ARITY: _arity, E.UNUSED_NODE: _unused,
    E.SHAPE_MISMATCH: lambda *a: _literal_suspects(*a) + _shape(*a) + _width_search(*a),
    E.GROUPS: lambda *a: _literal_suspects(*a) + _groups(*a),
    E.RESHAPE: lambda *a: _literal_suspects(*a) + _width_search(*a),
    E.RANK: lambda *a: _literal_suspects(*a) + _width_search(*a),
    E.CHANNEL_AXIS: lambda *a: _literal_suspects(*a) + _width_search(*a),
    E.OUTPUT_CONTRACT: lambda *a: _literal_suspects(*a) + _contract(*a), E.SAME_PADDING: _padding, E.EMPTY_DIM: _empty,
}
