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

A table (`Nb201Table`) holds, per arch string, the accuracy pairs <ds>_val,<ds>_test of the
datasets it has (TABLE_DATASETS); `release_rows` builds one from the official release
(`python -m graphs nb201-table`).
"""
from __future__ import annotations

import csv
import itertools
from functools import lru_cache
from pathlib import Path

from .expr import parse_value
from .hashing import canonical_hash, is_isomorphic
from .ir import Block, Node

__all__ = ["NB201_OPS", "EDGES", "COLUMNS", "TABLE_DATASETS", "dataset_columns", "Nb201ArchError", "parse_arch", "format_arch", "live_edges",
           "arch_to_block", "all_arch_strings", "all_cells", "Nb201Table", "in_space", "Nb201ReleaseError",
           "RELEASE_SOURCES", "load_release", "release_rows", "write_table"]

# NB201's order of candidate ops (its search space list).
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# The datasets an NB201 table may hold, each as two columns <ds>_val,<ds>_test ("-" written "_").
TABLE_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16-120")
COLUMNS: tuple[str, ...] = ("cifar10_val", "cifar10_test", "cifar100_val", "cifar100_test")  # the CIFAR table's
_FORMAT = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
EDGES: tuple[tuple[int, int], ...] = tuple((j, k) for k in (1, 2, 3) for j in range(k))  # NB201 string order


class Nb201ArchError(ValueError):
    """A malformed NB201 arch string; the message says what is wrong and what is valid."""

    def __init__(self, arch: object, problem: str):
        self.arch = arch
        self.problem = problem
        shown = repr(arch) if not isinstance(arch, str) or len(arch) <= 120 else repr(arch[:120] + "...")
        super().__init__(f"invalid NB201 arch string {shown}: {problem}; expected the form {_FORMAT} "
                         f"with op one of {', '.join(NB201_OPS)}")


def dataset_columns(dataset: str) -> tuple[str, str]:
    """The (validation, test) column names of a dataset in a table: imagenet16-120 ->
    imagenet16_120_val, imagenet16_120_test."""
    stem = dataset.replace("-", "_")
    return f"{stem}_val", f"{stem}_test"


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


def format_arch(ops: dict[tuple[int, int], str]) -> str:
    """The arch string of an op per edge (j, k) (the inverse of `parse_arch`)."""
    return "+".join("|" + "|".join(f"{ops[(j, k)]}~{j}" for j in range(k)) + "|" for k in (1, 2, 3))


_C = parse_value("C")
_CONV_PARAMS = {
    "nor_conv_1x1": (("out_channels", _C), ("kernel_size", parse_value("1")), ("bias", False)),
    "nor_conv_3x3": (("out_channels", _C), ("kernel_size", parse_value("3")), ("bias", False)),
}
_POOL_PARAMS = (("kernel_size", parse_value("3")),)


def live_edges(ops: dict[tuple[int, int], str]) -> tuple[tuple[int, int, str], ...]:
    """The edges that carry something from the input to the output, with their ops, in NB201
    order: everything the block depends on."""
    alive = {0: True}
    for k in (1, 2, 3):
        alive[k] = any(ops[(j, k)] != "none" and alive[j] for j in range(k))
    useful = {3: alive[3]}
    for j in (2, 1, 0):
        useful[j] = alive[j] and any(ops[(j, k)] != "none" and useful[k] for k in range(j + 1, 4))
    return tuple((j, k, ops[(j, k)]) for (j, k) in EDGES if ops[(j, k)] != "none" and alive[j] and useful[k])


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
    return _build(live_edges(parse_arch(arch)), name)


def all_arch_strings() -> list[str]:
    """All 15,625 arch strings, edges in NB201 order, ops in NB201's op order."""
    out = []
    for combo in itertools.product(NB201_OPS, repeat=len(EDGES)):
        it = iter(zip(EDGES, combo))
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

    def __init__(self, rows: dict[str, tuple[float, ...]], columns: tuple[str, ...] = COLUMNS,
                 file_columns: tuple[str, ...] | None = None):
        self.rows = rows  # arch -> values in `columns` order
        self.columns = tuple(columns)
        # the datasets whose two columns the table has, in TABLE_DATASETS order
        self.datasets = tuple(d for d in TABLE_DATASETS if set(dataset_columns(d)) <= set(self.columns))
        self.file_columns = tuple(file_columns) if file_columns is not None else ("arch",) + self.columns
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
        """Read a CSV with column `arch` and, for one or more of TABLE_DATASETS, the pair
        `<ds>_val,<ds>_test` (e.g. arch,cifar10_val,cifar10_test,cifar100_val,cifar100_test).
        Other columns are ignored."""
        rows: dict[str, tuple[float, ...]] = {}
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            found = tuple(f.strip() for f in (reader.fieldnames or []) if f is not None)
            pairs = ", ".join(",".join(dataset_columns(d)) for d in TABLE_DATASETS)
            expected = f"expected arch and at least one of the column pairs {pairs}; its columns: {', '.join(found) or 'none'}"
            if "arch" not in found:
                raise ValueError(f"{path}: no column arch; {expected}")
            half = [c for d in TABLE_DATASETS if any(x in found for x in dataset_columns(d))
                    for c in dataset_columns(d) if c not in found]  # one column of a pair without the other
            if half:
                raise ValueError(f"{path}: missing column(s) {', '.join(half)} (a dataset needs both its "
                                 f"columns); {expected}")
            columns = tuple(c for d in TABLE_DATASETS for c in dataset_columns(d) if c in found)
            if not columns:
                raise ValueError(f"{path}: no accuracy columns; {expected}")
            reader.fieldnames = list(found)  # stripped names
            for line, row in enumerate(reader, 2):
                try:
                    rows[row["arch"].strip()] = tuple(float(row[c]) for c in columns)
                except (AttributeError, TypeError, ValueError) as exc:
                    raise ValueError(f"{path}:{line}: cannot read accuracies: {exc}") from None
        return cls(rows, columns, found)

    def __len__(self) -> int:
        return len(self.rows)

    def block(self, arch: str) -> Block:
        return self._blocks[arch]

    def classes(self, h: str) -> list[list[str]]:
        """The isomorphism classes inside one hash group (usually exactly one)."""
        found = self._classes.get(h)
        if found is None:
            found = []
            # strings with equal live parts share one Block: one isomorphism check per distinct Block
            class_of: dict[int, list[str]] = {}
            for arch in self.groups.get(h, []):
                block = self._blocks[arch]
                members = class_of.get(id(block))
                if members is None:
                    members = next((m for m in found if is_isomorphic(self._blocks[m[0]], block)), None)
                    if members is None:
                        members = []
                        found.append(members)
                    class_of[id(block)] = members
                members.append(arch)
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
        """Mean of each of `columns` over the block's class (the cells isomorphic to it), with the class
        size, its arch strings and the block's hash; None when the block is not in the table."""
        h, members = self._find(block)
        if members is None:
            return None
        out: dict = {}
        for i, col in enumerate(self.columns):
            out[col] = sum(self.rows[a][i] for a in members) / len(members)
        out["class_size"] = len(members)
        out["members"] = list(members)
        out["hash"] = h
        return out

    def in_space(self, block: Block) -> bool:
        return self.find_class(block) is not None


