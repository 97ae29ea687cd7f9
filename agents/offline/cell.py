"""The offline designer's reasoning inside the NB201 cell space: which change of a cell to try next.

It decides as a model would, from what a model sees: a prior over the five ops (general knowledge:
3x3 convolutions carry most of the accuracy, a 1x1 less, a skip path helps optimisation but adds no
capacity, pooling and `none` remove capacity, and the input->output identity is the cell's residual
path), a small nudge from the inspirations the knowledge base returns, and the validation-accuracy
deltas of earlier changes as the experience base and the task's list of tried children report them.
It never reads a benchmark table.

A cell is valued by its live edges only (an op on an edge that reaches nothing adds nothing), so a
change that wakes an idle node (two edges at once) is valued by both of its edges. Changes are
written in one machine-readable form, `set edge 2<-0: none -> nor_conv_3x3 + ... => ARCH`, so that
the plan the loop stores as experience can be read back by later trials (and by earlier runs
sharing a memory): the move and the cell it gave. Pure functions and frozen records: no state
between calls; pure look-ups are cached.
"""
from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping

import numpy as np

from graphs.hashing import canonical_hash
from graphs.ir import Block
from graphs.nb201 import NB201_OPS, arch_to_block, format_arch, live_edges, parse_arch
from graphs.space import CELL_EDGES, block_to_arch

__all__ = ["OP_PRIOR", "EDGE_PRIOR", "CellChange", "Move", "move_text", "parse_changes", "parse_moves",
           "parse_move", "parse_delta", "find_archs", "cell_of", "apply_change", "live_arch", "canonical",
           "changes_between", "describe_change", "change_record", "knowledge_bias", "Observation",
           "observations_from_tried", "observations_from_experience", "CellModel", "Candidate", "rank_moves",
           "MAX_EDGES", "FALLBACK_LABEL", "fallback_cells"]

# General knowledge, in validation-accuracy points per live edge: what an op adds over `none`.
OP_PRIOR: dict[str, float] = {"none": 0.0, "avg_pool_3x3": 0.3, "skip_connect": 1.0, "nor_conv_1x1": 2.0,
                              "nor_conv_3x3": 3.0}
# The input->output skip is the cell's residual path (ResNet): worth more than a skip elsewhere.
EDGE_PRIOR: dict[tuple[tuple[int, int], str], float] = {((0, 3), "skip_connect"): 2.5}
# How strongly the prior holds against observed deltas (ridge weights): op values move after a few
# observations, edge-specific values need more.
_OP_STIFFNESS = 1.0
_EDGE_STIFFNESS = 2.0
# Expected points a move must beat per edge beyond the first: larger moves are less certain.
_EDGE_PENALTY = 0.3
MAX_EDGES = 3  # the largest move considered (three edges: only when smaller moves run out)

_CHANGE_RE = re.compile(r"set edge (\d)\s*<-\s*(\d):\s*(\w+)\s*->\s*(\w+)")
_DELTA_RES = (re.compile(r"by ([+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?) points"),
              re.compile(r"\(([+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?) vs parent\)"))
_OP = "|".join(NB201_OPS)
_ARCH_RE = re.compile(rf"\|(?:(?:{_OP})~\d\|)+\+\|(?:(?:{_OP})~\d\|)+\+\|(?:(?:{_OP})~\d\|)+")
_TARGET_RE = re.compile(r"=>\s*(\|\S+)")
FALLBACK_LABEL = "if it repeats an earlier candidate, instead:"  # a plan's fallback moves follow this


@dataclass(frozen=True)
class CellChange:
    """One edge of a cell gets a different op. `edge` is (j, k): from node j into node k."""

    edge: tuple[int, int]
    old: str
    new: str

    @property
    def edge_name(self) -> str:
        return f"{self.edge[1]}<-{self.edge[0]}"

    def text(self) -> str:
        """The machine-readable form plans and experience records carry."""
        return f"set edge {self.edge_name}: {self.old} -> {self.new}"

    def edit(self) -> dict:
        """The typed edit that makes this change (graphs.edits `set_cell_edge`)."""
        return {"kind": "set_cell_edge", "edge": self.edge_name, "op": self.new}


Move = tuple[CellChange, ...]  # changes on distinct edges, made together in one design


def _change(hit: re.Match) -> CellChange | None:
    k, j, old, new = hit.groups()
    edge = (int(j), int(k))
    if edge in CELL_EDGES and old in NB201_OPS and new in NB201_OPS and old != new:
        return CellChange(edge, old, new)
    return None


