"""Search spaces (DESIGN §9): `open` (any valid block) and `nb201` (the NAS-Bench-201 cell).

One definition that the validator, the edits, the prompts and the designers all read. The NB201
cell is the one of graphs/nb201.py: nodes 0 (input) to 3 (output), six edges k<-j (j < k), each
carrying one of NB201_OPS, node k summing its incoming edges. Membership is decided by
isomorphism against all 15,625 converted cells (`nb201.all_cells`, built once per process); the
structural reading in `space_issues` only words the reason a block is outside.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from .errors import ErrorCode, Issue, issue
from .expr import show_value
from .ir import Block, Node, format_op, parse_block
from .macro import DEFAULT_ROOTS
from .nb201 import EDGES, NB201_OPS, Nb201Table, all_cells, arch_to_block, format_arch, live_edges, parse_arch
from .registry import canonical_params, lookup

if TYPE_CHECKING:
    from .blind import BlindView

__all__ = ["DEFAULT_ROOT_ARCH", "CELL_EDGES", "SPACE_NAMES", "SpaceError", "edge_name", "parse_edge",
           "CellIndex", "cell_index", "block_to_arch", "set_cell_edge", "space_issues", "op_form",
           "describe_space", "describe_arch", "Space", "make_space", "OPS_LINE"]

DEFAULT_ROOT_ARCH = DEFAULT_ROOTS["nb201"]  # the ResNet cell: two 3x3 convs in series plus a skip
CELL_EDGES: tuple[tuple[int, int], ...] = EDGES  # (j, k), NB201 string order
SPACE_NAMES = ("open", "nb201")
OPS_LINE = "Edge ops"  # the line of a space description that lists the cell's op names (designers read it)


class SpaceError(ValueError):
    """A bad space name, edge or op; the message names what is valid."""


# ------------------------------------------------------------------------------------ edges

def edge_name(edge: tuple[int, int]) -> str:
    """`(j, k)` as the agents read it: "k<-j"."""
    j, k = edge
    return f"{k}<-{j}"


_VALID_EDGES = ", ".join(edge_name(e) for e in CELL_EDGES)


def parse_edge(edge: object) -> tuple[int, int]:
    """(j, k) from "k<-j", "j->k" or a pair [j, k]; SpaceError naming the valid edges otherwise."""
    pair: tuple[int, int] | None = None
    if isinstance(edge, str):
        text = edge.replace(" ", "")
        for sep, flip in (("<-", True), ("->", False)):
            a, found, b = text.partition(sep)
            if found and a.isdigit() and b.isdigit():
                pair = (int(b), int(a)) if flip else (int(a), int(b))
                break
    elif isinstance(edge, (list, tuple)) and len(edge) == 2 and all(type(x) is int for x in edge):
        pair = (edge[0], edge[1])
    if pair not in CELL_EDGES:
        raise SpaceError(f"{edge!r} is not an edge of the NB201 cell; valid edges (k<-j, from node j into "
                         f"node k): {_VALID_EDGES}")
    return pair


def set_cell_edge(arch: str, edge: object, op: str) -> str:
    """The arch string with `op` on `edge`; Nb201ArchError for a bad arch, SpaceError for a bad
    edge or op."""
    ops = parse_arch(arch)
    pair = parse_edge(edge)
    if op not in NB201_OPS:
        raise SpaceError(f"{op!r} is not an NB201 edge op; valid ops: {', '.join(NB201_OPS)}")
    ops[pair] = op
    return format_arch(ops)


def describe_arch(arch: str) -> str:
    """The cell as six lines "k<-j: op"."""
    ops = parse_arch(arch)
    return "\n".join(f"{edge_name(e)}: {ops[e]}" for e in CELL_EDGES)


# --------------------------------------------------------------------------- cell look-up

class CellIndex:
    """Canonical arch strings of blocks, over the table of all cells (isomorphism classes)."""

    def __init__(self, table: Nb201Table):
        self.table = table
        self._canonical: dict[str, str] = {}  # first member of a class -> its canonical arch

    def arch_of(self, block: Block) -> str | None:
        members = self.table.find_class(block)
        if members is None:
            return None
        found = self._canonical.get(members[0])
        if found is None:
            found = self._canonical[members[0]] = _canonical(members)
        return found


def _canonical(members: list[str]) -> str:
    """The first member (NB201 order) with `none` on every edge that carries nothing from input to
    output, so that setting such an edge later means what it says."""
    for arch in members:
        ops = parse_arch(arch)
        live = {(j, k) for j, k, _ in live_edges(ops)}
        if all(op == "none" or e in live for e, op in ops.items()):
            return arch
    return members[0]  # unreachable: a class holds its pruned member too


@lru_cache(maxsize=1)
def cell_index() -> CellIndex:
    """The process-wide index, built on first use (about 2 s), shared afterwards."""
    return CellIndex(all_cells())


def block_to_arch(block: Block | str, index: CellIndex | None = None) -> str | None:
    """The canonical arch string of a block that is (isomorphic to) an NB201 cell, else None."""
    if isinstance(block, str):
        block = parse_block(block)
    return (index or cell_index()).arch_of(block)


# --------------------------------------------------------------------------- op forms

def _chain(block: Block) -> list[Node]:
    """The nodes between input and output of a single-path block, in order."""
    out, nid = [], block.consumers[0][0]
    while block.node_map[nid].op != "output":
        out.append(block.node_map[nid])
        nid = block.consumers[nid][0]
    return out


@lru_cache(maxsize=None)
def _templates() -> dict[str, tuple[Node, ...]]:
    """Each op's nodes as arch_to_block writes them (from a cell whose only path is 0 -op-> 1 -skip-> 3)."""
    out = {}
    for op in NB201_OPS:
        if op != "none":
            out[op] = tuple(_chain(arch_to_block(f"|{op}~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|")))
    return out


