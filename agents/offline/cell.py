"""The offline designer's reasoning inside the NB201 cell space: which change of a cell to try next.

It decides as a model would, from what a model sees: a prior over the five ops (general knowledge:
3x3 convolutions carry most of the accuracy, a 1x1 less, a skip path helps optimisation but adds no
capacity, pooling and `none` remove capacity, and the input->output identity is the cell's residual
path), a small nudge from the inspirations the knowledge base returns, and the validation-accuracy
deltas of earlier changes as the experience base and the task's list of tried children report them.
It never reads a benchmark table.

The value of each op is a Bayesian linear model of those deltas: the prior is its mean, every
observation moves it, and each trial acts on one draw from the posterior (Thompson sampling, seeded
by the run's seed), so that an op the prior undervalues is still tried, a wrong prior is overturned
by results, and two seeds are two samples of the search. In a blind space (graphs.blind) the ops
have neutral names: the `Vocab` then holds those names, a flat prior and no knowledge of which op
carries nothing (every edge counts as live, and only the run's own check tells isomorphic cells
apart).

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
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Mapping

import numpy as np

from graphs.hashing import canonical_hash
from graphs.ir import Block
from graphs.nb201 import NB201_OPS, arch_to_block, format_arch, live_edges, parse_arch
from graphs.space import CELL_EDGES, block_to_arch

__all__ = ["Vocab", "REAL", "blind_vocab", "OP_PRIOR", "EDGE_PRIOR", "CellChange", "Move", "move_text",
           "parse_changes", "parse_moves", "parse_move", "parse_delta", "find_archs", "cell_of", "apply_change",
           "live_arch", "canonical", "changes_between", "describe_change", "change_record", "knowledge_bias",
           "Observation", "observations_from_tried", "observations_from_experience", "CellModel", "Candidate",
           "rank_moves", "MAX_EDGES", "FALLBACK_LABEL", "fallback_cells"]


@dataclass(frozen=True)
class Vocab:
    """The op names a designer sees, the one of them that carries nothing (known with real names,
    None in a blind space), and the prior: points per live edge by op, and extra points for an op
    on one edge (both empty: a flat prior)."""

    ops: tuple[str, ...]
    none: str | None = None
    prior: tuple[float, ...] = ()
    edge_prior: tuple[tuple[tuple[tuple[int, int], str], float], ...] = ()

    @property
    def real(self) -> bool:
        """The NB201 names themselves: liveness and isomorphism can be read from a cell."""
        return self.none == "none" and self.ops == NB201_OPS


# General knowledge, in validation-accuracy points per live edge: what an op adds over `none`.
OP_PRIOR: dict[str, float] = {"none": 0.0, "avg_pool_3x3": 0.3, "skip_connect": 1.0, "nor_conv_1x1": 2.0,
                              "nor_conv_3x3": 3.0}
# The input->output skip is the cell's residual path (ResNet): worth more than a skip elsewhere.
EDGE_PRIOR: dict[tuple[tuple[int, int], str], float] = {((0, 3), "skip_connect"): 2.5}
REAL = Vocab(NB201_OPS, "none", tuple(OP_PRIOR[op] for op in NB201_OPS), tuple(EDGE_PRIOR.items()))


def blind_vocab(ops: Iterable[str]) -> Vocab:
    """A blind space's vocabulary: its neutral names, a flat prior, and no op known to be `none`."""
    return Vocab(tuple(ops))


# How strongly the prior holds against observed deltas (ridge weights, in observations): op values
# move after a few observations, edge-specific values need more.
_OP_STIFFNESS = 1.0
_EDGE_STIFFNESS = 2.0
# Expected points a move must beat per edge beyond the first: larger moves are less certain.
_EDGE_PENALTY = 0.3
MAX_EDGES = 3  # the largest move considered (three edges: only when smaller moves run out)
# Observed deltas are clipped to this many points: accuracy saturates, and a collapsed cell (nothing
# reaches the output) says "bad", not "exactly -60 points" for a linear model to spread over its ops.
_DELTA_CLIP = 10.0
_MIN_NOISE = 0.5  # points: the least observation noise the posterior assumes