def parse_changes(text: str) -> list[CellChange]:
    """Every well-formed `set edge k<-j: old -> new` in `text`, in order; others are skipped."""
    return [c for c in map(_change, _CHANGE_RE.finditer(text or "")) if c is not None]


def move_text(move: Move) -> str:
    """A move as plans and records write it: its changes joined by " + "."""
    return " + ".join(c.text() for c in move)


def parse_moves(text: str) -> list[Move]:
    """The moves written in `text`, in order: changes joined by "+" form one move. A move cut off
    by a shortened line (its last change followed by an ellipsis or a half-written change) is
    dropped: what it did is unknown."""
    text = text or ""
    out: list[Move] = []
    last_end = None
    for hit in _CHANGE_RE.finditer(text):
        change = _change(hit)
        if change is None:
            if out and last_end is not None and re.fullmatch(r"\s*\+\s*", text[last_end:hit.start()]):
                out.pop()  # a move whose next change is garbled or cut off: what it did is unknown
            last_end = None
            continue
        joined = last_end is not None and re.fullmatch(r"\s*\+\s*", text[last_end:hit.start()]) is not None
        if joined and change.edge not in {c.edge for c in out[-1]}:
            out[-1] = out[-1] + (change,)
        else:
            out.append((change,))
        last_end = hit.end()
    if out and last_end is not None and re.match(r"\s*(?:\+|…|\.\.\.)", text[last_end:]) and \
            not re.match(r"\s*\+\s*set edge", text[last_end:]):
        out.pop()  # the move goes on past the end of the shortened text
    return out


def parse_move(text: str) -> Move | None:
    """The first move written in `text` (what a plan or a record says was done), or None."""
    moves = parse_moves(text)
    return moves[0] if moves else None


def parse_delta(text: str) -> float | None:
    """A validation-accuracy change as the loop words it ("... by +0.23 points", "(+0.23 vs parent)")."""
    for pattern in _DELTA_RES:
        hit = pattern.search(text or "")
        if hit:
            return float(hit.group(1))
    return None


def find_archs(text: str) -> list[str]:
    """The well-formed NB201 arch strings quoted in `text`, in order."""
    out = []
    for hit in _ARCH_RE.finditer(text or ""):
        try:
            parse_arch(hit.group(0))
        except ValueError:
            continue
        out.append(hit.group(0))
    return out


def _target(text: str) -> str | None:
    """The cell a record says a move gave ("... => ARCH"), or None."""
    hit = _TARGET_RE.search(text or "")
    archs = find_archs(hit.group(1)) if hit else []
    return archs[0] if archs else None


def cell_of(block: Block, text: str = "") -> str | None:
    """The canonical arch string of an NB201 cell block (graphs.space), else the arch string quoted
    in `text` (e.g. the task) whose block is this one. None when the block is no NB201 cell."""
    arch = block_to_arch(block)
    if arch:
        return arch
    h = canonical_hash(block)
    return next((a for a in find_archs(text) if canonical_hash(arch_to_block(a)) == h), None)


def apply_change(arch: str, change: CellChange | Move) -> str:
    ops = parse_arch(arch)
    for c in (change if isinstance(change, tuple) else (change,)):
        ops[c.edge] = c.new
    return format_arch(ops)


@lru_cache(maxsize=None)  # pure, and at most 15,625 arch strings
def live_arch(arch: str) -> str:
    """The arch string with `none` on every edge that carries nothing from input to output: two
    cells with the same live arch are the same network. Pure string work (no block is built)."""
    ops = parse_arch(arch)
    live = {(j, k): op for j, k, op in live_edges(ops)}
    return format_arch({e: live.get(e, "none") for e in CELL_EDGES})


@lru_cache(maxsize=None)  # pure, and at most 15,625 cells: each is read once per process
def canonical(arch: str) -> str:
    """The canonical arch string of a cell as graphs.space reads blocks (isomorphic cells, such as
    the two middle nodes swapped, share it)."""
    return block_to_arch(arch_to_block(arch)) or live_arch(arch)


def changes_between(parent_arch: str, child_arch: str) -> list[CellChange]:
    """The edge changes that turn one cell into the other, in NB201 edge order."""
    a, b = parse_arch(parent_arch), parse_arch(child_arch)
    return [CellChange(e, a[e], b[e]) for e in CELL_EDGES if a[e] != b[e]]


def describe_change(parent_arch: str, child_arch: str) -> str:
    """What turned the parent's cell into the child's, as plans write it ("set edge 2<-0: none ->
    nor_conv_3x3", several joined by " + "); "" when the cells are the same."""
    return move_text(tuple(changes_between(canonical(parent_arch), canonical(child_arch))))