def op_form(op: str) -> str:
    """An NB201 op as a block: "ReLU -> Conv2d(...) -> BN", "a plain edge", "no edge"."""
    if op not in NB201_OPS:
        raise SpaceError(f"{op!r} is not an NB201 edge op; valid ops: {', '.join(NB201_OPS)}")
    nodes = _templates().get(op)
    if not nodes:
        return "no edge" if op == "none" else "a plain edge, identity"
    return " -> ".join(format_op(n) for n in nodes)


@lru_cache(maxsize=1)
def _ops_text() -> str:
    return ", ".join(f"{op} ({op_form(op)})" for op in NB201_OPS)


# --------------------------------------------------------------------------- space issues

def space_issues(block: Block | str, index: CellIndex | None = None) -> list[Issue]:
    """[] when the block is an NB201 cell, else `out_of_space` issues naming what leaves the space."""
    if isinstance(block, str):
        block = parse_block(block)
    if block_to_arch(block, index) is not None:
        return []
    return _node_issues(block) or _shape_issues(block) or [Issue(
        node=None, code=ErrorCode.OUT_OF_SPACE,
        message=f"the block uses only NB201 edge ops but is not an NB201 cell: its wiring does not fit the "
                f"cell's 4 nodes (0 input, 3 output) and 6 edges {_VALID_EDGES}, one op per edge, node k "
                f"summing its edges with Add ({_summary(block)}); rebuild it as a cell, e.g. with "
                f"set_cell_edge or replace_block")]


def _op(node: Node) -> str:
    spec = lookup(node.op)
    return spec.name if spec is not None else node.op


def _out(node: int, message: str) -> Issue:
    return issue(node, ErrorCode.OUT_OF_SPACE, message)