_CHANGE_RE = re.compile(r"set edge (\d)\s*<-\s*(\d):\s*(\w+)\s*->\s*(\w+)")
_DELTA_RES = (re.compile(r"by ([+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?) points"),
              re.compile(r"\(([+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?) vs parent\)"))
_ARCH_RE = re.compile(r"\|(?:\w+~\d\|)+\+\|(?:\w+~\d\|)+\+\|(?:\w+~\d\|)+")
_TARGET_RE = re.compile(r"=>\s*(\|\S+)")
FALLBACK_LABEL = "if it repeats an earlier candidate, instead:"  # a plan's fallback moves follow this


# ------------------------------------------------------------------------------ arch strings
def _parse(arch: str, vocab: Vocab) -> dict[tuple[int, int], str]:
    """The op on each edge; ValueError (Nb201ArchError with real names) for a malformed string."""
    if vocab.real:
        return parse_arch(arch)
    ops = parse_arch(_as_real(arch, vocab))  # the form is NB201's: check it with NB201's own reader
    back = dict(zip(NB201_OPS, vocab.ops))
    return {e: back[op] for e, op in ops.items()}


def _as_real(arch: str, vocab: Vocab) -> str:
    """A blind arch string with its names put in NB201's places (only to check its form)."""
    names = dict(zip(vocab.ops, NB201_OPS))

    def swap(m: re.Match) -> str:
        if m.group(1) not in names:
            raise ValueError(f"unknown op {m.group(1)!r} in {arch!r}; the ops are {', '.join(vocab.ops)}")
        return names[m.group(1)] + "~"

    return re.sub(r"(\w+)~", swap, arch.strip())


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


def _change(hit: re.Match, vocab: Vocab) -> CellChange | None:
    k, j, old, new = hit.groups()
    edge = (int(j), int(k))
    if edge in CELL_EDGES and old in vocab.ops and new in vocab.ops and old != new:
        return CellChange(edge, old, new)
    return None


def parse_changes(text: str, vocab: Vocab = REAL) -> list[CellChange]:
    """Every well-formed `set edge k<-j: old -> new` in `text`, in order; others are skipped."""
    return [c for c in (_change(h, vocab) for h in _CHANGE_RE.finditer(text or "")) if c is not None]


def move_text(move: Move) -> str:
    """A move as plans and records write it: its changes joined by " + "."""
    return " + ".join(c.text() for c in move)


def parse_moves(text: str, vocab: Vocab = REAL) -> list[Move]:
    """The moves written in `text`, in order: changes joined by "+" form one move. A move cut off
    by a shortened line (its last change followed by an ellipsis or a half-written change) is
    dropped: what it did is unknown."""
    text = text or ""
    out: list[Move] = []
    last_end = None
    for hit in _CHANGE_RE.finditer(text):
        change = _change(hit, vocab)
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


def parse_move(text: str, vocab: Vocab = REAL) -> Move | None:
    """The first move written in `text` (what a plan or a record says was done), or None."""
    moves = parse_moves(text, vocab)
    return moves[0] if moves else None


def parse_delta(text: str) -> float | None:
    """A validation-accuracy change as the loop words it ("... by +0.23 points", "(+0.23 vs parent)")."""
    for pattern in _DELTA_RES:
        hit = pattern.search(text or "")
        if hit:
            return float(hit.group(1))
    return None


def find_archs(text: str, vocab: Vocab = REAL) -> list[str]:
    """The well-formed arch strings (over the vocabulary's ops) quoted in `text`, in order."""
    out = []
    for hit in _ARCH_RE.finditer(text or ""):
        try:
            _parse(hit.group(0), vocab)
        except ValueError:
            continue
        out.append(hit.group(0))
    return out


