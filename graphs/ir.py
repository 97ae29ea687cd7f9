"""The block DAG and its text format (NADER-compatible): parse and canonical print.

A block is its nodes plus an ordered edge list; the order of a node's incoming edges is the order
of its inputs, which matters for `concat` and `multiply` and is kept through every step.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from .errors import BlockError, ErrorCode, Issue, issue
from .expr import ExprError, Value, parse_value, show_value

KINDS = ("base", "stem", "downsample")
MAX_TEXT = 200_000
# Node ids are 0..MAX_NODE_ID: they name modules (`s1c0_n12`) in compiled and exported networks, so a
# negative or unbounded id would not be a Python identifier there.
MAX_NODE_ID = 9999


@dataclass(frozen=True)
class Node:
    """One operation. `op` is spelled as written; `params` holds named values, `args` positional ones."""

    id: int
    op: str
    params: tuple[tuple[str, Value], ...] = ()
    args: tuple[Value, ...] = ()

    @property
    def param_dict(self) -> dict[str, Value]:
        return dict(self.params)


@dataclass(frozen=True, eq=False)
class Block:
    """Equality is graph equality: same node ids with the same canonical ops, and the same
    inputs in the same order per node; the order of edge lines across nodes does not matter."""

    name: str
    nodes: tuple[Node, ...]
    edges: tuple[tuple[int, int], ...]
    # Problems found while reading the text that did not stop it being read (bad parameter values).
    read_issues: tuple[Issue, ...] = field(default=(), compare=False)

    @cached_property
    def node_map(self) -> dict[int, Node]:
        return {n.id: n for n in self.nodes}

    @cached_property
    def inputs(self) -> dict[int, list[int]]:
        """Inputs of every node in edge order (duplicates kept: `Add(x, x)` is two edges)."""
        ins: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for a, b in self.edges:
            ins.setdefault(b, []).append(a)
        return ins

    @cached_property
    def consumers(self) -> dict[int, list[int]]:
        outs: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for a, b in self.edges:
            outs.setdefault(a, []).append(b)
        return outs

    @cached_property
    def _key(self):
        return (self.name, tuple((n.id, format_op(n)) for n in sorted(self.nodes, key=lambda n: n.id)),
                tuple(sorted((k, tuple(v)) for k, v in self.inputs.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Block) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __str__(self) -> str:
        return print_block(self)


@dataclass(frozen=True)
class Architecture:
    """Three sections in file order: base, stem, downsample."""

    base: Block
    stem: Block
    downsample: Block

    def __str__(self) -> str:
        return "\n".join(print_block(b) for b in (self.base, self.stem, self.downsample))


_HEADER = re.compile(r"^##\s*([^#]*?)\s*##$")
_NODE = re.compile(r"^(-?\d+)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?$", re.S)
_EDGE = re.compile(r"^(-?\d+(?:\s*,\s*-?\d+)*)\s*->\s*(-?\d+)$")
_HEADER_PREFIX = re.compile(r"^##[^#]*##(?=\s*#)")
_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$", re.S)


def split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def node_id_issue(nid: int, where: str = "") -> Issue | None:
    """An issue when a node id is outside 0..MAX_NODE_ID."""
    if 0 <= nid <= MAX_NODE_ID:
        return None
    # node=None: the record's node field holds only ids that can be nodes.
    return Issue(node=None, code=ErrorCode.BAD_NODE_ID,
                 message=f"{where}node id {nid} is out of range; node ids are integers 0..{MAX_NODE_ID}")


def _read_id(text: str, lineno: int, fatal: list[Issue]) -> int | None:
    """A node id from the text, or None (with an issue) when it is out of range. Long digit strings
    are refused before int(): Python will not convert more than 4,300 digits."""
    s = text.strip()
    if len(s.lstrip("-").lstrip("0")) > len(str(MAX_NODE_ID)):
        shown = s if len(s) <= 20 else s[:20] + "..."
        fatal.append(Issue(node=None, code=ErrorCode.BAD_NODE_ID, message=f"line {lineno}: node id {shown} is out "
                                                                          f"of range; node ids are integers 0..{MAX_NODE_ID}"))
        return None
    nid = int(text)
    bad = node_id_issue(nid, f"line {lineno}: ")
    if bad is not None:
        fatal.append(bad)
        return None
    return nid


def parse_op(text: str, node_id: int = 0) -> tuple[Node, list[Issue]]:
    """Read `Op` or `Op(k=v,...)` into a node; bad values become issues, not exceptions."""
    bad = node_id_issue(node_id)
    if bad is not None:
        raise BlockError([bad])
    m = _NODE.match(f"{node_id}:{text.strip()}")
    if not m:
        raise BlockError([issue(node_id, ErrorCode.SYNTAX,
                                f"cannot read operation {text.strip()[:80]!r}; expected Op or Op(k=v,...)")])
    return _node_from_match(node_id, m.group(2), m.group(3))


def _node_from_match(nid: int, op: str, body: str | None) -> tuple[Node, list[Issue]]:
    issues: list[Issue] = []
    params: list[tuple[str, Value]] = []
    args: list[Value] = []
    if body is not None and body.strip():
        if body.count("(") != body.count(")"):
            issues.append(issue(nid, ErrorCode.SYNTAX, f"{op}: unbalanced parentheses in ({body[:80]})"))
            return Node(nid, op), issues
        seen = set()
        for part in split_top(body):
            km = _KEY.match(part.strip())
            try:
                if km:
                    key = km.group(1)
                    if key in seen:
                        issues.append(issue(nid, ErrorCode.BAD_PARAM, f"{op}: parameter {key!r} given twice"))
                        continue
                    seen.add(key)
                    params.append((key, parse_value(km.group(2))))
                else:
                    if params:
                        issues.append(issue(nid, ErrorCode.SYNTAX,
                                            f"{op}: positional value {part.strip()[:40]!r} after named ones"))
                        continue
                    args.append(parse_value(part))
            except ExprError as exc:
                issues.append(issue(nid, ErrorCode.BAD_PARAM, f"{op}: {km.group(1) + ': ' if km else ''}{exc}"))
    return Node(nid, op, tuple(params), tuple(args)), issues


def _strip_comment(line: str) -> str:
    s = line.strip()
    if _HEADER.match(s):
        return s
    m = _HEADER_PREFIX.match(s)
    if m:  # a header followed by a comment
        return m.group(0)
    return s.split("#", 1)[0].strip()


def parse_sections(text: str) -> list[Block]:
    """Read every section of a text; a text without a header is one block named 'Block'."""
    if not isinstance(text, str):
        raise BlockError([Issue(node=None, code=ErrorCode.SYNTAX, message="block text must be a string")])
    if len(text) > MAX_TEXT:
        raise BlockError([Issue(node=None, code=ErrorCode.SYNTAX, message=f"text longer than {MAX_TEXT} characters")])
    sections: list[tuple[str, list[tuple[int, str]]]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line:
            continue
        h = _HEADER.match(line)
        if h:
            sections.append((h.group(1) or "Block", []))
            continue
        if not sections:
            sections.append(("Block", []))
        sections[-1][1].append((lineno, line))
    if not sections:
        raise BlockError([Issue(node=None, code=ErrorCode.SYNTAX, message="empty text: no nodes or edges")])
    return [_parse_lines(name, lines) for name, lines in sections]


def _parse_lines(name: str, lines: list[tuple[int, str]]) -> Block:
    nodes: dict[int, Node] = {}
    edges: list[tuple[int, int]] = []
    fatal: list[Issue] = []
    soft: list[Issue] = []
    for lineno, line in lines:
        e = _EDGE.match(line)
        if e:
            ends = [_read_id(x, lineno, fatal) for x in e.group(1).split(",") + [e.group(2)]]
            if None not in ends:
                edges.extend((s, ends[-1]) for s in ends[:-1])
            continue
        m = _NODE.match(line)
        if m:
            nid = _read_id(m.group(1), lineno, fatal)
            if nid is None:
                continue
            if nid in nodes:
                fatal.append(issue(nid, ErrorCode.DUPLICATE_NODE,
                                   f"line {lineno}: node {nid} is defined twice ({nodes[nid].op} and {m.group(2)})"))
                continue
            node, issues = _node_from_match(nid, m.group(2), m.group(3))
            nodes[nid] = node
            soft.extend(issues)
            continue
        fatal.append(Issue(node=None, code=ErrorCode.SYNTAX,
                           message=f"line {lineno}: cannot read {line[:80]!r}; expected 'ID:Op(k=v,...)', 'a->b' or 'a,b->c'"))
    if fatal:
        raise BlockError(fatal + soft)
    ordered = tuple(sorted(nodes.values(), key=lambda n: n.id))
    return Block(name=name, nodes=ordered, edges=tuple(edges), read_issues=tuple(soft))


def parse_block(text: str) -> Block:
    blocks = parse_sections(text)
    if len(blocks) != 1:
        raise BlockError([Issue(node=None, code=ErrorCode.SECTIONS,
                                message=f"expected one block, found {len(blocks)} sections")])
    return blocks[0]


def parse_architecture(text: str) -> Architecture:
    blocks = parse_sections(text)
    if len(blocks) != 3:
        raise BlockError([Issue(node=None, code=ErrorCode.SECTIONS,
                                message=f"an architecture has three sections (base, stem, downsample); found {len(blocks)}")])
    return Architecture(*blocks)


def parse(text: str) -> Block | Architecture:
    """One block, or a three-section architecture."""
    blocks = parse_sections(text)
    if len(blocks) == 1:
        return blocks[0]
    if len(blocks) == 3:
        return Architecture(*blocks)
    raise BlockError([Issue(node=None, code=ErrorCode.SECTIONS,
                            message=f"expected one block or three sections (base, stem, downsample); found {len(blocks)}")])


def format_op(node: Node, registry=None) -> str:
    """`Op(k=v,...)` in canonical form: registry spelling, defaults dropped, schema order.
    `registry`: a graphs.registry.Registry (None: the built-in one)."""
    from .registry import canonical_params, lookup  # registry depends on ir; imported late to keep ir standalone

    op, params = canonical_params(node, registry)
    if not params:
        return op
    spec = lookup(op, registry)
    if spec is not None and spec.varargs and [k for k, _ in params] == [spec.varargs]:
        vals = params[0][1] if isinstance(params[0][1], tuple) else (params[0][1],)
        return f"{op}(" + ",".join(show_value(v) for v in vals) + ")"  # NADER writes permute(0,2,3,1)
    return f"{op}(" + ",".join(f"{k}={show_value(v)}" for k, v in params) + ")"


def print_block(block: Block, registry=None) -> str:
    """Canonical text: nodes sorted by id, then edges grouped by target in input order.
    `registry`: a graphs.registry.Registry for the canonical op spelling (None: the built-in one)."""
    lines = [f"##{block.name}##"]
    lines += [f"{n.id}:{format_op(n, registry)}" for n in sorted(block.nodes, key=lambda n: n.id)]
    from .infer import topo_order  # late: infer imports the registry, which imports this module

    ins = block.inputs
    order = topo_order(block) if all(b in block.node_map for _, b in block.edges) else None
    targets = order if order is not None else sorted(ins)
    for dst in targets:
        srcs = ins[dst]
        if not srcs:
            continue
        lines.append(f"{srcs[0]}->{dst}" if len(srcs) == 1 else f"{','.join(map(str, srcs))}->{dst}")
    return "\n".join(lines) + "\n"