@lru_cache(maxsize=1)
def all_cells() -> Nb201Table:
    """All 15,625 cells without accuracies: built once per process on first use (about 2 s), then
    shared by every caller (a cache, not mutable state: the table's content never changes)."""
    return Nb201Table({a: () for a in all_arch_strings()}, columns=())


def in_space(block: Block, table: Nb201Table | None = None) -> bool:
    """Whether a block is (isomorphic to) an NB201 cell: against the table's classes when given,
    else against all 15,625 converted cells (`all_cells`)."""
    return (all_cells() if table is None else table).in_space(block)


# ------------------------------------------------------------------ the official release -> CSV

class Nb201ReleaseError(ValueError):
    """A NAS-Bench-201 release file that cannot be converted; the message says what is missing."""


# Where each table column comes from in the release, as the NB201 paper reports them: CIFAR-10
# validation from the `cifar10-valid` runs (trained on the train half) on x-valid, its test from the
# `cifar10` runs (trained on train+valid) on ori-test; CIFAR-100 and ImageNet16-120 on x-valid / x-test.
RELEASE_SOURCES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "cifar10": (("cifar10-valid", "x-valid"), ("cifar10", "ori-test")),
    "cifar100": (("cifar100", "x-valid"), ("cifar100", "x-test")),
    "imagenet16-120": (("ImageNet16-120", "x-valid"), ("ImageNet16-120", "x-test")),
}