def _target(text: str, vocab: Vocab) -> str | None:
    """The cell a record says a move gave ("... => ARCH"), or None."""
    hit = _TARGET_RE.search(text or "")
    archs = find_archs(hit.group(1), vocab) if hit else []
    return archs[0] if archs else None


def cell_of(block: Block, text: str = "") -> str | None:
    """The canonical arch string of an NB201 cell block (graphs.space), else the arch string quoted
    in `text` (e.g. the task) whose block is this one. None when the block is no NB201 cell."""
    arch = block_to_arch(block)
    if arch:
        return arch
    h = canonical_hash(block)
    return next((a for a in find_archs(text) if canonical_hash(arch_to_block(a)) == h), None)


def apply_change(arch: str, change: CellChange | Move, vocab: Vocab = REAL) -> str:
    ops = _parse(arch, vocab)
    for c in (change if isinstance(change, tuple) else (change,)):
        ops[c.edge] = c.new
    return format_arch(ops)


def _undo(move: Move) -> Move:
    return tuple(CellChange(c.edge, c.new, c.old) for c in move)


@lru_cache(maxsize=None)  # pure, and at most 15,625 arch strings
def _live_real(arch: str) -> str:
    ops = parse_arch(arch)
    live = {(j, k): op for j, k, op in live_edges(ops)}
    return format_arch({e: live.get(e, "none") for e in CELL_EDGES})


def live_arch(arch: str, vocab: Vocab = REAL) -> str:
    """The arch string with `none` on every edge that carries nothing from input to output: two
    cells with the same live arch are the same network. Pure string work (no block is built). In a
    blind space nothing is known to carry nothing: the cell as written."""
    return _live_real(arch) if vocab.real else format_arch(_parse(arch, vocab))


@lru_cache(maxsize=None)  # pure, and at most 15,625 cells: each is read once per process
def _canonical_real(arch: str) -> str:
    return block_to_arch(arch_to_block(arch)) or _live_real(arch)


def canonical(arch: str, vocab: Vocab = REAL) -> str:
    """The canonical arch string of a cell as graphs.space reads blocks (isomorphic cells, such as
    the two middle nodes swapped, share it); in a blind space, the cell as written."""
    return _canonical_real(arch) if vocab.real else live_arch(arch, vocab)


def changes_between(parent_arch: str, child_arch: str, vocab: Vocab = REAL) -> list[CellChange]:
    """The edge changes that turn one cell into the other, in NB201 edge order."""
    a, b = _parse(parent_arch, vocab), _parse(child_arch, vocab)
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


def _observation(move: Move, delta: float | None, before: str | None, after: str | None,
                 vocab: Vocab = REAL) -> Observation | None:
    if delta is None:
        return None
    if after is None and before is not None:
        after = apply_change(before, move, vocab)
    if before is None and after is not None:
        before = apply_change(after, _undo(move), vocab)
    return Observation(move, float(delta), before and live_arch(before, vocab), after and live_arch(after, vocab))


def observations_from_tried(tried: str, parent_arch: str | None = None,
                            vocab: Vocab = REAL) -> tuple[list[str], list[Observation]]:
    """From the task's "children already tried" lines (of the node whose cell is `parent_arch`):
    the cells already tried there (trained or not) and the trained ones' deltas against the node."""
    known, seen = [], []
    for line in (tried or "").splitlines():
        move = parse_move(line, vocab)
        if move is None:
            continue
        after = apply_change(parent_arch, move, vocab) if parent_arch else _target(line, vocab)
        if after:
            known.append(after)
        obs = _observation(move, parse_delta(line) if "trained" in line else None, parent_arch, after, vocab)
        if obs is not None:
            seen.append(obs)
    return known, seen


