"""Node selection over the modification tree (DESIGN §6, `search.selector`).

A policy is a pure function `policy(tree, rng, **options) -> TreeNode`: it reads the tree and
returns the node the next trial starts from. Selection reads validation accuracy only
(`TreeNode.valid_acc`, i.e. `metrics["valid_acc"]`); test accuracy never enters it.

Candidates are the root (always; it may always be expanded) and trained nodes. Failed, invalid,
pending and duplicate nodes are never returned (a duplicate shares its original's result and the
original is the node to grow); they still count as children of their parent, since each one used
up an attempt to expand it.

- `dfs`: NADER's depth-first walk over improving children (see `dfs`).
- `greedy`: the best trained node that still has room for children.
- `ucb`: UCB1 over the trained nodes and the root, on normalised subtree-mean validation accuracy.

`select(tree, name, rng, **options)` looks a policy up in `POLICIES`; options meant for other
policies (one Hydra `search` group serves all of them) are ignored, unknown ones are an error.
The built-in policies are deterministic and do not draw from `rng`; it is part of the signature so
that stochastic policies fit the same registry and runs stay reproducible per seed.
"""
from __future__ import annotations

import inspect
import math
import random
from typing import Callable

from .tree import ModificationTree, TreeNode

__all__ = ["SearchError", "UnknownPolicyError", "Policy", "POLICIES", "select", "with_in_flight", "dfs", "greedy", "ucb",
           "candidates", "DEFAULT_MAX_CHILDREN", "DEFAULT_UCB_C"]

DEFAULT_MAX_CHILDREN = 3
DEFAULT_UCB_C = 0.5

Policy = Callable[..., TreeNode]


class SearchError(ValueError):
    """Selection is impossible (an empty tree) or was asked for something that does not exist."""


class UnknownPolicyError(SearchError):
    """A policy name that is not in POLICIES; the message lists the valid names."""

    def __init__(self, name: object, valid: list[str]):
        self.name, self.valid = name, valid
        super().__init__(f"unknown search policy {name!r}; valid policies: {', '.join(valid)}")


# ---------------------------------------------------------------- helpers

def _selectable(n: TreeNode) -> bool:
    """The root, or a trained node with a validation accuracy."""
    return n.is_root or (n.status == "trained" and n.valid_acc is not None)


def candidates(tree: ModificationTree) -> list[TreeNode]:
    """Nodes any policy may return, in id order."""
    return [n for n in tree.nodes if _selectable(n)]


def _root(tree: ModificationTree) -> TreeNode:
    if len(tree) == 0:
        raise SearchError("the tree is empty: add the root before selecting")
    return tree.get(0)


def _check_max_children(max_children: int | None) -> None:
    if max_children is not None and (not isinstance(max_children, int) or max_children < 1):
        raise SearchError(f"max_children must be a positive integer, got {max_children!r}")


def _acc_key(n: TreeNode) -> tuple[float, int]:
    """Sort key: higher validation accuracy first, then lower id (missing accuracy last)."""
    v = n.valid_acc
    return (-v if v is not None else math.inf, n.id)


# ---------------------------------------------------------------- policies

def dfs(tree: ModificationTree, rng: random.Random | None = None, *,
        max_children: int = DEFAULT_MAX_CHILDREN) -> TreeNode:
    """NADER's depth-first walk over improving children.

    Our reading of NADER's policy: a modification is worth building on only when it improved on
    its parent, so the search goes deep along improvements and starts again from the root when a
    line of improvements is exhausted. Concretely, starting at the root:

    1. At the current node, take its *improving* children: trained children whose validation
       accuracy is higher than the current node's (any trained child with an accuracy, when the
       current node has none), best first (ties: lower id).
    2. Walk into the best one. If it has not been expanded yet (no children of any status), select
       it: the first unexpanded node on the walk. Otherwise repeat from step 1 at that child.
    3. A node with no improving children (or whose improving children are all exhausted) is
       selected itself while it has fewer than `max_children` children (of any status: failed,
       invalid and duplicate attempts count, so a node that keeps failing is not retried forever).
    4. A full node is exhausted: the walk backtracks to the next-best improving child of its parent
       (that is what "best first" buys over always taking the single best path), and when the whole
       walk finds nothing, it falls back to the root, which may always be expanded.

    Duplicates are never improving children (they repeat an existing node); failed, invalid and
    pending children are never walked into.
    """
    _check_max_children(max_children)
    root = _root(tree)

    def improving(node: TreeNode) -> list[TreeNode]:
        base = node.valid_acc
        kids = [c for c in tree.children(node.id)
                if c.status == "trained" and c.valid_acc is not None and (base is None or c.valid_acc > base)]
        return sorted(kids, key=_acc_key)

    def visit(node: TreeNode) -> TreeNode | None:
        for child in improving(node):
            if not tree.children(child.id):
                return child  # the first unexpanded node
            found = visit(child)
            if found is not None:
                return found
        if node.is_root or len(tree.children(node.id)) < max_children:
            return node
        return None  # exhausted: backtrack

    return visit(root) or root


