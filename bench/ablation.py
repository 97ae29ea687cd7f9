"""Ablations of the team (designer=team), as in the paper: each variant switches one part off.

    python bench/ablation.py          # 4 variants; nb201 (cifar100) 5 seeds x 25 trials, digits 2 seeds x 4 trials
    python bench/ablation.py --settings nb201 --seeds 10 --nb201-trials 50
    python bench/ablation.py --llm openai --llm-cache ~/ablation-cache --digits-seeds 3

Variants (config overrides of designer=team, conf/designer/team.yaml):
  full       every part on
  no-reader  designer.knowledge=false   no knowledge retrieval (the Proposer has no search_knowledge)
  no-lif     designer.feedback=false    no validator feedback: the Modifier has no validator and the
                                        Reflector judges the first submission as it stands (one round)
  no-lde     designer.experience=false  no experience retrieval (no search_experience for anyone)

Settings, each the product's own loop (main.py's config), run in-process like
bench/search_quality.py's run_job:
  nb201   the NAS-Bench-201 cell space answered by the table, no training (`space=nb201 macro=nb201
          evaluator.name=nb201_table evaluator.out_of_space=skip`, dataset --nb201-datasets)
  digits  the open space on scikit-learn's digits with real training (`dataset=digits trainer=smoke`:
          8 epochs on a 2,000-image subset, a CPU profile, not the paper's protocol)
Both add `memory.embedder=hashing export=false progress=false proxies.names=[]`; digits runs also get
`launcher.threads=cores/--jobs` so parallel runs do not oversubscribe the cores (--set overrides it).

Columns, per (setting, dataset, variant): the mean over seeds of a per-run figure, with a bootstrap
95% CI of that mean [lo, hi]. A run's trials are 1..T; each trial's node is the one its line in
timeline.jsonl names (its final node), read back from tree.json.
  tokens/design   prompt + completion tokens of the whole run (usage.json "total") / T
  exec %          trials whose node is not status "invalid" (the loop's own validation after the
                  team approved or gave up; a repeat of an earlier candidate and a design over the
                  budget are "invalid" too; "failed" is a model or training error and counts as executable)
  1st valid %     trials whose first validate_block result in trials/NNNN/transcript.jsonl (the first
                  such tool result without is_error, whoever called it: the Modifier checking its first
                  draft, or under no-lif the Reflector reviewing the first submission) says valid;
                  the validator's repeat and out-of-space checks count, so a repeat is not valid;
                  trials with no such result count as not valid
  best test       test accuracy of the best-by-validation trained design among the root and trials
                  1..T (search_quality.best_curve at T)
  mean valid      mean validation accuracy of the trials' trained designs (status "trained")
  success %       trials whose node is "trained" with validation accuracy above its parent's; a
                  trial without a trained design (invalid, duplicate, failed) is no success
  statuses        the trials' node statuses summed over seeds, repeats among the invalid in parentheses
  distinct runs   seeds whose runs evaluated different design sequences (search_quality.trajectory):
                  fewer than the seeds means the CI is over repeats of one sample
Writes ablation.csv (one row per run) and ablation.md (the table) to --out; prints the table and the
total wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "bench")) if p not in sys.path]

import search_quality as sq  # noqa: E402 - needs the paths above

VARIANTS = {"full": (), "no-reader": ("designer.knowledge=false",), "no-lif": ("designer.feedback=false",),
            "no-lde": ("designer.experience=false",)}
SETTINGS = ("nb201", "digits")
COMMON = ("designer=team", "memory.embedder=hashing", "export=false", "progress=false", "proxies.names=[]")
COLUMNS = (("tokens_per_design", "tokens/design", "{:,.0f}"), ("exec_pct", "exec %", "{:.1f}"),
           ("first_valid_pct", "1st valid %", "{:.1f}"), ("best_test", "best test", "{:.2f}"),
           ("mean_valid", "mean valid", "{:.2f}"), ("success_pct", "success %", "{:.1f}"))
STATUSES = ("trained", "duplicate", "invalid", "failed", "screened")


@dataclass(frozen=True)
class AblationJob:
    """One run; quacks like search_quality.Job for its run_job (overrides(), run_dir, trials)."""
    setting: str
    variant: str
    dataset: str
    seed: int
    trials: int
    table: str
    llm: str
    cache: str | None
    extra: tuple[str, ...]
    run_dir: str
    threads: int

    @property
    def name(self) -> str:
        return f"{self.setting}-{self.dataset}-{self.variant}-s{self.seed}"

    def overrides(self) -> list[str]:
        if self.setting == "nb201":
            where = ["space=nb201", "macro=nb201", "evaluator.name=nb201_table", f"evaluator.table={self.table}",
                     "evaluator.out_of_space=skip"]
        else:
            where = ["trainer=smoke", f"launcher.threads={self.threads}"]
        out = [*COMMON, *where, f"dataset={self.dataset}", f"seed={self.seed}", f"trials={self.trials}",
               f"llm={self.llm}", *VARIANTS[self.variant]]
        if self.cache:  # one cache per run, as search_quality does: a rerun replays exactly its own answers
            out.append(f"llm.cache={Path(self.cache) / self.name}")
        return out + list(self.extra)


def measure(job: AblationJob) -> dict:
    """Runs the job (in this worker process) and reduces its directory to the per-run figures."""
    r = sq.run_job(job)
    figures = run_figures(Path(job.run_dir), job.trials, r["curve"], r["timeline"])
    # The trajectory (what was evaluated, in order) tells seeds that ran the same search apart.
    return {"job": job, "wall_s": r["wall_s"], "trajectory": r["trajectory"], **figures}


def run_figures(run_dir: Path, trials: int, curve: list, timeline: list[dict]) -> dict:
    from graphs.tree import ModificationTree

    tree = ModificationTree.load(run_dir / "tree.json")
    nodes = [tree.get(e["node"]) for e in sorted(timeline, key=lambda e: e["trial"])]
    usage = json.loads((run_dir / "usage.json").read_text())["total"]
    trained = [n for n in nodes if n.status == "trained" and n.valid_acc is not None]
    wins = [n for n in trained if _beats_parent(tree, n)]
    first = [first_validation(run_dir, e["trial"]) for e in timeline]
    pct = lambda k: 100.0 * k / trials  # noqa: E731 - every rate is over all T trials
    return {"tokens_per_design": (usage["prompt_tokens"] + usage["completion_tokens"]) / trials,
            "exec_pct": pct(sum(n.status != "invalid" for n in nodes)),
            "first_valid_pct": pct(sum(v is True for v in first)),
            "best_test": curve[-1][1],
            "mean_valid": statistics.fmean(n.valid_acc for n in trained) if trained else float("nan"),
            "success_pct": pct(len(wins)),
            "repeats": sum(n.status == "invalid" and (n.reason or "").startswith("repeat of") for n in nodes),
            **{s: sum(n.status == s for n in nodes) for s in STATUSES}}


def _beats_parent(tree, node) -> bool:
    parent = tree.get(node.parent).valid_acc if node.parent is not None else None
    return parent is not None and node.valid_acc > parent


def first_validation(run_dir: Path, trial: int) -> bool | None:
    """`valid` of the trial's first validate_block tool result; None when there is none. Results
    with is_error (no-lif's Modifier calling a validator it does not have) are no validation."""
    path = run_dir / "trials" / f"{trial:04d}" / "transcript.jsonl"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        event = json.loads(line) if line.strip() else {}
        if event.get("type") != "ToolCallExecutionEvent" or not isinstance(event.get("content"), list):
            continue
        for res in event["content"]:
            body = res.get("content")
            if res.get("result") == "validate_block" and not res.get("is_error") and isinstance(body, dict):
                return bool(body.get("valid"))
    return None


def table(results: list[dict]) -> list[str]:
    """The Markdown rows: one per (setting, dataset, variant), each column mean [bootstrap 95% CI]."""
    import numpy as np

    rng = np.random.default_rng(0)
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        j = r["job"]
        groups.setdefault((SETTINGS.index(j.setting), j.dataset, list(VARIANTS).index(j.variant)), []).append(r)
    rows = ["| setting | variant | seeds x trials | " + " | ".join(h for _, h, _ in COLUMNS) +
            " | trained / dup / invalid (repeats) / failed | distinct runs | wall s/run |",
            "|" + "---|" * (6 + len(COLUMNS))]
    for key in sorted(groups):
        rs = groups[key]
        j = rs[0]["job"]
        cells = []
        for col, _, fmt in COLUMNS:
            vals = [r[col] for r in rs if r[col] == r[col]]  # NaN (no trained design) is left out
            if not vals:
                cells.append("n/a")
                continue
            lo, hi = sq.bootstrap_ci(vals, rng)
            cells.append(f"{fmt.format(statistics.fmean(vals))} [{fmt.format(lo)}, {fmt.format(hi)}]")
        total = lambda k: sum(r[k] for r in rs)  # noqa: E731
        counts = f"{total('trained')} / {total('duplicate')} / {total('invalid')} ({total('repeats')}) / " \
                 f"{total('failed')}"
        wall = statistics.fmean(r["wall_s"] for r in rs)
        distinct = len({r["trajectory"] for r in rs})
        rows.append(f"| {j.setting} {j.dataset} | {j.variant} | {len(rs)} x {j.trials} | " + " | ".join(cells) +
                    f" | {counts} | {distinct} | {wall:.0f} |")
    return rows


def write_csv(results: list[dict], path: Path) -> None:
    import csv

    keys = ["tokens_per_design", "exec_pct", "first_valid_pct", "best_test", "mean_valid", "success_pct",
            *STATUSES, "repeats", "wall_s"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["setting", "dataset", "variant", "seed", "trials", *keys])
        for r in sorted(results, key=lambda r: r["job"].name):
            j = r["job"]
            w.writerow([j.setting, j.dataset, j.variant, j.seed, j.trials,
                        *(f"{r[k]:.4f}" if isinstance(r[k], float) else r[k] for k in keys)])


def make_jobs(args, scratch: Path) -> list[AblationJob]:
    table_path = str(Path(args.table).resolve())
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    plan = {"nb201": (args.nb201_datasets.split(","), args.nb201_seeds or args.seeds or 5, args.nb201_trials),
            "digits": (["digits"], args.digits_seeds or args.seeds or 2, args.digits_trials)}
    jobs = []
    # Digits first: the long runs start early, so the pool does not end on one of them alone.
    for setting in sorted(args.settings.split(","), key=lambda s: s != "digits"):
        datasets, seeds, trials = plan[setting]
        jobs += [AblationJob(setting, v, ds, s, trials, table_path, args.llm, args.llm_cache, tuple(args.set),
                             "", threads) for ds in datasets for v in args.variants.split(",") for s in range(seeds)]
    return [replace(j, run_dir=str(scratch / j.name)) for j in jobs]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--seeds", type=int, default=None, help="seeds per (setting, variant) of both settings")
    ap.add_argument("--nb201-seeds", type=int, default=None, help="default --seeds, else 5")
    ap.add_argument("--digits-seeds", type=int, default=None, help="default --seeds, else 2")
    ap.add_argument("--nb201-trials", type=int, default=25)
    ap.add_argument("--digits-trials", type=int, default=4)
    ap.add_argument("--nb201-datasets", default="cifar100", help="cifar10, cifar100 or both (comma-separated)")
    ap.add_argument("--table", default=str(sq.DEFAULT_TABLE), help="the NB201 CSV (README: The NB201 table)")
    ap.add_argument("--llm", default="offline", help="the team's model: a conf/llm option")
    ap.add_argument("--llm-cache", default=None, help="record the model's answers here (a subfolder per run); "
                                                      "a rerun replays them free")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config override")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for ablation.md and ablation.csv")
    ap.add_argument("--keep-runs", default=None, help="keep each run's directory under this folder")
    args = ap.parse_args(argv)
    bad = [v for v in args.variants.split(",") if v not in VARIANTS] + \
        [s for s in args.settings.split(",") if s not in SETTINGS]
    if bad:
        ap.error(f"unknown variant or setting: {', '.join(bad)} "
                 f"(variants {', '.join(VARIANTS)}; settings {', '.join(SETTINGS)})")
    if "nb201" in args.settings.split(",") and not Path(args.table).is_file():
        ap.error(f"--table {args.table}: no such file (build it: python -m graphs nb201-table RELEASE -o table.csv)")
    if min(args.seeds or 1, args.digits_seeds or 1, args.nb201_seeds or 1, args.nb201_trials, args.digits_trials,
           args.jobs) < 1:
        ap.error("seeds, trials and --jobs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="ablation-"))
    jobs = make_jobs(args, scratch)
    for j in jobs:
        shutil.rmtree(j.run_dir, ignore_errors=True)  # a fresh run each time: a leftover tree would be resumed
    print(f"{len(jobs)} runs ({args.jobs} in parallel)", flush=True)
    started = time.perf_counter()
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for fut in as_completed([pool.submit(measure, j) for j in jobs]):
            r = fut.result()
            results.append(r)
            print(f"  {len(results)}/{len(jobs)} {r['job'].name}: {r['wall_s']:.0f} s "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    if not args.keep_runs:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = table(results)
    note = (f"\nllm={args.llm}; mean over seeds [bootstrap 95% CI of the mean]; nb201: the NB201 table, no "
            "training; digits: open space, trainer=smoke (8 epochs, 2,000 images; a CPU profile). Columns: "
            "bench/ablation.py's docstring.\n")
    write_csv(results, out / "ablation.csv")
    (out / "ablation.md").write_text("\n".join(rows) + "\n" + note)
    print("\n".join(rows))
    print(f"total {time.perf_counter() - started:.0f} s wall for {len(jobs)} runs; wrote {out / 'ablation.csv'}, "
          f"{out / 'ablation.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
