"""The modification tree (DESIGN §6, §8): every candidate of a run as a node, saved as `tree.json`.

Node 0 is the root (the starting architecture). Every other node is one trial's outcome, attached
to the node the trial started from: `trained` (metrics from the trainer), `duplicate` (isomorphic to
an existing node; not trained again, `duplicate_of` names the original and the original's metrics
are reused), `invalid` (the Modifier never produced a valid block; `errors` holds the validator's
issues), `failed` (training or the model client failed; `reason` says why), `screened` (a valid design
that a training-free proxy ranked below another design of its trial; its scores are in
`metrics["proxies"]`, it was not trained) or `pending` (added before training finished).

- Blocks are stored as canonical text (`graphs.ir.print_block`) with the canonical hash of the base
  block; `stem` / `downsample` are None where the macro's defaults are used. Invalid and failed
  nodes may hold a block that cannot be read; it is kept as written, with no hash.
- Metrics and cost are plain JSON data: values are normalised through JSON when a node is built
  (tuples become lists, numpy/torch scalars become numbers, NaN and infinities become None), so a
  saved tree loads back equal to the one in memory.
- Nodes are immutable; `ModificationTree.update` replaces one (e.g. pending → trained) and keeps
  the duplicate index right.
- `save` writes atomically (graphs.atomic); `load` checks
  the schema and version and the tree's structure, raising `TreeFileError` and never touching the
  file.
"""
from __future__ import annotations

import bisect
import json
import math
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .atomic import atomic_write
from .errors import BlockError
from .hashing import canonical_hash, is_isomorphic
from .ir import Block, parse_block, print_block

__all__ = [
    "SCHEMA", "SCHEMA_VERSION", "Status", "ORIGINAL_STATUSES", "ErrorRecord", "TreeNode",
    "ModificationTree", "TreeError", "TreeFileError",
]

SCHEMA = "nader.modification_tree"
SCHEMA_VERSION = 1

# screened: a valid design that a proxy ranked below another candidate of its trial (screen.k > 1):
# scored, not trained, kept so that it is never proposed again.
Status = Literal["trained", "duplicate", "invalid", "failed", "pending", "screened"]
STATUSES: tuple[str, ...] = ("trained", "duplicate", "invalid", "failed", "pending", "screened")
# Statuses whose block must be readable (a duplicate is a readable block isomorphic to another).
_NEEDS_BLOCK = ("trained", "duplicate", "pending", "screened")
# A node counts as an original for duplicate detection when it is trained (or is the root).
ORIGINAL_STATUSES = ("trained",)
_ROOT_STATUSES = ("trained", "pending", "failed")

_COST_DEFAULTS = {"tokens": 0, "dollars": 0.0, "seconds": 0.0}
_SUMMARY_TEXT = 160  # characters of a proposal / reason shown in children_summary
# children_summary shows every child up to SUMMARY_SHOWN children; beyond, the best few by
# valid_acc and the most recent few, one line counting the rest by status and one naming their
# most frequent plans (by first line): the task message, sent with every model call of a trial,
# stays the same size however many children a node has.
SUMMARY_SHOWN = 6
SUMMARY_BEST = 3
SUMMARY_RECENT = 3
SUMMARY_PLANS = 10  # distinct plan first lines named for the children not shown
_PLAN_HEAD_TEXT = 48  # characters of each of those first lines


class TreeError(ValueError):
    """A tree operation that cannot be done: unknown node, a second root, a bad duplicate link."""


class TreeFileError(TreeError):
    """`tree.json` is corrupt, not a tree, or of another schema version. The file is left as it is."""

    def __init__(self, path: str | Path, message: str):
        self.path = Path(path)
        super().__init__(f"{path}: {message}")


# ---------------------------------------------------------------- JSON normalisation

def _json_default(v: Any):
    if hasattr(v, "item") and callable(v.item):  # numpy / torch scalars
        return v.item()
    if hasattr(v, "tolist") and callable(v.tolist):  # arrays
        return v.tolist()
    if isinstance(v, (set, frozenset)):
        return sorted(v, key=repr)
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(f"{type(v).__name__} is not JSON data")