def fallback_cells(text: str, after: str | None, vocab: Vocab = REAL) -> list[str]:
    """The cells of the fallback moves a plan or record names (after FALLBACK_LABEL), given the
    cell `after` its first move gave: any of them may be what the trial made instead."""
    head, found, tail = (text or "").partition(FALLBACK_LABEL)
    first = parse_move(head, vocab)
    if not found or first is None or after is None:
        return []
    before = apply_change(after, _undo(first), vocab)
    return [apply_change(before, m, vocab) for m in parse_moves(tail, vocab)]


def observations_from_experience(items: Iterable[Mapping], vocab: Vocab = REAL) -> tuple[list[str], list[Observation]]:
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
        after = _target(change, vocab)
        if after:
            known.append(after)
        known += fallback_cells(change, after, vocab)  # one of them may be what the trial made
        move = parse_move(change, vocab)
        if it.get("type") not in ("success", "regression") or move is None:
            continue
        md = it.get("metrics_delta")
        delta = md.get("valid_acc") if isinstance(md, Mapping) and isinstance(md.get("valid_acc"), (int, float)) \
            else parse_delta(str(it.get("advice") or ""))
        obs = _observation(move, delta, None, after, vocab)
        if obs is not None:
            out.append(obs)
    return known, out


# ------------------------------------------------------------------------------ the model
@lru_cache(maxsize=None)
def _cell_features(arch: str, vocab: Vocab) -> np.ndarray:
    """Per op, how many live edges carry it; per (edge, op), whether the live edge carries it."""
    n_op = len(vocab.ops)
    x = np.zeros(n_op + len(CELL_EDGES) * n_op)
    ops = _parse(live_arch(arch, vocab), vocab)
    for e, edge in enumerate(CELL_EDGES):
        i = vocab.ops.index(ops[edge])
        x[i] += 1.0
        x[n_op + e * n_op + i] = 1.0
    x.setflags(write=False)
    return x


def _move_features(move: Move, vocab: Vocab) -> np.ndarray:
    """A move's features when the cells around it are unknown: every changed edge counted live."""
    n_op = len(vocab.ops)
    x = np.zeros(n_op + len(CELL_EDGES) * n_op)
    for change in move:
        e = CELL_EDGES.index(change.edge)
        for op, sign in ((change.new, 1.0), (change.old, -1.0)):
            i = vocab.ops.index(op)
            x[i] += sign
            x[n_op + e * n_op + i] += sign
    return x


def _features(o: Observation, vocab: Vocab) -> np.ndarray:
    if o.before is not None and o.after is not None:
        return _cell_features(o.after, vocab) - _cell_features(o.before, vocab)
    return _move_features(o.move, vocab)


