"""A sweep's summary: one row per job of a Hydra multirun, in `summary.csv`, `summary.md` and
`index.html` (each row linked to the job's report.html) in the sweep directory. Written at the end of every multirun (the `SweepSummary` callback in
conf/config.yaml) and on demand: `python -m agents.sweep SWEEP_DIR`.

A job is a folder of the sweep directory with Hydra's `.hydra/overrides.yaml`; a job that has not
finished (no summary.json) is a row with status `incomplete`, so a summary of a sweep still running,
or of one that crashed, shows what is there.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback

from graphs.atomic import atomic_write

__all__ = ["COLUMNS", "job_rows", "write_summary", "SweepSummary", "main"]

COLUMNS = ["job", "overrides", "status", "best_valid_acc", "best_test_acc", "trials", "by_status", "tokens",
           "usd", "wall_s", "run_dir"]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _job_row(job_dir: Path, sweep_dir: Path) -> dict:
    try:
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        overrides = []
    summary = _read_json(job_dir / "summary.json")
    usage = _read_json(job_dir / "usage.json")
    statuses = summary.get("statuses") or {}
    return {"job": str(job_dir.relative_to(sweep_dir)), "overrides": " ".join(map(str, overrides)),
            "status": ("stopped early" if summary.get("stopped") else "done") if summary else "incomplete",
            "best_valid_acc": summary.get("best_valid_acc"), "best_test_acc": summary.get("best_test_acc"),
            "trials": summary.get("trials"), "by_status": ", ".join(f"{v} {k}" for k, v in sorted(statuses.items())),
            "tokens": summary.get("tokens", usage.get("tokens")), "usd": summary.get("usd", usage.get("usd")),
            "wall_s": usage.get("elapsed_s"), "run_dir": str(job_dir)}


def _job_key(job_dir: Path, sweep_dir: Path) -> tuple:
    parts = job_dir.relative_to(sweep_dir).parts
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def job_rows(sweep_dir: Path) -> list[dict]:
    """One row per job folder under `sweep_dir`, in job-number order."""
    sweep_dir = Path(sweep_dir)
    jobs = [p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")]
    return [_job_row(j, sweep_dir) for j in sorted(jobs, key=lambda j: _job_key(j, sweep_dir))]


_DIGITS = {"best_valid_acc": 2, "best_test_acc": 2, "usd": 4, "wall_s": 1}


def _fmt(col: str, v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{_DIGITS.get(col, 4)}f}"
    return str(v)


def _markdown(rows: list[dict], sweep_dir: Path) -> str:
    """The table shows each job's own overrides; those every job shares are named once above it."""
    per_job = [r["overrides"].split() for r in rows]
    common = [o for o in per_job[0] if all(o in p for p in per_job)] if per_job else []
    best = max((r for r in rows if r["best_valid_acc"] is not None), key=lambda r: r["best_valid_acc"], default=None)
    head = [f"# Sweep {sweep_dir}", "", f"{len(rows)} jobs; "
            + (f"best validation accuracy {best['best_valid_acc']:.2f}% in job {best['job']}" if best
               else "no job has a trained node yet"), ""]
    if common:
        head += [f"Every job: `{' '.join(common)}`", ""]
    cols = [c for c in COLUMNS if c != "run_dir"]
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r, mine in zip(rows, per_job):
        cells = {**r, "overrides": " ".join(o for o in mine if o not in common)}
        table.append("| " + " | ".join(_fmt(c, cells[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(head + table) + "\n"


def write_summary(sweep_dir: Path) -> list[dict]:
    """Write summary.csv and summary.md in `sweep_dir`; returns the rows."""
    sweep_dir = Path(sweep_dir)
    rows = job_rows(sweep_dir)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows({c: ("" if r[c] is None else r[c]) for c in COLUMNS} for r in rows)
    atomic_write(sweep_dir / "summary.csv", buf.getvalue())
    atomic_write(sweep_dir / "summary.md", _markdown(rows, sweep_dir))
    atomic_write(sweep_dir / "index.html", _index(rows, sweep_dir))
    return rows


def _index(rows: list[dict], sweep_dir: Path) -> str:
    """index.html: the summary table with a link to each job's report.html (when it has one)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("agents", "templates"), autoescape=select_autoescape(["html", "j2"]))
    cols = [c for c in COLUMNS if c not in ("run_dir", "job")]
    shown = [{**{c: _fmt(c, r[c]) for c in cols}, "job": r["job"],
              "report": f"{r['job']}/report.html" if (Path(r["run_dir"]) / "report.html").is_file() else None}
             for r in rows]
    return env.get_template("sweep_index.html.j2").render(sweep_dir=str(sweep_dir), rows=shown, cols=cols)


class SweepSummary(Callback):
    """Hydra callback: the sweep summary at the end of every multirun."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            rows = write_summary(sweep_dir)
            print(f"sweep summary ({len(rows)} jobs): {sweep_dir / 'summary.md'}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.sweep",
                                 description="Write summary.csv and summary.md of a Hydra multirun's directory.")
    ap.add_argument("sweep_dir", type=Path)
    a = ap.parse_args(argv)
    if not a.sweep_dir.is_dir():
        print(f"error: {a.sweep_dir} is not a folder (give a sweep directory, e.g. multirun/DATE/TIME)", file=sys.stderr)
        return 2
    rows = write_summary(a.sweep_dir)
    if not rows:
        print(f"error: no job folders (with .hydra/overrides.yaml) under {a.sweep_dir}", file=sys.stderr)
        return 2
    print((a.sweep_dir / "summary.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