def _plain(v: Any) -> Any:
    """`v` as it will read back from JSON: lists for tuples, numbers for scalars, None for NaN/inf."""
    text = json.dumps(v, default=_json_default, allow_nan=True)
    return json.loads(text, parse_constant=lambda _: None)


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------- node

class ErrorRecord(BaseModel):
    """One validator issue of an invalid node (`graphs.errors.Issue` as plain data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: int | None = None
    code: str
    message: str


class TreeNode(BaseModel):
    """One node of the modification tree. Immutable: change nodes with `ModificationTree.update`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=0)
    parent: int | None = None
    trial: int | None = None
    block: str | None = None  # base block, canonical text
    stem: str | None = None  # None: the macro's default stem
    downsample: str | None = None  # None: the macro's default downsample block
    hash: str | None = None  # canonical_hash of the base block
    widths: list[int] | None = None
    params: int | None = None
    flops: int | None = None  # multiply-accumulates
    metrics: dict[str, Any] = Field(default_factory=dict)
    status: Status = "pending"
    duplicate_of: int | None = None
    reason: str | None = None
    errors: list[ErrorRecord] = Field(default_factory=list)
    proposal: str | None = None
    inspiration: str | None = None
    cost: dict[str, Any] = Field(default_factory=lambda: dict(_COST_DEFAULTS))
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, v):
        v = _plain({} if v is None else v)
        if not isinstance(v, dict):
            raise ValueError("metrics must be a mapping")
        return v

    @field_validator("cost", mode="before")
    @classmethod
    def _cost(cls, v):
        v = _plain({} if v is None else v)
        if not isinstance(v, dict):
            raise ValueError("cost must be a mapping")
        return {**_COST_DEFAULTS, **v}

    @field_validator("errors", mode="before")
    @classmethod
    def _errors(cls, v):
        if v is None:
            return []
        out = []
        for e in v:
            if isinstance(e, BaseModel) and not isinstance(e, ErrorRecord):
                e = e.model_dump()
            if isinstance(e, dict):
                e = dict(e)
                code = e.get("code")
                e["code"] = getattr(code, "value", code)
            out.append(e)
        return out

    @property
    def is_root(self) -> bool:
        return self.parent is None

    @property
    def valid_acc(self) -> float | None:
        """Validation accuracy, the only number search uses (None when missing or not finite)."""
        return _finite(self.metrics.get("valid_acc"))

    @property
    def test_acc(self) -> float | None:
        """Test accuracy: reported, never used for selection."""
        return _finite(self.metrics.get("test_acc"))

    def metric(self, name: str) -> float | None:
        return _finite(self.metrics.get(name))

    @property
    def is_original(self) -> bool:
        """Counts as an original for duplicate detection and as a candidate for selection."""
        return self.is_root or self.status in ORIGINAL_STATUSES


# ---------------------------------------------------------------- blocks

def _canonical(block: str | Block | None) -> tuple[str | None, str | None, Block | None]:
    """(canonical text, hash, parsed block); BlockError when the text cannot be read."""
    if block is None:
        return None, None, None
    b = block if isinstance(block, Block) else parse_block(block)
    return print_block(b), canonical_hash(b), b


def _canonical_text(block: str | Block | None) -> str | None:
    if block is None:
        return None
    b = block if isinstance(block, Block) else parse_block(block)
    return print_block(b)


def _as_text(block: str | Block | None) -> str | None:
    """Canonical text when it can be made, else the text as given (invalid/failed nodes)."""
    if block is None or isinstance(block, str):
        try:
            return _canonical_text(block)
        except Exception:  # noqa: BLE001
            return block
    try:
        return print_block(block)
    except Exception:  # noqa: BLE001
        return repr(block)


