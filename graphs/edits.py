"""Edit operations on a block (DESIGN §3.4): a typed, discriminated union of edits, applied atomically.

An edit list is applied to a draft copy of the block; the input block is never touched (Blocks are
immutable), so a list either applies in full or raises `EditError` and nothing changes. Edits do not
judge the result: a block that becomes invalid (an unused node, a shape mismatch, a cycle) is the
validator's business. An edit fails only when it cannot be carried out: an unknown node, an absent
edge, an id already taken, op text that cannot be read, an ambiguous reconnection.

Edits may be given as models, as dicts (e.g. from a tool call's JSON) or as a JSON string:

    apply_edits(block, [{"kind": "insert_on_edge", "src": 4, "dst": 5, "op": "BN"}])
"""
from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import BlockError, ErrorCode, Issue
from .ir import MAX_NODE_ID, Block, Node, parse_block, parse_op
from .nb201 import NB201_OPS

__all__ = [
    "AddNode", "RemoveNode", "SetOp", "AddEdge", "RemoveEdge", "InsertOnEdge", "ReplaceBlock", "SetCellEdge",
    "Edit", "EditList", "EditError", "EDIT_ADAPTER", "EDITS_ADAPTER", "parse_edits", "apply_edit",
    "apply_edits", "describe", "edits_json_schema", "EDIT_KINDS",
]

# Node ids within the text format's bound (ir.MAX_NODE_ID), so that no edit can produce one the
# parser, the compiler or the exported source would refuse.
NodeId = Annotated[int, Field(ge=0, le=MAX_NODE_ID)]
OpText = Annotated[str, Field(min_length=1, max_length=2000, description="e.g. Conv2d(out_channels=C,kernel_size=3)")]


def _kind_required(schema: dict) -> None:
    # `kind` has a default so that models are easy to build in code, but in JSON it is required.
    required = schema.setdefault("required", [])
    if "kind" not in required:
        required.insert(0, "kind")


class _EditBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_kind_required)


class AddNode(_EditBase):
    """A new node `id:op` fed by `inputs` (in this order), optionally feeding `outputs` (appended as
    the last input of each of those consumers). Without `id`, the next free id is used."""

    kind: Literal["add_node"] = "add_node"
    op: OpText
    inputs: list[NodeId] = Field(default_factory=list)
    outputs: list[NodeId] = Field(default_factory=list)
    id: NodeId | None = None


class RemoveNode(_EditBase):
    """Remove a node and its edges. When it has one input, that input takes its place in each
    consumer, at the same input position; with several inputs and any consumer it cannot apply."""

    kind: Literal["remove_node"] = "remove_node"
    id: NodeId


class SetOp(_EditBase):
    """Replace the operation of a node, keeping its id and edges."""

    kind: Literal["set_op"] = "set_op"
    id: NodeId
    op: OpText


class AddEdge(_EditBase):
    """An edge src->dst; `position` is its place among dst's inputs (default: last)."""

    kind: Literal["add_edge"] = "add_edge"
    src: NodeId
    dst: NodeId
    position: Annotated[int, Field(ge=0)] | None = None


class RemoveEdge(_EditBase):
    """Remove one occurrence (the first) of the edge src->dst."""

    kind: Literal["remove_edge"] = "remove_edge"
    src: NodeId
    dst: NodeId


class InsertOnEdge(_EditBase):
    """Split src->dst into src->new->dst; new takes src's place among dst's inputs."""

    kind: Literal["insert_on_edge"] = "insert_on_edge"
    src: NodeId
    dst: NodeId
    op: OpText
    id: NodeId | None = None


class ReplaceBlock(_EditBase):
    """Replace the whole block by this text (the NADER way). Without a `##Name##` header the block
    keeps its name. The text may also be an NB201 arch string (`|op~0|+|op~0|op~1|+|...|`): the
    block becomes that cell (in any space; outside nb201 it is one more valid block)."""

    kind: Literal["replace_block"] = "replace_block"
    text: Annotated[str, Field(max_length=200_000)]