def _param_diff(node: Node, template: Node) -> list[str]:
    """The node's parameter values that differ from the template's ("kernel_size=5", "bias=True")."""
    mine, want = dict(canonical_params(node)[1]), dict(canonical_params(template)[1])
    spec = lookup(node.op)
    defaults = {p.name: p.default for p in spec.params} if spec is not None else {}
    diff = []
    for key in list(mine) + [k for k in want if k not in mine]:
        a, b = mine.get(key, defaults.get(key)), want.get(key, defaults.get(key))
        if show_value(a) != show_value(b):
            diff.append(f"{key}={show_value(a)}")
    return diff


def _wrong_form(node: Node, forms: list[Node]) -> str | None:
    """None when the node equals one of the template forms, else its differing parameters."""
    diffs = [_param_diff(node, t) for t in forms]
    if any(not d for d in diffs):
        return None
    return " and ".join(min(diffs, key=len))


def _node_issues(block: Block) -> list[Issue]:
    temp = _templates()
    convs = [nodes[1] for op, nodes in temp.items() if op.startswith("nor_conv")]
    pools = list(temp["avg_pool_3x3"])
    not_ops = f"is not one of the NB201 edge ops ({_ops_text()})"
    ins, cons, nmap = block.inputs, block.consumers, block.node_map
    # Foreign ops first: the wiring around one (a ReLU feeding a concat) follows from it, so wiring
    # issues are reported only for blocks whose every op has an NB201 form.
    out: list[Issue] = []
    wiring: list[Issue] = []
    for n in block.nodes:
        op, nid = _op(n), n.id
        if op in ("input", "output"):
            continue
        if op == "Add":
            if len(ins.get(nid, [])) > 3:
                wiring.append(_out(nid, f"Add sums {len(ins[nid])} inputs; a cell node sums at most 3 (node k has one "
                                     f"edge from each of nodes 0..k-1)"))
        elif op == "Conv2d":
            wrong = _wrong_form(n, convs)
            if wrong:
                out.append(_out(nid, f"Conv2d with {wrong} {not_ops}"))
                continue
            src = [nmap.get(i) for i in ins.get(nid, [])]
            dst = [nmap.get(i) for i in cons.get(nid, [])]
            if len(src) != 1 or src[0] is None or _op(src[0]) != "ReLU" or len(cons.get(src[0].id, [])) != 1:
                wiring.append(_out(nid, f"Conv2d must be preceded by its own ReLU (an NB201 conv edge is "
                                     f"{op_form('nor_conv_3x3')})"))
            elif len(dst) != 1 or dst[0] is None or _op(dst[0]) != "BN":
                wiring.append(_out(nid, f"Conv2d must be followed by BN and nothing else (an NB201 conv edge is "
                                     f"{op_form('nor_conv_3x3')})"))
        elif op == "ReLU":
            dst = [nmap.get(i) for i in cons.get(nid, [])]
            if len(dst) != 1 or dst[0] is None or _op(dst[0]) != "Conv2d":
                shown = ", ".join(f"{d.id}:{_op(d)}" for d in dst if d is not None) or "nothing"
                wiring.append(_out(nid, f"ReLU feeds {shown}; in an NB201 cell a ReLU only starts a conv edge and "
                                     f"feeds exactly one Conv2d ({op_form('nor_conv_3x3')})"))
        elif op == "BN":
            src = [nmap.get(i) for i in ins.get(nid, [])]
            if len(src) != 1 or src[0] is None or _op(src[0]) != "Conv2d":
                wiring.append(_out(nid, f"BN not right after a Conv2d; in an NB201 cell BN only ends a conv edge "
                                     f"({op_form('nor_conv_3x3')})"))
        elif op == "AvgPool2d":
            wrong = _wrong_form(n, pools)
            if wrong:
                out.append(_out(nid, f"AvgPool2d with {wrong} {not_ops}"))
        elif op == "zero":
            if len(block.nodes) != 3:
                out.append(_out(nid, "zero appears in an NB201 cell only as the whole cell (input -> zero -> "
                                     "output: nothing reaches the output); use no edge (none) instead"))
        elif op in ("Mul", "concat", "multiply"):
            out.append(_out(nid, f"{op} {not_ops}; an NB201 cell combines edges only by summing them (Add)"))
        else:
            out.append(_out(nid, f"{op} {not_ops}"))
    return out or wiring


