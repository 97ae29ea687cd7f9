"""The NAS-Bench-201 bridge (DESIGN §3.7): arch strings to base blocks, and benchmark look-ups by
canonical hash confirmed by isomorphism.

An NB201 cell has nodes 0 (input) to 3 (output); every edge j->k (j < k) carries one of
`none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3`, and node k is the sum of its
incoming edges. As a block:

- `nor_conv_kxk` is ReLU -> Conv2d(out_channels=C,kernel_size=k,bias=False) -> BN;
- `avg_pool_3x3` is AvgPool2d(kernel_size=3) (stride 1 is the default);
- `skip_connect` is a plain edge, `none` no edge;
- a node with 2+ inputs sums them with `Add`, one with a single input is a pass-through, and a node
  with none is dead; everything that does not reach the output is pruned;
- if the output gets nothing, the block is input -> zero -> output.

Block ids: 0 input, 1 output, then the ops in the order they are met (target node, then source).
"""
from __future__ import annotations

import csv
import itertools
from functools import lru_cache
from pathlib import Path

from .expr import parse_value
from .hashing import canonical_hash, is_isomorphic
from .ir import Block, Node

__all__ = ["NB201_OPS", "COLUMNS", "Nb201ArchError", "parse_arch", "arch_to_block", "all_arch_strings",
           "Nb201Table", "in_space"]

# NB201's order of candidate ops (its search space list).
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
COLUMNS: tuple[str, ...] = ("cifar10_val", "cifar10_test", "cifar100_val", "cifar100_test")
_FORMAT = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
_EDGES = tuple((j, k) for k in (1, 2, 3) for j in range(k))  # NB201 string order


class Nb201ArchError(ValueError):
    """A malformed NB201 arch string; the message says what is wrong and what is valid."""

    def __init__(self, arch: object, problem: str):
        self.arch = arch
        self.problem = problem
        shown = repr(arch) if not isinstance(arch, str) or len(arch) <= 120 else repr(arch[:120] + "...")
        super().__init__(f"invalid NB201 arch string {shown}: {problem}; expected the form {_FORMAT} "
                         f"with op one of {', '.join(NB201_OPS)}")


def parse_arch(arch: str) -> dict[tuple[int, int], str]:
    """The op on each edge (j, k) of an arch string, checked."""
    if not isinstance(arch, str):
        raise Nb201ArchError(arch, f"expected a string, got {type(arch).__name__}")
    text = arch.strip()
    parts = text.split("+")
    if len(parts) != 3:
        raise Nb201ArchError(arch, f"expected 3 node groups separated by '+', found {len(parts)}")
    ops: dict[tuple[int, int], str] = {}
    for k, part in enumerate(parts, 1):
        part = part.strip()
        if len(part) < 2 or not part.startswith("|") or not part.endswith("|"):
            raise Nb201ArchError(arch, f"node {k} group {part!r} must start and end with '|'")
        entries = part[1:-1].split("|")
        if len(entries) != k:
            raise Nb201ArchError(arch, f"node {k} needs {k} entries (one from each of nodes 0..{k - 1}), "
                                       f"found {len(entries)} in {part!r}")
        for entry in entries:
            op, sep, src = entry.strip().partition("~")
            op, src = op.strip(), src.strip()
            if not sep or not src:
                raise Nb201ArchError(arch, f"entry {entry!r} of node {k} is not 'op~source'")
            if op not in NB201_OPS:
                raise Nb201ArchError(arch, f"unknown op {op!r} in entry {entry!r} of node {k}")
            if not src.isdigit() or int(src) >= k:
                raise Nb201ArchError(arch, f"entry {entry!r} of node {k}: source must be a node in 0..{k - 1}")
            j = int(src)
            if (j, k) in ops:
                raise Nb201ArchError(arch, f"node {k} has two entries from node {j}")
            ops[(j, k)] = op
    return ops


_C = parse_value("C")
_CONV_PARAMS = {
    "nor_conv_1x1": (("out_channels", _C), ("kernel_size", parse_value("1")), ("bias", False)),
    "nor_conv_3x3": (("out_channels", _C), ("kernel_size", parse_value("3")), ("bias", False)),
}
_POOL_PARAMS = (("kernel_size", parse_value("3")),)


def _live_edges(ops: dict[tuple[int, int], str]) -> tuple[tuple[int, int, str], ...]:
    """The edges that carry something from the input to the output, with their ops, in NB201
    order: everything the block depends on."""
    alive = {0: True}
    for k in (1, 2, 3):
        alive[k] = any(ops[(j, k)] != "none" and alive[j] for j in range(k))
    useful = {3: alive[3]}
    for j in (2, 1, 0):
        useful[j] = alive[j] and any(ops[(j, k)] != "none" and useful[k] for k in range(j + 1, 4))
    return tuple((j, k, ops[(j, k)]) for (j, k) in _EDGES if ops[(j, k)] != "none" and alive[j] and useful[k])


