"""What a report needs to draw a block: its DAG laid out top to bottom, and its difference from
the block it was edited from. Pure functions over `Block` (networkx does the layout)."""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from .ir import Block, format_op

__all__ = ["BlockDiff", "block_diff", "layered_layout"]


@dataclass(frozen=True)
class BlockDiff:
    """Node ids and edges of the child that are new or changed, and of the parent that are gone.
    Edits keep the ids of the nodes they do not touch, so ids are compared as they are."""

    added_nodes: frozenset[int]
    changed_nodes: frozenset[int]  # same id, another operation
    removed_nodes: frozenset[int]
    added_edges: frozenset[tuple[int, int]]
    removed_edges: frozenset[tuple[int, int]]

    @property
    def empty(self) -> bool:
        return not (self.added_nodes or self.changed_nodes or self.removed_nodes or self.added_edges
                    or self.removed_edges)

    def summary(self) -> str:
        parts = [(len(self.added_nodes), "node(s) added"), (len(self.changed_nodes), "changed"),
                 (len(self.removed_nodes), "removed"), (len(self.added_edges), "edge(s) added"),
                 (len(self.removed_edges), "edge(s) removed")]
        return ", ".join(f"{n} {what}" for n, what in parts if n) or "no change"


def block_diff(parent: Block, child: Block) -> BlockDiff:
    p_ops = {n.id: format_op(n) for n in parent.nodes}
    c_ops = {n.id: format_op(n) for n in child.nodes}
    p_edges, c_edges = set(parent.edges), set(child.edges)
    return BlockDiff(added_nodes=frozenset(c_ops.keys() - p_ops.keys()),
                     changed_nodes=frozenset(i for i in c_ops.keys() & p_ops.keys() if c_ops[i] != p_ops[i]),
                     removed_nodes=frozenset(p_ops.keys() - c_ops.keys()),
                     added_edges=frozenset(c_edges - p_edges), removed_edges=frozenset(p_edges - c_edges))


def layered_layout(block: Block) -> dict[int, tuple[float, float]]:
    """Node id -> (x, y) in [0, 1]: one row per topological generation, the input on top; a block
    with a cycle (an invalid one) falls back to a spring layout, seeded."""
    g = nx.MultiDiGraph()
    g.add_nodes_from(n.id for n in block.nodes)
    g.add_edges_from(block.edges)
    try:
        rows = list(nx.topological_generations(g))
    except nx.NetworkXUnfeasible:
        pos = nx.spring_layout(g, seed=0)
        return _unit({k: (float(x), float(y)) for k, (x, y) in pos.items()})
    for depth, row in enumerate(rows):
        for node in row:
            g.nodes[node]["layer"] = depth
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal")
    return _unit({k: (float(x), float(y)) for k, (x, y) in pos.items()})  # layer 0 first: the top in SVG


def _unit(pos: dict[int, tuple[float, float]]) -> dict[int, tuple[float, float]]:
    if not pos:
        return {}
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    w, h = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    return {k: (0.5 if max(xs) == min(xs) else (x - min(xs)) / w, 0.5 if max(ys) == min(ys) else (y - min(ys)) / h)
            for k, (x, y) in pos.items()}