def greedy(tree: ModificationTree, rng: random.Random | None = None, *,
           max_children: int = DEFAULT_MAX_CHILDREN) -> TreeNode:
    """The trained node (or the root) with the highest validation accuracy among those with fewer
    than `max_children` children; ties go to the lower id. Falls back to the root when every
    candidate is full."""
    _check_max_children(max_children)
    root = _root(tree)
    open_ = [n for n in candidates(tree) if len(tree.children(n.id)) < max_children]
    return min(open_, key=_acc_key) if open_ else root


def ucb(tree: ModificationTree, rng: random.Random | None = None, *, c: float = DEFAULT_UCB_C,
        max_children: int | None = None) -> TreeNode:
    """UCB1 over the trained nodes and the root.

    score(n) = value(n) + c * sqrt(ln N / (1 + visits(n)))

    - value(n): mean validation accuracy of the trained nodes in n's subtree (n included), min-max
      normalised to [0, 1] over every trained validation accuracy in the tree (0.5 when they are all
      equal; 0 for a root with no trained node below it);
    - visits(n): n's children of any status (each is one expansion of n);
    - N: the number of nodes in the tree (the root plus one per trial).

    The highest score wins; ties go to the lower id. With `max_children`, full non-root nodes are
    left out.
    """
    if not isinstance(c, (int, float)) or isinstance(c, bool) or not math.isfinite(c) or c < 0:
        raise SearchError(f"c must be a finite number >= 0, got {c!r}")
    _check_max_children(max_children)
    root = _root(tree)
    accs = {n.id: n.valid_acc for n in tree.nodes if n.status == "trained" and n.valid_acc is not None}
    if not accs:
        return root
    lo, hi = min(accs.values()), max(accs.values())
    log_n = math.log(len(tree))

    nodes = tree.nodes
    total = [accs.get(n.id, 0.0) for n in nodes]  # subtree sums and counts, children before parents
    count = [1 if n.id in accs else 0 for n in nodes]
    for n in reversed(nodes):  # a child's id is always larger than its parent's
        if n.parent is not None:
            total[n.parent] += total[n.id]
            count[n.parent] += count[n.id]

    def value(n: TreeNode) -> float:
        if not count[n.id]:
            return 0.0
        mean = total[n.id] / count[n.id]
        return 0.5 if hi == lo else min(1.0, max(0.0, (mean - lo) / (hi - lo)))

    best, best_score = root, -math.inf
    for n in candidates(tree):
        visits = len(tree.children(n.id))
        if max_children is not None and not n.is_root and visits >= max_children:
            continue
        score = value(n) + c * math.sqrt(log_n / (1 + visits))
        if score > best_score:  # strict: an equal score keeps the lower id
            best, best_score = n, score
    return best


POLICIES: dict[str, Policy] = {"dfs": dfs, "greedy": greedy, "ucb": ucb}


def with_in_flight(tree: ModificationTree, parents: list[int]) -> ModificationTree:
    """The tree as a policy should see it while trials run side by side: a copy with one `pending`
    child per trial in flight under the node it started from. Every policy counts children of any
    status, so the next selection knows those expansions are taken (K trials do not all expand the
    same node unless the policy would choose it anyway). The tree itself is not changed."""
    if not parents:
        return tree
    view = tree.fork()
    for p in parents:
        view.add(p, tree.get(p).block, status="pending")
    return view


def _options(fn: Policy) -> set[str]:
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


def select(tree: ModificationTree, policy: str, rng: random.Random | None = None, **options) -> TreeNode:
    """The node the next trial starts from, by the named policy.

    Options the policy does not take but another registered policy does (`c` for `dfs`) are
    ignored; options no policy takes raise SearchError. The result is never a failed, invalid,
    pending or duplicate node (a duplicate is replaced by its original).
    """
    fn = POLICIES.get(policy) if isinstance(policy, str) else None
    if fn is None:
        raise UnknownPolicyError(policy, sorted(POLICIES))
    known = set().union(*(_options(f) for f in POLICIES.values()))
    unknown = set(options) - known
    if unknown:
        raise SearchError(f"unknown search option(s) {', '.join(sorted(unknown))}; "
                          f"options: {', '.join(sorted(known))}")
    mine = _options(fn)
    node = fn(tree, rng if rng is not None else random.Random(0), **{k: v for k, v in options.items() if k in mine})
    if node.status == "duplicate" and node.duplicate_of is not None:
        node = tree.get(node.duplicate_of)
    if not _selectable(node):
        raise SearchError(f"policy {policy!r} chose node {node.id} with status {node.status}; "
                          "only trained nodes and the root can be expanded")
    return node
