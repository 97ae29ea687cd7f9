"""A test helper: the same block written with new node ids and lines in another order."""
from __future__ import annotations

import random

from graphs.ir import Block, format_op


def relabel(block: Block, rng: random.Random) -> str:
    """The block's text with new node ids, shuffled node lines and edge lines interleaved at random
    (each node's inputs keep their order)."""
    ids = [n.id for n in block.nodes]
    new = dict(zip(ids, rng.sample(range(0, 1000), len(ids))))
    lines = [f"{new[n.id]}:{format_op(n)}" for n in block.nodes]
    rng.shuffle(lines)
    queues = {}
    for a, b in block.edges:
        queues.setdefault(b, []).append(a)
    edges = []
    while queues:
        b = rng.choice(sorted(queues))
        edges.append(f"{new[queues[b].pop(0)]}->{new[b]}")
        if not queues[b]:
            del queues[b]
    body = lines + edges
    if rng.random() < 0.5:
        rng.shuffle(body)  # node and edge lines may mix, as long as each node's inputs keep their order
        order = iter(edges)
        body = [next(order) if "->" in line else line for line in body]
    return f"##Renamed{rng.randrange(100)}##\n" + "\n".join(body) + "\n"
