"""`python -m agents.inspect RUN_DIR [--trial N] [--role R] [--tools]`: a run in the terminal.

Prints the modification tree (a rich Tree: each node's status, accuracies, size and the strategy
or inspiration of its edit) and, with --trial, that trial's transcript: messages by role, tool calls
and results only with --tools, one role only with --role.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.tree import Tree

from graphs.tree import ModificationTree, TreeNode

from .report import edge_label

__all__ = ["tree_view", "transcript_lines", "main"]

TOOL_TYPES = ("ToolCallRequestEvent", "ToolCallExecutionEvent", "ToolCallSummaryMessage")


def _label(n: TreeNode) -> str:
    acc = f" valid {n.valid_acc:.2f}% test {n.test_acc:.2f}%" if n.valid_acc is not None and n.test_acc is not None else ""
    size = f" {n.params:,} params" if n.params else ""
    how = f" [dim]{escape(edge_label(n))}[/]" if n.parent is not None and edge_label(n) else ""
    colour = {"trained": "green", "failed": "red", "invalid": "red", "duplicate": "yellow", "screened": "cyan"}.get(
        n.status, "white")
    trial = "root" if n.parent is None else f"trial {n.trial}"
    why = f" [dim]({escape((n.reason or '')[:80])})[/]" if n.reason and n.status != "trained" else ""
    return f"[bold]#{n.id}[/] {trial} [{colour}]{n.status}[/]{acc}{size}{how}{why}"


def tree_view(tree: ModificationTree) -> Tree:
    """The modification tree as a rich Tree, children in id order."""
    def grow(branch: Tree, node: TreeNode) -> None:
        for child in tree.children(node.id):
            grow(branch.add(_label(child)), child)

    root = Tree(_label(tree.get(0)))
    grow(root, tree.get(0))
    return root


def transcript_lines(records: list[dict], role: str | None = None, tools: bool = False) -> list[dict]:
    """The records to show: one role's (case-insensitive) or all; tool events only when asked."""
    out = []
    for r in records:
        if role and r.get("role", "").lower() != role.lower():
            continue
        if not tools and r.get("type") in TOOL_TYPES:
            continue
        out.append(r)
    return out


def main(argv: list[str] | None = None, console: Console | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.inspect", description=__doc__.split("\n\n")[1])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--trial", type=int, help="print this trial's transcript")
    ap.add_argument("--role", help="only this role's messages (Proposer, Modifier, Reflector, trial, ...)")
    ap.add_argument("--tools", action="store_true", help="include tool calls and their results")
    a = ap.parse_args(argv)
    console = console or Console()
    if not (a.run_dir / "tree.json").is_file():
        console.print(f"error: {a.run_dir} has no tree.json (give a run directory)", style="red", markup=False)
        return 2
    tree = ModificationTree.load(a.run_dir / "tree.json")
    console.print(tree_view(tree))
    if a.trial is None:
        return 0
    path = a.run_dir / "trials" / f"{a.trial:04d}" / "transcript.jsonl"
    if not path.is_file():
        known = sorted(int(p.parent.name) for p in (a.run_dir / "trials").glob("[0-9]*/transcript.jsonl"))
        console.print(f"error: trial {a.trial} has no transcript; trials with one: {known}", style="red", markup=False)
        return 2
    records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    shown = transcript_lines(records, a.role, a.tools)
    console.print(f"trial {a.trial}: {len(shown)} of {len(records)} records" + (f" (role {a.role})" if a.role else ""))
    for r in shown:
        content = r.get("content")
        text = content if isinstance(content, str) else json.dumps(content, indent=1)
        tokens = r.get("prompt_tokens", 0) + r.get("completion_tokens", 0)
        title = f"{r.get('role')} · {r.get('type')}" + (f" · {tokens} tokens" if tokens else "")
        console.print(Panel(escape(text), title=escape(title), title_align="left", expand=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
