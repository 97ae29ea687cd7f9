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
    """The smaller of two readings: by node id (edits keep the ids of nodes they do not touch), and
    by matching nodes on their operation and their inputs' operations (for blocks rebuilt with new
    ids, e.g. NAS-Bench-201 cells, where ids say nothing)."""
    by_id, by_shape = _diff_by_id(parent, child), _diff_by_shape(parent, child)
    return by_shape if _size(by_shape) < _size(by_id) else by_id


def _size(d: BlockDiff) -> int:
    return (len(d.added_nodes) + len(d.changed_nodes) + len(d.removed_nodes) + len(d.added_edges)
            + len(d.removed_edges))


def _diff_by_shape(parent: Block, child: Block) -> BlockDiff:
    def key(block: Block, nid: int) -> tuple:
        ops = block.node_map
        return format_op(ops[nid]), tuple(sorted(format_op(ops[i]) for i in block.inputs.get(nid, [])))

    match: dict[int, int] = {}  # child id -> parent id
    # First nodes whose operation and inputs' operations agree, then the rest by operation alone.
    for k in (key, lambda block, nid: format_op(block.node_map[nid])):
        free: dict = {}
        for n in sorted(parent.nodes, key=lambda n: n.id):
            if n.id not in match.values():
                free.setdefault(k(parent, n.id), []).append(n.id)
        for n in sorted(child.nodes, key=lambda n: n.id):
            pool = free.get(k(child, n.id)) if n.id not in match else None
            if pool:
                match[n.id] = pool.pop(0)
    p_edges = set(parent.edges)
    seen = {(match[a], match[b]) for a, b in child.edges if a in match and b in match}
    return BlockDiff(added_nodes=frozenset(n.id for n in child.nodes if n.id not in match), changed_nodes=frozenset(),
                     removed_nodes=frozenset(set(parent.node_map) - set(match.values())),
                     added_edges=frozenset((a, b) for a, b in child.edges
                                           if a not in match or b not in match or (match[a], match[b]) not in p_edges),
                     removed_edges=frozenset(p_edges - seen))


def _diff_by_id(parent: Block, child: Block) -> BlockDiff:
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