def _levels(block: Block) -> dict[int, int] | None:
    """The fewest cell edges from the input to each node's value (a conv or pool edge adds 1 at its
    end; a plain edge into a sum adds 1), assuming every node already has an NB201 form."""
    from .infer import topo_order

    order = topo_order(block)
    if order is None:
        return None
    ins, nmap, lv = block.inputs, block.node_map, {}
    ends = ("BN", "AvgPool2d")
    for nid in order:
        op, srcs = _op(nmap[nid]), ins.get(nid, [])
        if any(s not in lv for s in srcs):
            return None
        if op == "input":
            lv[nid] = 0
        elif op in ("ReLU", "Conv2d"):
            lv[nid] = lv[srcs[0]]  # inside a conv edge: the level of its source
        elif op in ends:
            lv[nid] = lv[srcs[0]] + 1
        elif op in ("Add", "output"):
            # an input that ends an op edge lands here; any other is a plain edge into this node
            lv[nid] = max((lv[s] if _op(nmap[s]) in ends else lv[s] + 1) for s in srcs) if srcs else 0
            if op == "output" and srcs and _op(nmap[srcs[0]]) == "Add":
                lv[nid] = lv[srcs[0]]
        else:
            lv[nid] = lv[srcs[0]] if srcs else 0
    return lv


def _summary(block: Block) -> str:
    ops = [_op(n) for n in block.nodes]
    lv = _levels(block)
    out = next((n.id for n in block.nodes if _op(n) == "output"), None)
    depth = f", a longest input-to-output path of {lv[out]} edge(s)" if lv and out in lv else ""
    return (f"it has {ops.count('Add')} summing node(s), {ops.count('Conv2d')} conv and "
            f"{ops.count('AvgPool2d')} pool edge(s){depth}")


def _shape_issues(block: Block) -> list[Issue]:
    """Issues about the cell's size: too many sum nodes, op edges or edges in a row."""
    adds = [n.id for n in block.nodes if _op(n) == "Add"]
    if len(adds) > 3:
        return [_out(nid, f"a summing node beyond the cell's three (nodes 1, 2, 3 after the input): this block "
                          f"has {len(adds)} Add nodes ({', '.join(map(str, adds))})") for nid in adds[3:]]
    units = [n.id for n in block.nodes if _op(n) in ("Conv2d", "AvgPool2d")]
    if len(units) > 6:
        return [Issue(node=None, code=ErrorCode.OUT_OF_SPACE,
                      message=f"{len(units)} conv/pool edges (nodes {', '.join(map(str, units))}); an NB201 cell "
                              f"has 6 edges ({_VALID_EDGES}), one op each")]
    lv = _levels(block)
    if lv:
        deep = sorted((nid for nid, v in lv.items() if v > 3),
                      key=lambda i: (lv[i], _op(block.node_map[i]) == "output", i))
        if deep:
            nid = deep[0]
            return [_out(nid, f"{_op(block.node_map[nid])} is {lv[nid]} edges away from the input; an NB201 "
                              f"cell path has at most 3 edges (0 -> 1 -> 2 -> 3)")]
    return []


# --------------------------------------------------------------------------- descriptions