class SetCellEdge(_EditBase):
    """NB201 space only: set the op on one edge of the cell (edge "k<-j", from node j into node k;
    the edges are 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2) and rebuild the block from the new cell.
    The draft must be an NB201 cell; the block keeps its name but its node ids are renumbered.
    Several set_cell_edge edits in one list act on one cell, so that an edge into an unused node
    and the edge out of it can be set together."""

    kind: Literal["set_cell_edge"] = "set_cell_edge"
    edge: Annotated[str, Field(max_length=20, description='the cell edge "k<-j", e.g. "2<-1"')]
    op: Literal[NB201_OPS] = Field(description="the op the edge carries")  # type: ignore[valid-type]


Edit = Annotated[
    Union[AddNode, RemoveNode, SetOp, AddEdge, RemoveEdge, InsertOnEdge, ReplaceBlock, SetCellEdge],
    Field(discriminator="kind"),
]


class EditList(BaseModel):
    """A list of edits applied atomically, as one tool call carries it."""

    model_config = ConfigDict(extra="forbid")

    edits: list[Edit]


EDIT_ADAPTER: TypeAdapter = TypeAdapter(Edit)
EDITS_ADAPTER: TypeAdapter = TypeAdapter(list[Edit])


class EditError(BlockError):
    """An edit that cannot apply. `index` is its place in the list (0-based), `edit` the edit (a
    model, or the raw item when it was not a well-formed edit), `reason` why; nothing was applied."""

    def __init__(self, index: int | None, edit: Any, reason: str,
                 code: ErrorCode = ErrorCode.SYNTAX, node: int | None = None):
        self.index = index
        self.edit = edit
        self.reason = reason
        self.code = code
        self.node = node
        where = "edit list" if index is None else f"edits[{index}] ({describe(edit)})"
        msg = f"{where} cannot apply: {reason}; no edit of the list was applied"
        super().__init__([Issue(node=node, code=code, message=msg)])


def describe(edit: Any) -> str:
    """A short human reading of an edit, for messages."""
    if isinstance(edit, AddNode):
        s = f"add_node {edit.id if edit.id is not None else '?'}:{edit.op}"
        return s + (f" from {edit.inputs}" if edit.inputs else "") + (f" to {edit.outputs}" if edit.outputs else "")
    if isinstance(edit, RemoveNode):
        return f"remove_node {edit.id}"
    if isinstance(edit, SetOp):
        return f"set_op {edit.id}:{edit.op}"
    if isinstance(edit, AddEdge):
        return f"add_edge {edit.src}->{edit.dst}" + (f" at position {edit.position}" if edit.position is not None else "")
    if isinstance(edit, RemoveEdge):
        return f"remove_edge {edit.src}->{edit.dst}"
    if isinstance(edit, InsertOnEdge):
        return f"insert_on_edge {edit.src}->{edit.dst} with {edit.op}"
    if isinstance(edit, ReplaceBlock):
        return "replace_block"
    if isinstance(edit, SetCellEdge):
        return f"set_cell_edge {edit.edge} to {edit.op}"
    if isinstance(edit, dict) and isinstance(edit.get("kind"), str):
        return f"{edit['kind'][:40]}, malformed"
    return "malformed edit"


# ------------------------------------------------------------------------------------- parsing

def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc + ': ' if loc else ''}{err.get('msg', 'invalid')}")
    kinds = ", ".join(EDIT_KINDS)
    return "not a well-formed edit (" + "; ".join(parts) + f"); an edit is an object with 'kind' one of {kinds}"


EDIT_KINDS = ("add_node", "remove_node", "set_op", "add_edge", "remove_edge", "insert_on_edge", "replace_block",
              "set_cell_edge")


def _one(index: int, item: Any) -> Any:
    if isinstance(item, BaseModel) and type(item) in _APPLY:
        return item
    try:
        return EDIT_ADAPTER.validate_python(item)
    except ValidationError as exc:
        raise EditError(index, item, _validation_reason(exc)) from None
    except Exception as exc:  # noqa: BLE001 - anything odd in the item is a malformed edit
        raise EditError(index, item, f"not a well-formed edit ({type(exc).__name__}: {exc})") from None