def load_release(path: str | Path, trust_pickle: bool = False):
    """The release's dict. Read with torch.load(weights_only=True), which rebuilds only plain
    containers, numbers, strings and tensors; a file holding anything else is refused unless
    `trust_pickle`, which unpickles it in full (that runs code from the file: only for a file from a
    source you trust)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            import re

            text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # torch colours its message
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()] or [type(exc).__name__]
            why = next((ln for ln in lines if "Unsupported global" in ln), lines[0]).split(" Please use")[0]
            raise Nb201ReleaseError(
                f"{path} holds more than plain containers, numbers and tensors ({why[:300]}); unpickling "
                f"it in full would run code from the file: if it is the official NAS-Bench-201 release "
                f"from a source you trust, rerun with --trust-pickle") from None
    return torch.load(path, map_location="cpu", weights_only=False)


def _mean_accuracy(results, where: tuple[str, str], idx) -> float:
    dataset, split = where
    seeds = results.get("dataset_seed", {}).get(dataset)
    if not seeds:
        raise Nb201ReleaseError(f"arch index {idx}: no runs on {dataset!r}; its datasets: "
                                f"{', '.join(map(str, results.get('dataset_seed', {}))) or 'none'}")
    accs = []
    for seed in seeds:
        run = results.get("all_results", {}).get((dataset, seed))
        if run is None:
            raise Nb201ReleaseError(f"arch index {idx}: dataset_seed lists seed {seed} on {dataset!r} but "
                                    f"all_results has no ({dataset!r}, {seed}) entry")
        key = f"{split}@{int(run.get('epochs', 200)) - 1}"  # the last epoch
        acc = run.get("eval_acc1es", {}).get(key)
        if acc is None:
            raise Nb201ReleaseError(f"arch index {idx}: run ({dataset!r}, {seed}) has no {key!r} accuracy; "
                                    f"its eval sets: {', '.join(map(str, run.get('eval_names', []))) or 'none'}")
        accs.append(float(acc))
    return sum(accs) / len(accs)


def release_rows(data) -> tuple[tuple[str, ...], dict[str, tuple[float, ...]]]:
    """The table's columns and its rows (arch -> 200-epoch accuracies, each the mean over the
    release's seeds) from a loaded release: {'meta_archs': [arch, ...], 'arch2infos': {index:
    {'full': ArchResults state dict, ...}}} (the API's in-memory form, keyed '200', is read too).
    An ArchResults state dict has 'dataset_seed' {dataset: [seed, ...]} and 'all_results'
    {(dataset, seed): {'epochs': 200, 'eval_acc1es': {'x-valid@199': acc, ...}, ...}}."""
    if not isinstance(data, dict) or "meta_archs" not in data or "arch2infos" not in data:
        keys = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise Nb201ReleaseError(f"not a NAS-Bench-201 release: expected a dict with keys meta_archs and "
                                f"arch2infos, got {keys}")
    archs = data["meta_archs"]
    columns = tuple(c for d in TABLE_DATASETS for c in dataset_columns(d))
    rows: dict[str, tuple[float, ...]] = {}
    for idx in sorted(data["arch2infos"], key=int):
        info = data["arch2infos"][idx]
        results = info.get("full", info.get("200")) if isinstance(info, dict) else None
        if not isinstance(results, dict):
            shown = ", ".join(map(str, info)) if isinstance(info, dict) else type(info).__name__
            raise Nb201ReleaseError(f"arch index {idx}: expected the 200-epoch results under 'full' (or '200'); "
                                    f"found {shown}")
        arch = archs[int(idx)]
        parse_arch(arch)  # a malformed string is an error, not a row
        rows[arch] = tuple(_mean_accuracy(results, where, idx) for d in TABLE_DATASETS for where in RELEASE_SOURCES[d])
    if not rows:
        raise Nb201ReleaseError("the release has no evaluated architectures (arch2infos is empty)")
    return columns, rows


def write_table(path: str | Path, columns: tuple[str, ...], rows: dict[str, tuple[float, ...]]) -> None:
    """A CSV that `Nb201Table.load` reads: arch, then the columns, accuracies to 4 decimals."""
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(("arch",) + tuple(columns))
        for arch, values in rows.items():
            out.writerow([arch] + [f"{v:.4f}" for v in values])