def _shorten(text: str | None, n: int = _SUMMARY_TEXT) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _node_text(n: TreeNode) -> str:
    """A node's JSON as it reads inside the tree file (indent=1, two levels down)."""
    text = json.dumps(n.model_dump(mode="json"), indent=1, ensure_ascii=False, allow_nan=False)
    return text.replace("\n", "\n  ")  # JSON strings hold no raw newline: only layout changes


def _child_line(c: TreeNode, pv: float | None) -> str:
    """One child's line in children_summary: outcome, plan and inspiration."""
    if c.status == "trained":
        v = c.valid_acc
        delta = "" if v is None or pv is None else f" ({v - pv:+.4g} vs parent)"
        outcome = f"trained, valid_acc {_num(v)}{delta}"
    elif c.status == "duplicate":
        outcome = f"duplicate of #{c.duplicate_of} (same architecture; not trained again)"
    elif c.status == "invalid":
        errs = "; ".join(f"[{e.code}] {e.message}" for e in c.errors[:3])
        outcome = "invalid" + (f": {_shorten(errs)}" if errs else "") + \
                  (f" (reason: {_shorten(c.reason, 80)})" if c.reason and not errs else "")
    elif c.status == "failed":
        outcome = f"failed: {_shorten(c.reason, 100) or 'no reason recorded'}"
    elif c.status == "screened":
        outcome = f"screened out, not trained: {_shorten(c.reason, 100) or 'ranked below another design'}"
    else:
        outcome = "pending (training not finished)"
    parts = [f"- #{c.id} {outcome}", f"plan: {_shorten(c.proposal) or '(none recorded)'}"]
    if c.inspiration and c.inspiration not in (c.proposal or ""):  # a plan usually quotes it already
        parts.append(f"inspiration: {_shorten(c.inspiration, 80)}")
    return " | ".join(parts)


def _best_and_recent(kids: list[TreeNode]) -> list[TreeNode]:
    """The SUMMARY_BEST children with the highest valid_acc (ties: the earlier) and the
    SUMMARY_RECENT latest others, in id order."""
    scored = sorted((c for c in kids if c.status == "trained" and c.valid_acc is not None),
                    key=lambda c: (-c.valid_acc, c.id))
    keep = {c.id for c in scored[:SUMMARY_BEST]}
    keep.update(c.id for c in [c for c in kids if c.id not in keep][-SUMMARY_RECENT:])
    return [c for c in kids if c.id in keep]


def _rest_lines(rest: list[TreeNode]) -> list[str]:
    """The children not shown: counted by status, and their most frequent plans by first line."""
    statuses = Counter(c.status for c in rest)
    counts = ", ".join(f"{statuses[s]} {s}" for s in STATUSES if statuses[s])
    lines = [f"- {len(rest)} other(s) not listed: {counts}"]
    heads = Counter(_shorten((c.proposal or "").strip().split("\n", 1)[0], _PLAN_HEAD_TEXT) or "(none recorded)"
                    for c in rest)
    common = heads.most_common(SUMMARY_PLANS)  # equal counts keep first-seen order: deterministic
    more = len(heads) - len(common)
    named = "; ".join(f"{h} (x{k})" for h, k in common) + (f"; and {more} other plan(s)" if more else "")
    lines.append(f"  their plans, most frequent first: {named}")
    return lines


# ---------------------------------------------------------------- tree

