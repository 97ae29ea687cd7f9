"""Tree inspection for the Proposer: a node's block, metrics and what its children tried."""
from __future__ import annotations

from pydantic import BaseModel, Field

from graphs.tree import ModificationTree

from .base import ToolResult, TypedTool


class TreeQuery(BaseModel):
    node_id: int = Field(description="id of the tree node to inspect (0 is the root)")


class TreeInfo(ToolResult):
    node_id: int | None = None
    parent: int | None = None
    status: str | None = None
    valid_acc: float | None = None
    params: int | None = None
    flops: int | None = None
    block: str | None = None
    children: str | None = None


def inspect_tree_tool(tree: ModificationTree, sizes: bool = True) -> TypedTool:
    """`sizes`: show params and FLOPs (a blind space hides them: they tell its ops apart)."""

    def run(q: TreeQuery) -> TreeInfo:
        if q.node_id not in tree:
            return TreeInfo(ok=False, error=f"no node {q.node_id}; the tree has ids 0..{len(tree) - 1}")
        n = tree.get(q.node_id)
        # Test accuracy is never shown to the designers: selection and design use validation only.
        return TreeInfo(node_id=n.id, parent=n.parent, status=n.status, valid_acc=n.valid_acc,
                        params=n.params if sizes else None, flops=n.flops if sizes else None, block=n.block,
                        children=tree.children_summary(n.id) or "none yet")

    return TypedTool("inspect_tree", "Show a modification-tree node: block, validation accuracy, children's attempts.",
                     TreeQuery, TreeInfo, run)