def describe_space(root_arch: str | None = None, blind: "BlindView | None" = None) -> str:
    """What the agents are told in the nb201 space (short: it goes into every trial's prompt). In a
    blind space (`blind`) the ops are listed by their neutral names only."""
    edges = ", ".join(edge_name(e) for e in CELL_EDGES)
    if blind is not None:
        lines = [
            "Search space: a cell of 4 nodes. Every design must stay such a cell; anything else is rejected by "
            "the validator (out_of_space).",
            f"Node 0 is the block input, 3 the block output, 1 and 2 lie between. The cell has 6 edges k<-j (from "
            f"node j into node k): {edges}. Each edge carries one op, and node k sums its incoming edges.",
            f"{OPS_LINE}: {', '.join(blind.ops)}. What each op computes is not shown: only the results of "
            f"trained cells tell them apart.",
            "A cell is written as an arch string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|: the edges 1<-0; 2<-0, "
            "2<-1; 3<-0, 3<-1, 3<-2. Parts that do not reach the output are dropped.",
            f'Edit a cell with {{"kind": "set_cell_edge", "edge": "2<-1", "op": "{blind.ops[1]}"}} (several in one '
            'edit list act on one cell), or give the whole cell: {"kind": "replace_block", "text": ARCH}.',
            "check_cells tells which candidate cells (arch strings) the run has already tried: plan new ones.",
        ]
        if root_arch is not None:
            lines += [f"The root cell ({blind.encode(root_arch)}):", blind.encode(describe_arch(root_arch))]
        return "\n".join(lines)
    lines = [
        "Search space: the NAS-Bench-201 cell. Every design must stay such a cell; anything else is "
        "rejected by the validator (out_of_space).",
        f"The cell has 4 nodes: 0 is the block input, 3 the block output, 1 and 2 lie between. It has 6 "
        f"edges k<-j (from node j into node k): {edges}. Each edge carries one op, and node k is the sum "
        f"(Add) of its incoming edges. The ops, as blocks:",
        *(f"- {op}: {op_form(op)}" for op in NB201_OPS),
        "Parts that do not reach the output are dropped.",
        'Edit a cell with {"kind": "set_cell_edge", "edge": "2<-1", "op": "nor_conv_1x1"}: it sets one '
        "edge's op and rebuilds the block; several in one edit list act on one cell. Other edits are "
        "allowed if the result is still a cell.",
        "check_cells tells which candidate cells (arch strings) the run has already tried: plan new ones.",
    ]
    if root_arch is not None:
        lines += [f"The root cell ({root_arch}):", describe_arch(root_arch)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the space value

@dataclass(frozen=True)
class Space:
    """A run's search space. `open`: every valid block; `nb201`: NB201 cells, starting at `root_arch`;
    `blind`: the view that hides the cell's op names from the designers (nb201 only), else None."""

    name: Literal["open", "nb201"]
    root_arch: str | None = None
    blind: "BlindView | None" = None

    def issues(self, block: Block) -> list[Issue]:
        return [] if self.name == "open" else space_issues(block)

    def contains(self, block: Block) -> bool:
        return self.name == "open" or block_to_arch(block) is not None

    def describe(self) -> str:
        if self.name == "open":
            return ""
        # The form the edits and the task's cells use: the first member of the root's isomorphism class.
        from .nb201 import arch_to_block

        return describe_space(block_to_arch(arch_to_block(self.root_arch)) or self.root_arch, self.blind)

    def arch_of(self, block: Block) -> str | None:
        return None if self.name == "open" else block_to_arch(block)


def make_space(name: str, root_arch: str | None = None, blind_seed: int | None = None) -> Space:
    """A checked Space; `nb201` without a root starts at DEFAULT_ROOT_ARCH. `blind_seed`: the op
    names are hidden behind the neutral names that seed shuffles (graphs.blind), nb201 only."""
    if name not in SPACE_NAMES:
        raise SpaceError(f"unknown search space {name!r}; valid names: {', '.join(SPACE_NAMES)}")
    if name == "open":
        if root_arch is not None:
            raise SpaceError("root_arch is only for the nb201 space; the open space starts at the run's root block")
        if blind_seed is not None:
            raise SpaceError("a blind space is an nb201 space: the open space has no op names to hide")
        return Space("open")
    root = DEFAULT_ROOT_ARCH if root_arch is None else root_arch
    parse_arch(root)  # Nb201ArchError (a ValueError) naming the valid form
    from .blind import BlindView

    return Space("nb201", root.strip(), None if blind_seed is None else BlindView.for_seed(blind_seed))