def parse_edits(data: Any) -> list:
    """Edits from an EditList, a list of models or dicts, a dict `{"edits": [...]}`, one edit, or a
    JSON string of any of these. Raises EditError naming the first malformed item."""
    if isinstance(data, (str, bytes, bytearray)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise EditError(None, None, f"edit list is not valid JSON ({exc})") from None
    if isinstance(data, EditList):
        return list(data.edits)
    if isinstance(data, dict) and "edits" in data and "kind" not in data:
        data = data["edits"]
    if isinstance(data, (dict, BaseModel)):
        data = [data]
    if not isinstance(data, (list, tuple)):
        raise EditError(None, data, f"expected a list of edits, got {type(data).__name__}")
    return [_one(i, item) for i, item in enumerate(data)]


# ------------------------------------------------------------------------------------- applying

class _Fail(Exception):
    def __init__(self, reason: str, code: ErrorCode = ErrorCode.SYNTAX, node: int | None = None):
        super().__init__(reason)
        self.reason, self.code, self.node = reason, code, node


class _Draft:
    """A mutable copy of a block: nodes by id, and the ordered edge list."""

    def __init__(self, block: Block):
        self.name = block.name
        self.nodes: dict[int, Node] = {n.id: n for n in block.nodes}
        self.edges: list[tuple[int, int]] = list(block.edges)
        # Read problems of the original text stay with the nodes they concern while those are unchanged.
        self.read_issues: list[Issue] = list(block.read_issues)
        # The cell as the last set_cell_edge of a run of them left it: a cell edge into a node
        # nothing reads yet is pruned from the block, so the next edge of the same list (the one that
        # makes the node read) must start from this string, not from the block.
        self.cell: str | None = None

    # -- helpers
    def node(self, nid: int, role: str = "node") -> Node:
        if nid not in self.nodes:
            raise _Fail(f"{role} {nid} does not exist; existing nodes: {self._ids()}", ErrorCode.UNDEFINED_NODE, nid)
        return self.nodes[nid]

    def _ids(self) -> str:
        ids = sorted(self.nodes)
        shown = ", ".join(f"{i}:{self.nodes[i].op}" for i in ids[:40])
        return shown + (", ..." if len(ids) > 40 else "") if ids else "none"

    def inputs_of(self, nid: int) -> list[int]:
        return [a for a, b in self.edges if b == nid]

    def consumers_of(self, nid: int) -> list[int]:
        return [b for a, b in self.edges if a == nid]

    def free_id(self) -> int:
        """One past the largest id in use, else the smallest unused id when that is past the bound."""
        used = set(self.nodes) | {x for e in self.edges for x in e}
        nid = max(used) + 1 if used else 0
        if nid <= MAX_NODE_ID:
            return nid
        nid = next((i for i in range(MAX_NODE_ID + 1) if i not in used), None)
        if nid is None:
            raise _Fail(f"no free node id: all of 0..{MAX_NODE_ID} are in use", ErrorCode.BAD_NODE_ID)
        return nid

    def new_id(self, wanted: int | None) -> int:
        if wanted is None:
            return self.free_id()
        if wanted in self.nodes:
            raise _Fail(f"id {wanted} is taken by {wanted}:{self.nodes[wanted].op}; omit id to use the next free "
                        f"id ({self.free_id()})", ErrorCode.DUPLICATE_NODE, wanted)
        return wanted

    def make_node(self, nid: int, text: str) -> Node:
        try:
            node, issues = parse_op(text, nid)
        except BlockError as exc:
            raise _Fail("; ".join(i.message for i in exc.issues) or f"cannot read operation {text!r}",
                        ErrorCode.SYNTAX, nid) from None
        if issues:
            raise _Fail("; ".join(i.message for i in issues), issues[0].code, nid)
        return node

    def forget_issues(self, nid: int) -> None:
        self.read_issues = [i for i in self.read_issues if i.node != nid]

    def block(self) -> Block:
        ids = set(self.nodes)
        keep = tuple(i for i in self.read_issues if i.node is None or i.node in ids)
        return Block(name=self.name, nodes=tuple(sorted(self.nodes.values(), key=lambda n: n.id)),
                     edges=tuple(self.edges), read_issues=keep)


def _edge_list(edges: list[tuple[int, int]], dst: int) -> str:
    ins = [a for a, b in edges if b == dst]
    return f"node {dst}'s inputs are {ins}" if ins else f"node {dst} has no inputs"


def _add_node(d: _Draft, e: AddNode) -> None:
    nid = d.new_id(e.id)
    node = d.make_node(nid, e.op)
    for s in e.inputs:
        if s != nid:
            d.node(s, "input")
    for c in e.outputs:
        if c != nid:
            d.node(c, "output target")
    d.nodes[nid] = node
    d.forget_issues(nid)
    d.edges += [(s, nid) for s in e.inputs]
    d.edges += [(nid, c) for c in e.outputs]


def _remove_node(d: _Draft, e: RemoveNode) -> None:
    n = d.node(e.id)
    if n.op.lower() in ("input", "output"):
        raise _Fail(f"node {e.id} is the block's {n.op.lower()} node and cannot be removed; "
                    f"a block has exactly one input and one output", ErrorCode.SYNTAX, e.id)
    srcs = [a for a in d.inputs_of(e.id) if a != e.id]
    cons = [b for b in d.consumers_of(e.id) if b != e.id]
    distinct = list(dict.fromkeys(srcs))
    if cons and len(distinct) > 1:
        raise _Fail(f"node {e.id} ({n.op}) has {len(srcs)} inputs {srcs} and feeds {sorted(set(cons))}: which "
                    f"input should take its place is ambiguous; remove_edge all but one input first, or "
                    f"set_op / replace_block instead", ErrorCode.ARITY, e.id)
    new_edges = []
    for a, b in d.edges:
        if b == e.id:
            continue  # its inputs (and a self-loop)
        if a == e.id:
            if distinct:
                new_edges.append((distinct[0], b))  # in place: same input position at b
            continue
        new_edges.append((a, b))
    d.edges = new_edges
    del d.nodes[e.id]
    d.forget_issues(e.id)


def _set_op(d: _Draft, e: SetOp) -> None:
    d.node(e.id)
    d.nodes[e.id] = d.make_node(e.id, e.op)
    d.forget_issues(e.id)


def _add_edge(d: _Draft, e: AddEdge) -> None:
    d.node(e.src, "source")
    d.node(e.dst, "target")
    positions = [i for i, (_, b) in enumerate(d.edges) if b == e.dst]
    if e.position is None or e.position == len(positions):
        d.edges.append((e.src, e.dst))
        return
    if e.position > len(positions):
        raise _Fail(f"position {e.position} is past the end of node {e.dst}'s inputs; "
                    f"{_edge_list(d.edges, e.dst)}, valid positions are 0..{len(positions)}", ErrorCode.ARITY, e.dst)
    d.edges.insert(positions[e.position], (e.src, e.dst))


def _find_edge(d: _Draft, src: int, dst: int) -> int:
    d.node(src, "source")
    d.node(dst, "target")
    for i, edge in enumerate(d.edges):
        if edge == (src, dst):
            return i
    raise _Fail(f"there is no edge {src}->{dst}; {_edge_list(d.edges, dst)}", ErrorCode.UNDEFINED_NODE, dst)


def _remove_edge(d: _Draft, e: RemoveEdge) -> None:
    del d.edges[_find_edge(d, e.src, e.dst)]


def _insert_on_edge(d: _Draft, e: InsertOnEdge) -> None:
    i = _find_edge(d, e.src, e.dst)
    nid = d.new_id(e.id)
    node = d.make_node(nid, e.op)
    d.nodes[nid] = node
    d.forget_issues(nid)
    d.edges[i] = (nid, e.dst)
    d.edges.append((e.src, nid))


_HEADER = re.compile(r"^\s*##[^#]*##\s*$", re.M)


def _replace_block(d: _Draft, e: ReplaceBlock) -> None:
    if e.text.strip().startswith("|"):  # an NB201 arch string: the cell it names
        from .nb201 import Nb201ArchError, arch_to_block

        try:
            new = arch_to_block(e.text.strip(), d.name)
        except Nb201ArchError as exc:
            raise _Fail(f"the text is not an NB201 arch string: {exc}", ErrorCode.SYNTAX) from None
        d.nodes = {n.id: n for n in new.nodes}
        d.edges = list(new.edges)
        d.read_issues = []
        d.cell = e.text.strip()
        return
    try:
        new = parse_block(e.text)
    except BlockError as exc:
        raise _Fail("the text is not one readable block: " + "; ".join(i.message for i in exc.issues[:5]),
                    exc.issues[0].code if exc.issues else ErrorCode.SYNTAX,
                    exc.issues[0].node if len(exc.issues) == 1 else None) from None
    if new.read_issues:
        raise _Fail("the text has unreadable parameter values: " + "; ".join(i.message for i in new.read_issues[:5]),
                    new.read_issues[0].code, new.read_issues[0].node)
    name = d.name if not _HEADER.search(e.text) else new.name
    d.name = name
    d.nodes = {n.id: n for n in new.nodes}
    d.edges = list(new.edges)
    d.read_issues = []


def _set_cell_edge(d: _Draft, e: SetCellEdge) -> None:
    from .nb201 import arch_to_block
    from .space import SpaceError, block_to_arch, set_cell_edge, space_issues  # space builds on nb201; late

    current = d.block()
    arch = d.cell if d.cell is not None else block_to_arch(current)
    if arch is None:
        found = space_issues(current)
        why = found[0].message if found else "it is not isomorphic to any NB201 cell"
        raise _Fail(f"set_cell_edge needs the draft to be an NB201 cell, and it is not ({why}); make it a cell "
                    f"with the generic edits (set_op, add_node, remove_node, add_edge, remove_edge, "
                    f"insert_on_edge) or replace_block, then set edges", ErrorCode.OUT_OF_SPACE,
                    found[0].node if found else None)
    try:
        new = set_cell_edge(arch, e.edge, e.op)
    except SpaceError as exc:
        raise _Fail(str(exc), ErrorCode.SYNTAX) from None
    block = arch_to_block(new, d.name)
    d.nodes = {n.id: n for n in block.nodes}
    d.edges = list(block.edges)
    d.read_issues = []
    d.cell = new


_APPLY = {AddNode: _add_node, RemoveNode: _remove_node, SetOp: _set_op, AddEdge: _add_edge,
          RemoveEdge: _remove_edge, InsertOnEdge: _insert_on_edge, ReplaceBlock: _replace_block,
          SetCellEdge: _set_cell_edge}


def apply_edits(block: Block | str, edits: Any) -> Block:
    """The block after every edit, in order; all or none. `edits` as in `parse_edits`.
    Raises EditError (a BlockError) with the index of the first edit that cannot apply."""
    if isinstance(block, str):
        block = parse_block(block)
    if not isinstance(block, Block):
        raise TypeError(f"apply_edits needs a Block, got {type(block).__name__}")
    items = parse_edits(edits)
    draft = _Draft(block)
    for i, edit in enumerate(items):
        try:
            if not isinstance(edit, SetCellEdge):
                draft.cell = None  # any other edit changes the block the cell was read from
            _APPLY[type(edit)](draft, edit)
        except _Fail as f:
            raise EditError(i, edit, f.reason, f.code, f.node) from None
    return draft.block()


def apply_edit(block: Block | str, edit: Any) -> Block:
    """One edit; see `apply_edits`."""
    return apply_edits(block, [edit])


def edits_json_schema() -> dict:
    """JSON schema of an edit list, for a tool definition."""
    return EditList.model_json_schema()