@dataclass(frozen=True)
class CellModel:
    """Additive value of each op on a live edge (and of each op on each edge): a cell's value is
    the sum over its live edges, a change's expected delta the difference of the two cells' values.
    The posterior of a Bayesian ridge regression towards the prior: `weights` its mean, `scale` the
    Cholesky factor of its covariance (None: no uncertainty kept), so that one observation moves the
    estimate without overturning general knowledge, and `draw` samples a plausible model."""

    weights: tuple[float, ...]  # vocab.ops, then CELL_EDGES x vocab.ops
    vocab: Vocab = REAL
    scale: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def fit(cls, observations: Iterable[Observation], bias: Mapping[str, float] | None = None,
            vocab: Vocab = REAL) -> "CellModel":
        ops = vocab.ops
        n_op = len(ops)
        prior_op = list(vocab.prior) if vocab.prior else [0.0] * n_op
        edge_prior = dict(vocab.edge_prior)
        prior = np.array([prior_op[i] + (bias or {}).get(op, 0.0) for i, op in enumerate(ops)] +
                         [edge_prior.get((e, op), 0.0) for e in CELL_EDGES for op in ops])
        stiff = np.array([_OP_STIFFNESS] * n_op + [_EDGE_STIFFNESS] * (len(prior) - n_op))
        obs = list(observations)
        precision = np.diag(stiff)
        if obs:
            x = np.stack([_features(o, vocab) for o in obs])
            y = np.clip(np.array([o.delta for o in obs]), -_DELTA_CLIP, _DELTA_CLIP)
            precision = x.T @ x + precision
            w = np.linalg.solve(precision, x.T @ y + stiff * prior)
            resid = y - x @ w
            noise = max(_MIN_NOISE, float(np.sqrt(resid @ resid / len(obs))))
        else:
            w, noise = prior, _MIN_NOISE * 2
        # Covariance noise^2 * precision^-1, kept as a factor L with L L^T = that covariance.
        scale = noise * np.linalg.cholesky(np.linalg.inv(precision))
        return cls(tuple(float(v) for v in w), vocab, scale)

    def draw(self, rng: random.Random) -> "CellModel":
        """One model drawn from the posterior (seeded by `rng`): the values a trial acts on."""
        if self.scale is None:
            return self
        z = np.random.default_rng(rng.getrandbits(64)).standard_normal(len(self.weights))
        return CellModel(tuple(float(v) for v in np.array(self.weights) + self.scale @ z), self.vocab, None)

    def value(self, arch: str) -> float:
        return float(_cell_features(arch, self.vocab) @ np.array(self.weights))

    def expected(self, before: str, after: str) -> float:
        """The expected validation-accuracy change from cell `before` to cell `after`."""
        return self.value(after) - self.value(before)


@dataclass(frozen=True)
class Candidate:
    move: Move
    cell: str     # canonical arch string of the result
    gain: float   # expected validation-accuracy change, points


@lru_cache(maxsize=256)
def _moves(arch: str, edges: int, vocab: Vocab) -> tuple[tuple[Move, str], ...]:
    """Every move of exactly `edges` changed edges from the cell `arch` whose live result differs
    from the cell, with that live result; the first move per result (fewest changes written)."""
    ops = _parse(arch, vocab)
    here = live_arch(arch, vocab)
    out, seen = [], set()
    for chosen in itertools.combinations(CELL_EDGES, edges):
        for new_ops in itertools.product(*[[op for op in vocab.ops if op != ops[e]] for e in chosen]):
            move = tuple(CellChange(e, ops[e], op) for e, op in zip(chosen, new_ops))
            live = live_arch(apply_change(arch, move, vocab), vocab)
            if live != here and live not in seen:
                seen.add(live)
                out.append((move, live))
    return tuple(out)


def rank_moves(arch: str, model: CellModel, rng: random.Random, known: Iterable[str] = (),
               want: int = 10, max_edges: int = MAX_EDGES) -> list[Candidate]:
    """Up to `want` moves from `arch` to cells new as far as the caller knows (not a `known` cell,
    not `arch` itself, no two to the same cell), best first by `model` (a draw, to explore):
    expected gain, less a small penalty per edge beyond the first. Moves of one and two edges first;
    three-edge moves only when fewer than `want` of those are left. Ties are broken by `rng`
    (deterministic per seed)."""
    vocab = model.vocab
    taken = {canonical(a, vocab) for a in known} | {canonical(arch, vocab)}
    w = np.array(model.weights)
    base = float(_cell_features(arch, vocab) @ w)
    out: list[Candidate] = []
    pools = [(1, 2)] + [(n,) for n in range(3, max_edges + 1)]
    for sizes in pools:
        scored = [(float(_cell_features(live, vocab) @ w) - base, rng.random(), m, live)
                  for n in sizes for m, live in _moves(arch, n, vocab)]
        scored.sort(key=lambda t: (-round(t[0] - _EDGE_PENALTY * (len(t[2]) - 1), 6), t[1]))
        for gain, _, move, live in scored:
            cell = canonical(live, vocab)
            if cell in taken:
                continue
            taken.add(cell)
            out.append(Candidate(move, cell, gain))
            if len(out) >= want:
                return out
    return out
