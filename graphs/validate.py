"""The flow validator: every problem in a block as a typed Issue, never another exception.

Order (DESIGN §3.3): read the text → every edge's ends defined and every node used → per-op
parameters → a DAG with one input and one output → shape inference → the kind's output contract.
Later stages run only when the earlier ones leave something they can check.
"""
from __future__ import annotations

from .errors import BlockError, ErrorCode as E, Issue, issue
from .infer import infer, param_issues, topo_order
from .ir import KINDS, Block, node_id_issue, parse_block
from .registry import Registry, resolve_registry
from .shapes import TShape, validation_env


def validate(block: Block | str, kind: str = "base", registry: Registry | None = None) -> list[Issue]:
    """All issues of a block (or block text) of the given kind; empty when it is valid.
    `registry`: the ops it may use (None: the built-in registry)."""
    try:
        return _validate(block, kind, resolve_registry(registry))
    except BlockError as exc:
        return exc.issues
    except Exception as exc:  # noqa: BLE001 - the contract is: only Issues come out
        return [Issue(node=None, code=E.SYNTAX, message=f"internal validator error on this input: {type(exc).__name__}: {exc}")]


def check(block: Block | str, kind: str = "base", registry: Registry | None = None) -> Block:
    """The block itself when valid, else BlockError with every issue."""
    if isinstance(block, str):
        block = parse_block(block)
    issues = validate(block, kind, registry)
    if issues:
        raise BlockError(issues)
    return block


def _validate(block: Block | str, kind: str, reg: Registry) -> list[Issue]:
    if kind not in KINDS:
        return [Issue(node=None, code=E.SECTIONS, message=f"unknown block kind {kind!r}; valid kinds: {', '.join(KINDS)}")]
    if isinstance(block, str):
        block = parse_block(block)
    issues: list[Issue] = list(block.read_issues)
    ids = {n.id for n in block.nodes}
    # The parser refuses such ids; a block built in code is held to the same bound.
    issues += [i for i in (node_id_issue(nid) for nid in sorted(ids)) if i is not None]

    for a, b in block.edges:
        for end in (a, b):
            if end not in ids:
                issues.append(issue(end, E.UNDEFINED_NODE, f"edge {a}->{b} refers to node {end}, which is not defined"))
    for n in block.nodes:
        if n.op.lower() != "output" and not block.consumers.get(n.id):
            issues.append(issue(n.id, E.UNUSED_NODE, f"{n.op} has no consumers; connect it towards the output or remove it"))

    for n in block.nodes:
        spec = reg.lookup(n.op)
        if spec is None:
            issues.append(issue(n.id, E.UNKNOWN_OP, f"unknown operation {n.op!r}; valid operations: "
                                                   f"{', '.join(reg.names)}"))
            continue
        issues += param_issues(n, spec)
        k = len(block.inputs.get(n.id, []))
        lo, hi = spec.arity
        if k < lo or (hi is not None and k > hi):
            want = {(0, 0): "no inputs", (1, 1): "exactly one input", (2, 2): "exactly two inputs"}.get(
                (lo, hi), f"at least {lo} inputs")
            issues.append(issue(n.id, E.ARITY, f"{spec.name} takes {want}, got {k}"
                                + ("; combine several inputs with Add, Mul or concat first" if hi == 1 and k > 1 else "")))

    for role, missing, extra, conv in (("input", E.MISSING_INPUT_NODE, E.EXTRA_INPUT_NODE, 0),
                                       ("output", E.MISSING_OUTPUT_NODE, E.EXTRA_OUTPUT_NODE, 1)):
        found = [n.id for n in block.nodes if n.op.lower() == role]
        if not found:
            issues.append(Issue(node=None, code=missing, message=f"the block has no '{role}' node (by convention {conv}:{role})"))
        for extra_id in found[1:]:
            issues.append(issue(extra_id, extra, f"a second '{role}' node (first is node {found[0]}); a block has exactly one"))

    order = topo_order(block) if not any(i.code == E.UNDEFINED_NODE for i in issues) else None
    if order is None and not any(i.code == E.UNDEFINED_NODE for i in issues):
        for nid in _cycle_nodes(block):
            issues.append(issue(nid, E.CYCLE, f"{block.node_map[nid].op} lies on a cycle; a block must be acyclic"))
    # Shapes only mean something once the graph and the parameters are sound.
    if issues or order is None:
        return issues

    env = validation_env(kind)
    ctxs, shape_issues = infer(block, env, order, reg)
    issues += shape_issues
    out = next(n.id for n in block.nodes if n.op.lower() == "output")
    if not shape_issues and out in ctxs:
        issues += _contract(ctxs[out].out, kind, env, out)
    return issues


def _contract(got: TShape, kind: str, env, out_id: int) -> list[Issue]:
    b, c, h, w, dim = env["B"], env["C"], env["H"], env["W"], env["dim"]
    want, text = {
        "base": ((b, c, h, w), "(B,C,H,W), the input's shape"),
        "stem": ((b, dim, h, w), "(B,dim,H,W)"),
        "downsample": ((b, dim, h // 2, w // 2), "(B,dim,H/2,W/2)"),
    }[kind]
    if got.rank == 4 and all(x.eq(y) for x, y in zip(got.dims, want)):
        return []
    return [issue(out_id, E.OUTPUT_CONTRACT, f"output of a {kind} block is {got.show(env)}; it must be {text}")]


def _cycle_nodes(block: Block) -> list[int]:
    import networkx as nx

    g = nx.DiGraph()
    g.add_edges_from(block.edges)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return []
    return sorted({a for a, _ in cycle})
