"""Baseline designers that use no model (DESIGN §9, config group `designer`): `random` and `rea`.

They run in the same loop, tree, evaluator, budget and deduplication as the agent team (`team`,
for which `make_designer` returns None): each trial the loop asks `propose(...)` for one design and
evaluates it like a team's draft.

- `random`: in the NB201 space a cell drawn uniformly from the 15,625 arch strings (six ops drawn
  uniformly), derived from the root; in the open space 1..`max_edits` random valid edits of the
  node the search policy selected.
- `rea`: regularised evolution (Real et al., 2019). The population is the last `population` trained
  nodes in trial order (the root counts). Until it is full, sample as `random` does; then draw
  `tournament` members, take the best by validation accuracy as the parent and mutate one edge op
  (uniform edge, uniform different op); in the open space one random valid edit of that parent.

Both redraw while `is_new(block)` is False, up to `MAX_TRIES` times, then return the last draw (the
loop records it as a duplicate). Deterministic given `rng`; no state is kept between calls.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Protocol

from graphs.ir import Block
from graphs.nb201 import NB201_OPS, arch_to_block, format_arch, parse_arch
from graphs.space import CELL_EDGES, Space
from graphs.tree import ModificationTree, TreeNode
from graphs.validate import validate

from .offline.cell import CellChange, apply_change

__all__ = ["Proposal", "Designer", "RandomDesigner", "READesigner", "DESIGNERS", "MAX_TRIES", "make_designer",
           "population"]

MAX_TRIES = 100  # draws per proposal before a repeat is handed to the loop as a duplicate
_EDIT_TRIES = 20  # strategy draws per open-space edit before giving up on that edit


@dataclass(frozen=True)
class Proposal:
    parent: int  # tree node id the design derives from
    block: Block
    plan: str    # one line, e.g. "rea: tournament [3, 5, 9] -> 5; set edge 2<-1: nor_conv_1x1 -> nor_conv_3x3"


class Designer(Protocol):
    name: str

    def propose(self, tree: ModificationTree, parent: TreeNode, rng: random.Random, space: Space,
                is_new: Callable[[Block], bool]) -> Proposal: ...


def _is_nb201(space: Space) -> bool:
    return getattr(space, "name", "open") == "nb201"


def _random_cell(rng: random.Random) -> str:
    # Six independent uniform ops: exactly uniform over the 15,625 arch strings.
    return format_arch({e: rng.choice(NB201_OPS) for e in CELL_EDGES})


def _mutate_cell(arch: str, rng: random.Random) -> tuple[str, CellChange]:
    edge = rng.choice(CELL_EDGES)
    old = parse_arch(arch)[edge]
    change = CellChange(edge, old, rng.choice([op for op in NB201_OPS if op != old]))
    return apply_change(arch, change), change


def _random_edit(block: Block, rng: random.Random) -> tuple[Block, str] | None:
    """One random valid edit of an open-space block: a random offline strategy at a random site,
    kept only when the result passes the validator. None when no draw gives a valid block."""
    from graphs.edits import EditError, apply_edits

    from .offline.strategies import STRATEGIES

    for _ in range(_EDIT_TRIES):
        strategy = rng.choice(STRATEGIES)
        plan = strategy.try_propose(block, rng)
        if plan is None:
            continue
        try:
            new = apply_edits(block, plan.edits)
        except EditError:
            continue
        if not validate(new, "base"):
            return new, plan.strategy
    return None


def _random_edits(block: Block, rng: random.Random, count: int) -> tuple[Block, list[str]]:
    done: list[str] = []
    for _ in range(count):
        step = _random_edit(block, rng)
        if step is None:
            break
        block, name = step
        done.append(name)
    return block, done


def _draw_until_new(draw: Callable[[], Proposal], is_new: Callable[[Block], bool]) -> Proposal:
    proposal = draw()
    for _ in range(MAX_TRIES - 1):
        if is_new(proposal.block):
            return proposal
        proposal = draw()
    return proposal


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"designer option {name}={value!r} is out of range: expected an integer in {low}..{high}")
    return value


@dataclass(frozen=True)
class RandomDesigner:
    """Random search; `max_edits` bounds the open-space edits per design (1..10)."""

    max_edits: int = 3
    name: str = "random"

    def __post_init__(self):
        _check_int("max_edits", self.max_edits, 1, 10)

    def sample(self, tree: ModificationTree, parent: TreeNode, rng: random.Random, space: Space) -> Proposal:
        if _is_nb201(space):
            arch = _random_cell(rng)
            return Proposal(tree.nodes[0].id, arch_to_block(arch), f"{self.name}: uniform cell {arch}")
        count = rng.randint(1, self.max_edits)
        block, names = _random_edits(tree.block_of(parent.id), rng, count)
        return Proposal(parent.id, block, f"{self.name}: {len(names)} random edit(s) of node {parent.id}: "
                                          f"{', '.join(names) or 'none applied'}")

    def propose(self, tree: ModificationTree, parent: TreeNode, rng: random.Random, space: Space,
                is_new: Callable[[Block], bool]) -> Proposal:
        return _draw_until_new(lambda: self.sample(tree, parent, rng, space), is_new)


def population(tree: ModificationTree, size: int) -> list[TreeNode]:
    """The last `size` trained nodes with a validation accuracy, in trial order (the root first)."""
    trained = [n for n in tree.nodes if n.status == "trained" and n.valid_acc is not None]
    trained.sort(key=lambda n: (-1 if n.trial is None else n.trial, n.id))
    return trained[-size:]


@dataclass(frozen=True)
class READesigner:
    """Regularised evolution: `population` (2..1000) members, tournaments of `tournament`
    (1..population) drawn from them; `max_edits` is for the random phase in the open space."""

    population: int = 10
    tournament: int = 3
    max_edits: int = 3
    name: str = "rea"

    def __post_init__(self):
        _check_int("population", self.population, 2, 1000)
        _check_int("tournament", self.tournament, 1, 1000)
        if self.tournament > self.population:
            raise ValueError(f"designer option tournament={self.tournament} is out of range: it must be at most "
                             f"population={self.population}")
        _check_int("max_edits", self.max_edits, 1, 10)

    def propose(self, tree: ModificationTree, parent: TreeNode, rng: random.Random, space: Space,
                is_new: Callable[[Block], bool]) -> Proposal:
        members = population(tree, self.population)
        if len(members) < self.population:
            warmup = RandomDesigner(self.max_edits, name=f"{self.name} (warm-up)")
            return warmup.propose(tree, parent, rng, space, is_new)

        def draw() -> Proposal:
            picked = rng.sample(members, self.tournament)
            best = max(picked, key=lambda n: n.valid_acc)  # ties: the earlier draw
            head = f"{self.name}: tournament {[n.id for n in picked]} -> {best.id}"
            block = tree.block_of(best.id)
            if _is_nb201(space):
                arch = space.arch_of(block)
                new, change = _mutate_cell(arch, rng)
                return Proposal(best.id, arch_to_block(new), f"{head}; {change.text()}")
            new_block, names = _random_edits(block, rng, 1)
            return Proposal(best.id, new_block, f"{head}; {', '.join(names) or 'no valid edit found'}")

        return _draw_until_new(draw, is_new)


DESIGNERS: dict[str, type] = {"random": RandomDesigner, "rea": READesigner}


def make_designer(name: str, **options) -> RandomDesigner | READesigner | None:
    """The baseline designer called `name` with its options; None for `team` (the agents design).
    ValueError for an unknown name or option, or an option out of range."""
    if name == "team":
        return None
    if name not in DESIGNERS:
        raise ValueError(f"unknown designer {name!r}; valid designers: team, {', '.join(DESIGNERS)}")
    cls = DESIGNERS[name]
    # One config group serves every designer: options of the others are ignored, unknown ones are an error.
    known = {f for c in DESIGNERS.values() for f in c.__dataclass_fields__ if f != "name"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown designer option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    mine = {k: v for k, v in options.items() if k in cls.__dataclass_fields__ and k != "name"}
    return cls(**mine)