def change_record(parent_arch: str, child_arch: str) -> str:
    """The change a trial actually made, as the designer reads it back from experience: the move
    and the cell it gave, "set edge ... => ARCH". For the loop to store (rather than the plan, which
    the Modifier may have left for a fallback when the planned cell repeated an earlier one)."""
    return f"{describe_change(parent_arch, child_arch)} => {canonical(child_arch)}"


# ------------------------------------------------------------------------------ evidence
_KNOWLEDGE_CUES: dict[str, tuple[str, ...]] = {
    "nor_conv_3x3": ("3x3", "3 x 3", "spatial"),
    "nor_conv_1x1": ("1x1", "pointwise", "bottleneck"),
    "skip_connect": ("shortcut", "skip", "residual", "identity"),
    "avg_pool_3x3": ("pooling", "avgpool", "average pool"),
}


def knowledge_bias(texts: Iterable[str], per_hit: float = 0.1, cap: float = 0.3) -> dict[str, float]:
    """A small nudge per op from retrieved inspirations that speak for it (each hit counts once per
    op, the total is capped): the knowledge base refines the prior, it does not replace it."""
    bias = {op: 0.0 for op in NB201_OPS}
    for text in texts:
        low = (text or "").lower()
        for op, cues in _KNOWLEDGE_CUES.items():
            if any(c in low for c in cues):
                bias[op] = min(cap, bias[op] + per_hit)
    return bias


@dataclass(frozen=True)
class Observation:
    """A trained change: the cell before and after (live arch strings; None when unknown), the
    move, and the validation-accuracy delta (child minus parent, in points)."""

    move: Move
    delta: float
    before: str | None = None
    after: str | None = None


def _observation(move: Move, delta: float | None, before: str | None, after: str | None) -> Observation | None:
    if delta is None:
        return None
    if after is None and before is not None:
        after = apply_change(before, move)
    if before is None and after is not None:
        before = apply_change(after, tuple(CellChange(c.edge, c.new, c.old) for c in move))
    return Observation(move, float(delta), before and live_arch(before), after and live_arch(after))


def observations_from_tried(tried: str, parent_arch: str | None = None) -> tuple[list[str], list[Observation]]:
    """From the task's "children already tried" lines (of the node whose cell is `parent_arch`):
    the cells already tried there (trained or not) and the trained ones' deltas against the node."""
    known, seen = [], []
    for line in (tried or "").splitlines():
        move = parse_move(line)
        if move is None:
            continue
        after = apply_change(parent_arch, move) if parent_arch else _target(line)
        if after:
            known.append(after)
        obs = _observation(move, parse_delta(line) if "trained" in line else None, parent_arch, after)
        if obs is not None:
            seen.append(obs)
    return known, seen


def fallback_cells(text: str, after: str | None) -> list[str]:
    """The cells of the fallback moves a plan or record names (after FALLBACK_LABEL), given the
    cell `after` its first move gave: any of them may be what the trial made instead."""
    head, found, tail = (text or "").partition(FALLBACK_LABEL)
    first = parse_move(head)
    if not found or first is None or after is None:
        return []
    before = apply_change(after, tuple(CellChange(c.edge, c.new, c.old) for c in first))
    return [apply_change(before, m) for m in parse_moves(tail)]


def observations_from_experience(items: Iterable[Mapping]) -> tuple[list[str], list[Observation]]:
    """From experience records: the cells they say were made (any type), and the success/regression
    records' deltas, each record once (by id)."""
    known, out, ids = [], [], set()
    for it in items:
        if not isinstance(it, Mapping):
            continue
        key = it.get("id")
        if key is not None and key in ids:
            continue
        ids.add(key)
        change = str(it.get("change") or "")
        after = _target(change)
        if after:
            known.append(after)
        known += fallback_cells(change, after)  # one of them may be what the trial made
        move = parse_move(change)
        if it.get("type") not in ("success", "regression") or move is None:
            continue
        md = it.get("metrics_delta")
        delta = md.get("valid_acc") if isinstance(md, Mapping) and isinstance(md.get("valid_acc"), (int, float)) \
            else parse_delta(str(it.get("advice") or ""))
        obs = _observation(move, delta, None, after)
        if obs is not None:
            out.append(obs)
    return known, out


# ------------------------------------------------------------------------------ the model
_N_OP, _N_EDGE = len(NB201_OPS), len(CELL_EDGES)


@lru_cache(maxsize=None)
def _cell_features(arch: str) -> np.ndarray:
    """Per op, how many live edges carry it; per (edge, op), whether the live edge carries it."""
    x = np.zeros(_N_OP + _N_EDGE * _N_OP)
    ops = parse_arch(live_arch(arch))
    for e, edge in enumerate(CELL_EDGES):
        i = NB201_OPS.index(ops[edge])
        x[i] += 1.0
        x[_N_OP + e * _N_OP + i] = 1.0
    x.setflags(write=False)
    return x


