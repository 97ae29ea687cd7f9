"""`report.html`: a run directory as one self-contained page (no network): the modification tree,
accuracy and cost charts, each node's block drawn with its difference from the parent, each trial's
transcript (filterable by role), usage by role and model, the config and why the run stopped.

Written after every trial and at the end of a run; `python -m agents.report RUN_DIR` writes it again
for any run directory, older runs included. Built from the run's files only (tree.json,
trials/*/transcript.jsonl, usage.json, summary.json, config.yaml), with a Jinja template
(agents/templates/report.html.j2), matplotlib for the charts and networkx for the layouts.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from graphs.atomic import atomic_write
from graphs.drawing import block_diff, layered_layout
from graphs.ir import format_op, parse_block
from graphs.tree import ModificationTree, TreeNode

__all__ = ["RunFiles", "read_run", "render_report", "write_report", "main"]

TEMPLATE = "report.html.j2"
STATUS_MARK = {"trained": "", "failed": "✗", "invalid": "!", "duplicate": "=", "screened": "s", "pending": "…"}


@dataclass
class RunFiles:
    run_dir: Path
    tree: ModificationTree
    transcripts: dict[int, list[dict]] = field(default_factory=dict)
    usage: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    config: str = ""


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_run(run_dir: Path) -> RunFiles:
    """The run's files; a missing transcript, usage or summary is left empty (an old or unfinished
    run). A run directory without tree.json is an error."""
    run_dir = Path(run_dir)
    if not (run_dir / "tree.json").is_file():
        raise FileNotFoundError(f"{run_dir} has no tree.json: give a run directory (outputs/DATE/TIME)")
    tree = ModificationTree.load(run_dir / "tree.json")
    transcripts: dict[int, list[dict]] = {}
    for path in sorted((run_dir / "trials").glob("*/transcript.jsonl")):
        try:
            transcripts[int(path.parent.name)] = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        except (OSError, ValueError):
            continue
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    return RunFiles(run_dir, tree, transcripts, _json(run_dir / "usage.json"), _json(run_dir / "summary.json"), config)


# ------------------------------------------------------------------ pieces of the page

def _strategy(node: TreeNode) -> str:
    m = re.search(r"STRATEGY:\s*([^\n]+)", node.proposal or "")
    return (m.group(1).strip() if m else "")[:60]


def edge_label(node: TreeNode) -> str:
    return (node.inspiration or _strategy(node) or "")[:40]


def _color(value: float | None, lo: float, hi: float) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if value is None:
        return "#bbbbbb"
    t = 0.5 if hi <= lo else (value - lo) / (hi - lo)
    return to_hex(colormaps["viridis"](0.15 + 0.8 * t))


def tree_drawing(tree: ModificationTree) -> dict:
    """Positions (px) of every node and edge of the tree, the root on top (networkx bfs layout)."""
    g = nx.DiGraph()
    g.add_nodes_from(n.id for n in tree.nodes)
    g.add_edges_from((n.parent, n.id) for n in tree.nodes if n.parent is not None)
    pos = nx.bfs_layout(g.to_undirected(), 0, align="horizontal") if len(g) > 1 else {0: (0.0, 0.0)}
    ys = sorted({float(p[1]) for p in pos.values()})
    depth = {y: i for i, y in enumerate(ys)}
    per_row: dict[float, list[int]] = {}
    for nid, (_, y) in pos.items():
        per_row.setdefault(float(y), []).append(nid)
    width = max(len(v) for v in per_row.values()) * 70 + 60
    at: dict[int, tuple[float, float]] = {}
    for y, ids in per_row.items():
        ids.sort(key=lambda i: float(pos[i][0]))
        step = (width - 60) / max(1, len(ids))
        for k, nid in enumerate(ids):
            at[nid] = (30 + step * (k + 0.5), 40 + depth[y] * 90)
    accs = [n.valid_acc for n in tree.nodes if n.valid_acc is not None]
    lo, hi = (min(accs), max(accs)) if accs else (0.0, 1.0)
    nodes = [{"id": n.id, "x": at[n.id][0], "y": at[n.id][1], "status": n.status, "mark": STATUS_MARK.get(n.status, "?"),
              "color": _color(n.valid_acc if n.status == "trained" else None, lo, hi),
              "title": f"node {n.id} ({n.status})" + (f": valid {n.valid_acc:.2f}%" if n.valid_acc is not None else "")}
             for n in tree.nodes]
    edges = [{"x1": at[n.parent][0], "y1": at[n.parent][1], "x2": at[n.id][0], "y2": at[n.id][1],
              "label": edge_label(n)} for n in tree.nodes if n.parent is not None]
    return {"nodes": nodes, "edges": edges, "width": width, "height": 80 + (len(ys) - 1) * 90}


def block_drawing(node: TreeNode, parent: TreeNode | None) -> dict:
    """A node's block, laid out top to bottom, with what its edit added or changed (and removed,
    listed) against the parent's block."""
    try:
        block = parse_block(node.block)
    except Exception as exc:  # noqa: BLE001 - a block the tree kept but cannot be read is shown as text
        return {"error": f"{type(exc).__name__}: {exc}", "text": node.block}
    diff = None
    if parent is not None:
        try:
            diff = block_diff(parse_block(parent.block), block)
        except Exception:  # noqa: BLE001
            diff = None
    pos = layered_layout(block)
    rows: dict[float, int] = {}
    for _, y in pos.values():
        rows[y] = rows.get(y, 0) + 1
    w, h = max(320, 140 * max(rows.values(), default=1) + 40), max(160, 60 * len(rows) + 40)
    at = {i: (80 + x * (w - 160), 25 + y * (h - 50)) for i, (x, y) in pos.items()}
    nodes = [{"id": n.id, "x": at[n.id][0], "y": at[n.id][1], "label": _short_op(n), "op": format_op(n),
              "cls": "added" if diff and n.id in diff.added_nodes else ("changed" if diff and n.id in diff.changed_nodes
                                                                          else "")} for n in block.nodes]
    edges = [{"x1": at[a][0], "y1": at[a][1], "x2": at[b][0], "y2": at[b][1],
              "cls": "added" if diff and (a, b) in diff.added_edges else ""} for a, b in block.edges]
    return {"nodes": nodes, "edges": edges, "width": w, "height": h, "text": node.block,
            "diff": diff.summary() if diff else "the root: no parent",
            "removed": sorted(diff.removed_nodes) if diff else [],
            "removed_edges": sorted(diff.removed_edges) if diff else []}