class ModificationTree:
    """Nodes in id order (node i has id i); node 0 is the root."""

    def __init__(self, nodes: list[TreeNode] | None = None):
        self._nodes: list[TreeNode] = []
        self._children: dict[int, list[int]] = {}
        self._blocks: dict[int, Block] = {}  # parsed base blocks, by node id
        self._index: dict[str, list[int]] | None = None  # hash -> ids of originals (lazy)
        self._texts: dict[int, tuple[TreeNode, str]] = {}  # id -> (node, its JSON text in the file)
        for n in nodes or []:
            self._append(n)

    # ------------------------------------------------------------ structure

    def _check_links(self, n: TreeNode) -> None:
        nid = len(self._nodes)
        if n.id != nid:
            raise TreeError(f"node ids must be 0, 1, 2, … in order; expected {nid}, got {n.id}")
        if nid == 0:
            if n.parent is not None:
                raise TreeError("node 0 is the root and has no parent")
            if n.status not in _ROOT_STATUSES:
                raise TreeError(f"the root's status must be one of {', '.join(_ROOT_STATUSES)}, not {n.status!r}")
        else:
            if n.parent is None:
                raise TreeError(f"node {nid}: only node 0 (the root) has no parent")
            if not 0 <= n.parent < nid:
                raise TreeError(f"node {nid}: parent {n.parent} does not exist")
        if n.status == "duplicate":
            d = n.duplicate_of
            if d is None or not 0 <= d < nid:
                raise TreeError(f"node {nid}: a duplicate needs duplicate_of naming an existing node, got {d}")
            if not self._nodes[d].is_original:
                raise TreeError(f"node {nid}: duplicate_of={d} is {self._nodes[d].status}, not a trained node or the root")
        elif n.duplicate_of is not None:
            raise TreeError(f"node {nid}: duplicate_of is set but the status is {n.status!r}")
        if n.status in _NEEDS_BLOCK and n.block is None:
            raise TreeError(f"node {nid}: a {n.status} node needs its block")

    def _append(self, n: TreeNode) -> TreeNode:
        self._check_links(n)
        self._nodes.append(n)
        self._children[n.id] = []
        if n.parent is not None:
            self._children[n.parent].append(n.id)
        if self._index is not None and n.is_original:
            self._index_add(n)
        return n

    def _build(self, nid: int, parent: int | None, block, *, status: str, stem=None, downsample=None,
               duplicate_of: int | None = None, metrics=None, **fields) -> TreeNode:
        """A node with canonical block texts, its hash and (for a duplicate) a resolved original."""
        try:
            text, h, parsed = _canonical(block)
            stem_text, ds_text = _canonical_text(stem), _canonical_text(downsample)
        except Exception:  # noqa: BLE001 - unreadable text is kept for invalid/failed nodes only
            if status in _NEEDS_BLOCK or nid == 0:
                raise
            # an invalid/failed trial may end with text that cannot be read: keep it as written
            text, stem_text, ds_text = _as_text(block), _as_text(stem), _as_text(downsample)
            h, parsed = None, None
        if status == "duplicate" and duplicate_of is not None and 0 <= duplicate_of < len(self._nodes):
            orig = self._nodes[duplicate_of]
            if orig.status == "duplicate" and orig.duplicate_of is not None:  # point at the original itself
                duplicate_of, orig = orig.duplicate_of, self._nodes[orig.duplicate_of]
            if not metrics:
                metrics = dict(orig.metrics)  # a duplicate reuses the original's result
            for k in ("widths", "params", "flops"):
                if fields.get(k) is None:
                    fields[k] = getattr(orig, k)
        node = TreeNode(id=nid, parent=parent, block=text, hash=h, stem=stem_text, downsample=ds_text,
                        status=status, duplicate_of=duplicate_of, metrics=metrics, **fields)
        if parsed is not None:
            self._blocks[nid] = parsed
        return node

    def root(self, block: str | Block, metrics: dict | None = None, *, status: str = "trained",
             **fields) -> TreeNode:
        """Create node 0 from the starting block; `fields` are any other TreeNode fields."""
        if self._nodes:
            raise TreeError("the tree already has a root")
        fields.pop("parent", None)
        return self._append(self._build(0, None, block, status=status, metrics=metrics, **fields))

    def add(self, parent: int, block: str | Block | None, *, status: Status = "trained",
            metrics: dict | None = None, **fields) -> TreeNode:
        """Add a child of `parent` with the next id. `fields`: trial, stem, downsample, widths, params,
        flops, duplicate_of, reason, errors (Issues or dicts), proposal, inspiration, cost, created_at.
        A duplicate without metrics gets its original's metrics (and widths/params/flops); a
        `duplicate_of` naming a duplicate is resolved to that duplicate's original."""
        if not self._nodes:
            raise TreeError("add the root first (ModificationTree.root)")
        self.get(parent)
        return self._append(self._build(len(self._nodes), parent, block, status=status, metrics=metrics, **fields))

    def fork(self) -> "ModificationTree":
        """A copy to stage one trial's nodes on while other trials run: nodes (immutable) and parsed
        blocks are shared; nodes added to the copy stay there until `adopt` brings them over."""
        t = ModificationTree.__new__(ModificationTree)
        t._nodes = list(self._nodes)
        t._children = {k: list(v) for k, v in self._children.items()}
        t._blocks = dict(self._blocks)
        t._index = None if self._index is None else {k: list(v) for k, v in self._index.items()}
        t._texts = dict(self._texts)
        return t

    def adopt(self, fork: "ModificationTree", since: int) -> dict[int, int]:
        """Append the nodes that `fork` added from id `since` on, in their order, with the next ids
        here (other trials may have added nodes meanwhile); links among them follow. Returns
        {id in the fork: id here}."""
        moved: dict[int, int] = {}
        for n in fork.nodes[since:]:
            data = {k: getattr(n, k) for k in TreeNode.model_fields if k not in ("id", "parent", "hash")}
            block, status, metrics = data.pop("block"), data.pop("status"), data.pop("metrics")
            if data["duplicate_of"] is not None:
                data["duplicate_of"] = moved.get(data["duplicate_of"], data["duplicate_of"])
            moved[n.id] = self.add(moved.get(n.parent, n.parent), block, status=status, metrics=metrics, **data).id
        return moved

    def update(self, node_id: int, **changes) -> TreeNode:
        """Replace a node's fields (e.g. pending → trained with metrics); id and parent stay."""
        old = self.get(node_id)
        for k in ("id", "parent", "hash"):
            if k in changes:
                raise TreeError(f"{k} of a node cannot be changed")
        unknown = set(changes) - set(TreeNode.model_fields)
        if unknown:
            raise TreeError(f"unknown node fields: {', '.join(sorted(unknown))}")
        data = {k: getattr(old, k) for k in TreeNode.model_fields if k not in ("id", "parent", "hash")}
        data.update(changes)
        if node_id == 0 and data["status"] not in _ROOT_STATUSES:
            raise TreeError(f"the root's status must be one of {', '.join(_ROOT_STATUSES)}")
        if old.is_original and not (node_id == 0 or data["status"] in ORIGINAL_STATUSES):
            if any(n.duplicate_of == node_id for n in self._nodes):
                raise TreeError(f"node {node_id} is the original of duplicates; its status stays trained")
        block = data.pop("block")
        status = data.pop("status")
        saved_nodes, saved_blocks = self._nodes, dict(self._blocks)
        # build against the tree as it was before this node, so links are checked the same way
        self._nodes = saved_nodes[:node_id]
        try:
            node = self._build(node_id, old.parent, block, status=status, **data)
            self._check_links(node)
        except Exception:
            self._blocks = saved_blocks
            raise
        finally:
            self._nodes = saved_nodes
        if node.block is None or node.hash is None:
            self._blocks.pop(node_id, None)
        self._nodes[node_id] = node
        self._reindex(node_id)
        return node

    def _reindex(self, node_id: int) -> None:
        """Move a replaced node in the duplicate index, keeping each hash's ids in id order (a
        rebuild would rehash every original, once per trial)."""
        if self._index is None:
            return
        for ids in self._index.values():
            if node_id in ids:
                ids.remove(node_id)
        if not self._nodes[node_id].is_original:
            return
        try:
            h = canonical_hash(self.block_of(node_id))
        except (BlockError, TreeError):
            return
        bisect.insort(self._index.setdefault(h, []), node_id)

    # ------------------------------------------------------------ reading

    def get(self, node_id: int) -> TreeNode:
        if not isinstance(node_id, int) or not 0 <= node_id < len(self._nodes):
            raise TreeError(f"no node {node_id!r} (the tree has {len(self._nodes)} nodes)")
        return self._nodes[node_id]

    @property
    def nodes(self) -> list[TreeNode]:
        """All nodes in id order (a copy of the list)."""
        return list(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[TreeNode]:
        return iter(list(self._nodes))

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, int) and 0 <= node_id < len(self._nodes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModificationTree) and self._nodes == other._nodes

    def __repr__(self) -> str:
        return f"ModificationTree({len(self._nodes)} nodes)"

    def children(self, node_id: int) -> list[TreeNode]:
        """Every child (any status) in id order."""
        self.get(node_id)
        return [self._nodes[i] for i in self._children[node_id]]

    def subtree(self, node_id: int) -> list[TreeNode]:
        """The node and all its descendants, in id order."""
        self.get(node_id)
        out, stack = [], [node_id]
        while stack:
            i = stack.pop()
            out.append(i)
            stack.extend(self._children[i])
        return [self._nodes[i] for i in sorted(out)]

    def path(self, node_id: int) -> list[TreeNode]:
        """Root … node."""
        n = self.get(node_id)
        out = [n]
        while n.parent is not None:
            n = self._nodes[n.parent]
            out.append(n)
        return out[::-1]

    def depth(self, node_id: int) -> int:
        return len(self.path(node_id)) - 1

    def trained(self) -> list[TreeNode]:
        """Nodes with status trained (the root included when it was trained), in id order."""
        return [n for n in self._nodes if n.status == "trained"]

    def best(self, metric: str = "valid_acc") -> TreeNode | None:
        """The trained node (or the root) with the highest `metric`; ties go to the lower id."""
        best, best_v = None, None
        for n in self._nodes:
            if not n.is_original:
                continue
            v = n.metric(metric)
            if v is not None and (best_v is None or v > best_v):
                best, best_v = n, v
        return best

    def block_of(self, node_id: int) -> Block:
        """The node's base block, parsed (cached)."""
        n = self.get(node_id)
        b = self._blocks.get(node_id)
        if b is None:
            if n.block is None:
                raise TreeError(f"node {node_id} has no block")
            b = self._blocks[node_id] = parse_block(n.block)
        return b

    # ------------------------------------------------------------ duplicates

    def _index_add(self, n: TreeNode) -> None:
        try:
            h = canonical_hash(self.block_of(n.id))  # recomputed: never trusts a stored hash
        except (BlockError, TreeError):
            return
        self._index.setdefault(h, []).append(n.id)

    def _ensure_index(self) -> dict[str, list[int]]:
        if self._index is None:
            self._index = {}
            for n in self._nodes:
                if n.is_original:
                    self._index_add(n)
        return self._index

    def find_duplicate(self, block: str | Block, stem: str | Block | None = None,
                       downsample: str | Block | None = None) -> TreeNode | None:
        """The earliest trained node (or the root) whose base block is isomorphic to `block` (equal
        canonical hash, confirmed by exact isomorphism) and whose stem and downsample blocks are the
        same (both macro defaults, or isomorphic). Failed, invalid, pending and duplicate nodes never
        count as originals."""
        b = block if isinstance(block, Block) else parse_block(block)
        extra = {"stem": stem, "downsample": downsample}
        parsed_extra = {k: (v if v is None or isinstance(v, Block) else parse_block(v)) for k, v in extra.items()}
        for nid in self._ensure_index().get(canonical_hash(b), []):
            n = self._nodes[nid]
            if not n.is_original or not is_isomorphic(self.block_of(nid), b):
                continue
            if all(self._same_optional(getattr(n, k), parsed_extra[k]) for k in extra):
                return n
        return None

    def find_candidate(self, block: str | Block) -> TreeNode | None:
        """The earliest node of any status (trained, failed, invalid, duplicate, pending; the root
        too) whose base block is the same design as `block` (isomorphic). A run never evaluates a
        candidate twice: this is how a repeat is recognised. Nodes whose text cannot be read are
        skipped."""
        b = block if isinstance(block, Block) else parse_block(block)
        h = canonical_hash(b)
        for n in self._nodes:
            if n.hash != h:
                continue
            try:
                if is_isomorphic(self.block_of(n.id), b):
                    return n
            except (BlockError, TreeError):
                continue
        return None

    @staticmethod
    def _same_optional(text: str | None, other: Block | None) -> bool:
        if text is None or other is None:
            return text is None and other is None
        try:
            mine = parse_block(text)
        except BlockError:
            return False
        return canonical_hash(mine) == canonical_hash(other) and is_isomorphic(mine, other)

    # ------------------------------------------------------------ the Proposer's view

    def children_summary(self, node_id: int) -> str:
        """What the node's children already tried: one line each with the plan, the outcome and the
        validation-accuracy change against this node (test accuracy is not shown). Beyond
        SUMMARY_SHOWN children only the SUMMARY_BEST best by valid_acc and the SUMMARY_RECENT most
        recent get a line each (in id order); the rest are counted by status, with their most
        frequent plans by first line, so the text is bounded however many children there are."""
        parent = self.get(node_id)
        kids = self.children(node_id)
        pv = parent.valid_acc
        if not kids:
            return f"Node #{node_id} (valid_acc {_num(pv)}) has no children yet: nothing has been tried from it."
        shown = kids if len(kids) <= SUMMARY_SHOWN else _best_and_recent(kids)
        head = f"Node #{node_id} (valid_acc {_num(pv)}): {len(kids)} modification(s) already tried"
        if len(shown) < len(kids):
            head += f"; the {SUMMARY_BEST} best and the {SUMMARY_RECENT} most recent"
        lines = [head + ":", *(_child_line(c, pv) for c in shown)]
        if len(shown) < len(kids):
            ids = {c.id for c in shown}
            lines.extend(_rest_lines([c for c in kids if c.id not in ids]))
        return "\n".join(lines)

    # ------------------------------------------------------------ files

    def to_json(self) -> str:
        """The tree file's text: json.dumps of {schema, version, nodes} with indent=1. Each node's
        text is kept once made (nodes are immutable; `update` replaces the object), so saving after
        every trial does not re-serialise the whole tree."""
        texts = self._texts
        parts = []
        for n in self._nodes:
            kept = texts.get(n.id)
            if kept is None or kept[0] is not n:
                kept = texts[n.id] = (n, _node_text(n))
            parts.append(kept[1])
        head = json.dumps({"schema": SCHEMA, "version": SCHEMA_VERSION, "nodes": []}, indent=1)
        if not parts:
            return head
        return head[: -len("[]\n}")] + "[\n  " + ",\n  ".join(parts) + "\n ]\n}"

    def save(self, path: str | Path) -> Path:
        """Write the whole tree atomically (graphs.atomic): a crash at any point leaves either the
        old file or the new one, never half of one."""
        return atomic_write(path, self.to_json())

    @classmethod
    def from_json(cls, text: str | bytes, path: str | Path = "<tree>") -> "ModificationTree":
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise TreeFileError(path, f"not valid JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise TreeFileError(path, f"not a modification tree (schema {SCHEMA!r} expected)")
        if doc.get("version") != SCHEMA_VERSION:
            raise TreeFileError(path, f"schema version {doc.get('version')!r}; this code reads version {SCHEMA_VERSION}")
        raw = doc.get("nodes")
        if not isinstance(raw, list):
            raise TreeFileError(path, "'nodes' must be a list")
        try:
            nodes = [TreeNode.model_validate(r) for r in raw]
        except ValidationError as e:
            raise TreeFileError(path, f"a node does not validate: {e}") from e
        try:
            return cls(nodes)
        except TreeError as e:
            raise TreeFileError(path, f"inconsistent tree: {e}") from e

    @classmethod
    def load(cls, path: str | Path) -> "ModificationTree":
        """Read a tree written by `save`. A missing file raises FileNotFoundError; a corrupt one or
        one of another schema version raises TreeFileError. The file is only read, never changed."""
        path = Path(path)
        data = path.read_bytes()
        return cls.from_json(data, path)