def _move_features(move: Move) -> np.ndarray:
    """A move's features when the cells around it are unknown: every changed edge counted live."""
    x = np.zeros(_N_OP + _N_EDGE * _N_OP)
    for change in move:
        e = CELL_EDGES.index(change.edge)
        for op, sign in ((change.new, 1.0), (change.old, -1.0)):
            i = NB201_OPS.index(op)
            x[i] += sign
            x[_N_OP + e * _N_OP + i] += sign
    return x


def _features(o: Observation) -> np.ndarray:
    if o.before is not None and o.after is not None:
        return _cell_features(o.after) - _cell_features(o.before)
    return _move_features(o.move)


@dataclass(frozen=True)
class CellModel:
    """Additive value of each op on a live edge (and of each op on each edge): a cell's value is
    the sum over its live edges, a change's expected delta the difference of the two cells' values.
    Fitted by ridge regression towards the prior, so that one observation moves the estimate
    without overturning general knowledge."""

    weights: tuple[float, ...]  # NB201_OPS, then CELL_EDGES x NB201_OPS

    @classmethod
    def fit(cls, observations: Iterable[Observation], bias: Mapping[str, float] | None = None) -> "CellModel":
        prior = np.array([OP_PRIOR[op] + (bias or {}).get(op, 0.0) for op in NB201_OPS] +
                         [EDGE_PRIOR.get((e, op), 0.0) for e in CELL_EDGES for op in NB201_OPS])
        stiff = np.array([_OP_STIFFNESS] * _N_OP + [_EDGE_STIFFNESS] * (len(prior) - _N_OP))
        obs = list(observations)
        if obs:
            x = np.stack([_features(o) for o in obs])
            y = np.array([o.delta for o in obs])
            w = np.linalg.solve(x.T @ x + np.diag(stiff), x.T @ y + stiff * prior)
        else:
            w = prior
        return cls(tuple(float(v) for v in w))

    def value(self, arch: str) -> float:
        return float(_cell_features(arch) @ np.array(self.weights))

    def expected(self, before: str, after: str) -> float:
        """The expected validation-accuracy change from cell `before` to cell `after`."""
        return self.value(after) - self.value(before)


@dataclass(frozen=True)
class Candidate:
    move: Move
    cell: str     # canonical arch string of the result
    gain: float   # expected validation-accuracy change, points


@lru_cache(maxsize=256)
def _moves(arch: str, edges: int) -> tuple[tuple[Move, str], ...]:
    """Every move of exactly `edges` changed edges from the cell `arch` whose live result differs
    from the cell, with that live result; the first move per result (fewest changes written)."""
    ops = parse_arch(arch)
    here = live_arch(arch)
    out, seen = [], set()
    for chosen in itertools.combinations(CELL_EDGES, edges):
        for new_ops in itertools.product(*[[op for op in NB201_OPS if op != ops[e]] for e in chosen]):
            move = tuple(CellChange(e, ops[e], op) for e, op in zip(chosen, new_ops))
            live = live_arch(apply_change(arch, move))
            if live != here and live not in seen:
                seen.add(live)
                out.append((move, live))
    return tuple(out)


def rank_moves(arch: str, model: CellModel, rng: random.Random, known: Iterable[str] = (),
               want: int = 10, max_edges: int = MAX_EDGES) -> list[Candidate]:
    """Up to `want` moves from `arch` to cells new as far as the caller knows (not a `known` cell,
    not `arch` itself, no two to the same cell), best first: expected gain, less a small penalty
    per edge beyond the first. Moves of one and two edges first; three-edge moves only when fewer
    than `want` of those are left. Ties are broken by `rng` (deterministic per seed)."""
    taken = {canonical(a) for a in known} | {canonical(arch)}
    w = np.array(model.weights)
    base = float(_cell_features(arch) @ w)
    out: list[Candidate] = []
    pools = [(1, 2)] + [(n,) for n in range(3, max_edges + 1)]
    for sizes in pools:
        scored = [(float(_cell_features(live) @ w) - base, rng.random(), m, live)
                  for n in sizes for m, live in _moves(arch, n)]
        scored.sort(key=lambda t: (-round(t[0] - _EDGE_PENALTY * (len(t[2]) - 1), 6), t[1]))
        for gain, _, move, live in scored:
            cell = canonical(live)
            if cell in taken:
                continue
            taken.add(cell)
            out.append(Candidate(move, cell, gain))
            if len(out) >= want:
                return out
    return out