@lru_cache(maxsize=16384)
def _build(live: tuple[tuple[int, int, str], ...], name: str) -> Block:
    """The block of a cell's live edges (cached: blocks are immutable, and the 15,625 cells have
    fewer than 10,000 distinct live parts)."""
    nodes = [Node(0, "input"), Node(1, "output")]
    if not live:
        nodes.append(Node(2, "zero"))
        return Block(name=name, nodes=tuple(nodes), edges=((0, 2), (2, 1)))
    edges: list[tuple[int, int]] = []
    value = {0: 0}  # NB201 node -> block node holding its value
    nxt = 2
    for k in (1, 2, 3):
        feeds = []
        for j, kk, op in live:
            if kk != k:
                continue
            src = value[j]
            if op == "skip_connect":
                feeds.append(src)
            elif op == "avg_pool_3x3":
                nodes.append(Node(nxt, "AvgPool2d", _POOL_PARAMS))
                edges.append((src, nxt))
                feeds.append(nxt)
                nxt += 1
            else:
                relu, conv, bn = nxt, nxt + 1, nxt + 2
                nodes += [Node(relu, "ReLU"), Node(conv, "Conv2d", _CONV_PARAMS[op]), Node(bn, "BN")]
                edges += [(src, relu), (relu, conv), (conv, bn)]
                feeds.append(bn)
                nxt += 3
        if not feeds:
            continue  # dead or pruned
        if len(feeds) == 1:
            value[k] = feeds[0]
        else:
            nodes.append(Node(nxt, "Add"))
            edges += [(f, nxt) for f in feeds]
            value[k] = nxt
            nxt += 1
    edges.append((value[3], 1))
    return Block(name=name, nodes=tuple(nodes), edges=tuple(edges))


def arch_to_block(arch: str, name: str = "NB201Cell") -> Block:
    """The base block of an NB201 arch string; `Nb201ArchError` if the string is malformed.
    Strings that differ only in dead or `none` parts give the same (immutable) Block object."""
    return _build(_live_edges(parse_arch(arch)), name)


def all_arch_strings() -> list[str]:
    """All 15,625 arch strings, edges in NB201 order, ops in NB201's op order."""
    out = []
    for combo in itertools.product(NB201_OPS, repeat=len(_EDGES)):
        it = iter(zip(_EDGES, combo))
        groups = []
        for k in (1, 2, 3):
            groups.append("|" + "|".join(f"{op}~{j}" for (j, _), op in itertools.islice(it, k)) + "|")
        out.append("+".join(groups))
    return out


class Nb201Table:
    """NB201 accuracies grouped into equivalence classes of their blocks.

    Arch strings are grouped by canonical hash when loaded; a group is split by exact isomorphism
    against its representative (the first member) the first time it is needed, so a hash
    collision can never merge two different cells.
    """

    def __init__(self, rows: dict[str, tuple[float, ...]]):
        self.rows = rows  # arch -> values in COLUMNS order
        self._blocks: dict[str, Block] = {}
        self.groups: dict[str, list[str]] = {}  # canonical hash -> arch strings
        hashes: dict[int, str] = {}  # id(block) -> hash; equal live parts share one Block
        for arch in rows:
            block = arch_to_block(arch)
            self._blocks[arch] = block
            h = hashes.get(id(block))
            if h is None:
                h = hashes[id(block)] = canonical_hash(block)
            self.groups.setdefault(h, []).append(arch)
        self._classes: dict[str, list[list[str]]] = {}

    @classmethod
    def load(cls, path: str | Path) -> "Nb201Table":
        """Read a CSV with columns arch,cifar10_val,cifar10_test,cifar100_val,cifar100_test."""
        rows: dict[str, tuple[float, ...]] = {}
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("arch",) + COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; "
                                 f"expected arch,{','.join(COLUMNS)}")
            for line, row in enumerate(reader, 2):
                try:
                    rows[row["arch"].strip()] = tuple(float(row[c]) for c in COLUMNS)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{path}:{line}: cannot read accuracies: {exc}") from None
        return cls(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def block(self, arch: str) -> Block:
        return self._blocks[arch]

    def classes(self, h: str) -> list[list[str]]:
        """The isomorphism classes inside one hash group (usually exactly one)."""
        found = self._classes.get(h)
        if found is None:
            found = []
            for arch in self.groups.get(h, []):
                for members in found:
                    if is_isomorphic(self._blocks[members[0]], self._blocks[arch]):
                        members.append(arch)
                        break
                else:
                    found.append([arch])
            self._classes[h] = found
        return found

    def all_classes(self) -> list[list[str]]:
        """Every equivalence class (verifies every hash group by isomorphism: seconds)."""
        return [c for h in self.groups for c in self.classes(h)]

    def _find(self, block: Block) -> tuple[str, list[str] | None]:
        h = canonical_hash(block)
        if h in self.groups:
            for members in self.classes(h):
                if is_isomorphic(block, self._blocks[members[0]]):
                    return h, members
        return h, None

    def find_class(self, block: Block) -> list[str] | None:
        """Arch strings of the class the block belongs to, or None when it is not an NB201 cell."""
        return self._find(block)[1]

    def lookup(self, block: Block) -> dict | None:
        """Mean of each column over the block's class (the cells isomorphic to it), with the class
        size, its arch strings and the block's hash; None when the block is not in the table."""
        h, members = self._find(block)
        if members is None:
            return None
        out: dict = {}
        for i, col in enumerate(COLUMNS):
            out[col] = sum(self.rows[a][i] for a in members) / len(members)
        out["class_size"] = len(members)
        out["members"] = list(members)
        out["hash"] = h
        return out

    def in_space(self, block: Block) -> bool:
        return self.find_class(block) is not None


_space: Nb201Table | None = None  # all 15,625 cells, without accuracies


def in_space(block: Block, table: Nb201Table | None = None) -> bool:
    """Whether a block is (isomorphic to) an NB201 cell: against the table's classes when given,
    else against all 15,625 converted cells (converted once per process, kept in memory)."""
    global _space
    if table is None:
        if _space is None:
            _space = Nb201Table({a: () for a in all_arch_strings()})
        table = _space
    return table.in_space(block)