def _short_op(node) -> str:
    """The op with its parameters abbreviated (kernel_size=3 -> k=3), out_channels left out: fits a box."""
    short = {"kernel_size": "k", "stride": "s", "dilation": "d", "groups": "g", "padding": "p"}
    from graphs.expr import show_value

    params = [f"{short.get(k, k)}={show_value(v)}" for k, v in node.params if k != "out_channels"]
    text = node.op + (f"({','.join(params)})" if params else "")
    return text if len(text) <= 22 else text[:21] + "…"


def _svg(fig) -> str:
    from matplotlib import rc_context

    buf = io.StringIO()
    # A fixed salt for the SVG's element ids (random otherwise). No metadata: no date (the page is the same for the same run) and no namespace URLs.
    with rc_context({"svg.hashsalt": "report"}):
        fig.savefig(buf, format="svg", bbox_inches="tight",
                    metadata={k: None for k in ("Creator", "Date", "Format", "Type")})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # inline: no XML prologue


def charts(run: RunFiles) -> dict[str, str]:
    """Accuracy against trial (root level, best so far) and params/FLOPs against accuracy (budget
    drawn), as inline SVG (matplotlib's object API: no global pyplot state)."""
    from matplotlib.figure import Figure

    tree = run.tree
    trained = [n for n in tree.nodes if n.status == "trained" and n.valid_acc is not None]
    root = tree.get(0) if len(tree) else None
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    pts = sorted((n.trial or 0, n.valid_acc, n.test_acc) for n in trained)
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, label="validation")
        ax.scatter([p[0] for p in pts if p[2] is not None], [p[2] for p in pts if p[2] is not None], s=12,
                   marker="x", label="test")
        best, line = -1e9, []
        for t, v, _ in pts:
            best = max(best, v)
            line.append((t, best))
        ax.step([p[0] for p in line], [p[1] for p in line], where="post", color="k", lw=1, label="best so far")
    if root is not None and root.valid_acc is not None:
        ax.axhline(root.valid_acc, ls="--", color="grey", lw=1, label="root")
    ax.set_xlabel("trial")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7, loc="lower right")
    out = {"accuracy": _svg(fig)}
    fig = Figure(figsize=(7, 3.0))
    budget = _budget(run)
    for k, (attr, label) in enumerate((("params", "params"), ("flops", "FLOPs (MACs)"))):
        ax = fig.add_subplot(1, 2, k + 1)
        xs = [(getattr(n, attr), n.valid_acc) for n in trained if getattr(n, attr)]
        ax.scatter([x for x, _ in xs], [y for _, y in xs], s=14)
        if budget.get(attr):
            ax.axvline(budget[attr], color="r", ls="--", lw=1, label="budget")
            ax.legend(fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy (%)" if k == 0 else "")
    fig.tight_layout()
    out["cost"] = _svg(fig)
    return out


def _budget(run: RunFiles) -> dict:
    import yaml

    try:
        cfg = yaml.safe_load(run.config) or {}
        from graphs.cost import default_budget

        b = default_budget(cfg["macro"]["name"])
        mp, mf = cfg.get("budget", {}).get("max_params"), cfg.get("budget", {}).get("max_flops")
        return {"params": mp or b.max_params, "flops": mf or b.max_flops}
    except Exception:  # noqa: BLE001 - an old run without a config: no budget line
        return {}


def blind_legend(run: RunFiles) -> str:
    """For a run in a blind space, both names of each op ("op_a = nor_conv_3x3, ..."); else ""."""
    import yaml

    try:
        cfg = yaml.safe_load(run.config) or {}
    except yaml.YAMLError:
        return ""
    if not (cfg.get("space") or {}).get("blind"):
        return ""
    from graphs.blind import BlindView

    return BlindView.for_seed(int(cfg.get("seed", 0))).legend()


def usage_table(usage: dict) -> list[dict]:
    """Calls, tokens and dollars by role and model, from the ledger's calls."""
    rows: dict[tuple[str, str], dict] = {}
    for c in usage.get("calls", []):
        r = rows.setdefault((c.get("role", "?"), c.get("model", "?")),
                            {"role": c.get("role", "?"), "model": c.get("model", "?"), "calls": 0, "tokens": 0, "usd": 0.0})
        r["calls"] += 1
        r["tokens"] += int(c.get("prompt_tokens", 0)) + int(c.get("completion_tokens", 0))
        r["usd"] += float(c.get("usd", 0.0))
    return sorted(rows.values(), key=lambda r: (r["role"], r["model"]))


def _message(rec: dict) -> dict:
    content = rec.get("content")
    folded = rec.get("type") in ("ToolCallRequestEvent", "ToolCallExecutionEvent", "ToolCallSummaryMessage")
    text = content if isinstance(content, str) else json.dumps(content, indent=1)
    return {"role": rec.get("role", "?"), "type": rec.get("type", ""), "text": text, "folded": folded,
            "tokens": int(rec.get("prompt_tokens", 0)) + int(rec.get("completion_tokens", 0)),
            "model": rec.get("model", ""), "time": rec.get("time", "")}


def render_report(run: RunFiles) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("agents", "templates"), autoescape=select_autoescape(["html", "j2"]))
    tree = run.tree
    details = []
    for n in tree.nodes:
        parent = tree.get(n.parent) if n.parent is not None else None
        details.append({"node": n, "parent": n.parent, "block": block_drawing(n, parent), "strategy": _strategy(n),
                        "metrics": {k: n.metrics.get(k) for k in ("valid_acc", "test_acc", "wall_time_s") if n.metrics}})
    roles = sorted({r.get("role", "?") for recs in run.transcripts.values() for r in recs})
    transcripts = {t: [_message(r) for r in recs] for t, recs in run.transcripts.items()}
    stopped = run.summary.get("stopped") or run.usage.get("stopped")
    return env.get_template(TEMPLATE).render(
        run_dir=str(run.run_dir), tree=tree_drawing(tree), details=details, transcripts=transcripts, roles=roles,
        charts=charts(run), usage=usage_table(run.usage), total=run.usage.get("total", {}), summary=run.summary,
        stopped=stopped or ("the run finished" if run.summary else "the run has not finished"), config=run.config,
        blind=blind_legend(run), statuses=sorted({n.status for n in tree.nodes}))


def write_report(run_dir: Path) -> Path:
    """Write run_dir/report.html (atomically: a reader never sees half a page)."""
    out = Path(run_dir) / "report.html"
    atomic_write(out, render_report(read_run(run_dir)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.report", description="Write RUN_DIR/report.html again.")
    ap.add_argument("run_dir", type=Path)
    a = ap.parse_args(argv)
    try:
        out = write_report(a.run_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
