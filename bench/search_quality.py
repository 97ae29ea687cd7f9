"""Search quality: how good a designer is inside the NAS-Bench-201 cell space, measured without
training (the NB201 table answers every candidate).

    python bench/search_quality.py                        # offline team, random, rea; CIFAR-10/100; 20 seeds; 100 trials
    python bench/search_quality.py --designers team --llm openai --llm-cache ~/nb201-cache --seeds 5 --trials 25
    python bench/search_quality.py --designers team,team+screen,random,random+screen --datasets cifar100

A designer written NAME+screen is NAME with proxy screening (`screen.k=--screen-k
screen.proxy=--screen-proxy`): each trial designs k candidates and only the best by the proxy is
looked up, so a curve still counts one evaluated design per trial. No other proxy is computed
(`proxies.names=[]`): unscreened runs score nothing.

Every run is the product's own loop (main.py's config, `space=nb201 macro=nb201
evaluator.name=nb201_table designer=D dataset=DS seed=S`), so designers differ only in the designer.
Per trial the curve holds the test accuracy of the best-by-validation candidate so far (the root
included). Writes bench/results/search_quality.{csv,md,png}: per-trial rows, a Markdown table at
10/25/50/100 trials (mean ± sd and a bootstrap 95% CI of the mean over seeds) and the mean curves
with bootstrap 95% bands. Also prints the loop's non-training overhead per trial and the prompt and
completion tokens per trial, at trial 10 and at the last trial (from each run's timeline.jsonl).
Needs the `bench` extra for the plot: pip install -e '.[bench]'.
Runs use the hashing embedder for memory (`memory.embedder=hashing`: no model to load in each
worker); `--set memory.embedder=minilm` measures with the default embedder.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"
CHECKPOINTS = (10, 25, 50, 100)


@dataclass(frozen=True)
class Job:
    designer: str
    dataset: str
    seed: int
    trials: int
    table: str
    llm: str
    cache: str | None
    extra: tuple[str, ...]
    run_dir: str
    screen_k: int = 3
    screen_proxy: str = "synflow"

    @property
    def name(self) -> str:
        return f"{self.designer}-{self.dataset}-s{self.seed}"

    def overrides(self) -> list[str]:
        designer, _, variant = self.designer.partition("+")
        out = ["space=nb201", "macro=nb201", "evaluator.name=nb201_table", f"evaluator.table={self.table}",
               "evaluator.out_of_space=skip", f"designer={designer}", f"dataset={self.dataset}",
               f"seed={self.seed}", f"trials={self.trials}", f"llm={self.llm}", "memory.embedder=hashing",
               "export=false", "progress=false", "proxies.names=[]"]
        if variant == "screen":
            out += [f"screen.k={self.screen_k}", f"screen.proxy={self.screen_proxy}"]
        elif variant:
            raise ValueError(f"designer variant {self.designer!r}: the only variant is NAME+screen")
        if self.cache:
            out.append(f"llm.cache={Path(self.cache) / self.name}")
        return out + list(self.extra)


def run_job(job: Job) -> dict:
    """One run of the loop in this process; its per-trial curve and timeline."""
    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from agents.factory import build_run, check_config
    from graphs.tree import ModificationTree

    run_dir = Path(job.run_dir)
    console = Console(file=io.StringIO(), stderr=False)  # the runs' own progress lines are not shown
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=job.overrides())
    started = time.perf_counter()
    check_config(cfg, run_dir, console)
    run = build_run(cfg, run_dir, console, saved_configs=[])
    asyncio.run(run())
    wall = time.perf_counter() - started
    tree = ModificationTree.load(run_dir / "tree.json")
    timeline = [json.loads(line) for line in (run_dir / "timeline.jsonl").read_text().splitlines() if line.strip()]
    return {"job": job, "curve": best_curve(tree, job.trials), "timeline": timeline, "wall_s": wall,
            "counts": trial_counts(tree)}


def best_curve(tree, trials: int) -> list[tuple[float, float]]:
    """(valid, test) of the best-by-validation trained candidate among the root and trials 1..t,
    for t = 1..trials (the last value is carried when a run stopped early)."""
    by_trial: dict[int, list] = {}
    for n in tree.nodes:
        if n.status == "trained" and n.valid_acc is not None:
            by_trial.setdefault(n.trial or 0, []).append(n)
    best = max(by_trial.get(0, []), key=lambda n: n.valid_acc, default=None)
    out = []
    for t in range(1, trials + 1):
        for n in by_trial.get(t, []):
            if best is None or n.valid_acc > best.valid_acc:
                best = n
        out.append((best.valid_acc, best.test_acc) if best is not None else (float("nan"), float("nan")))
    return out


def trial_counts(tree) -> dict:
    """Distinct candidates (evaluated, screened out or not, but never a repeat) among all candidates
    (with screening a trial has several), and out-of-space ones."""
    trials = [n for n in tree.nodes if n.trial]
    repeats = sum(1 for n in trials if n.status == "duplicate" or (n.reason or "").startswith("repeat of node"))
    outside = sum(1 for n in trials if (n.reason or "") == "not in table"
                  or any(e.code == "out_of_space" for e in n.errors))
    return {"trials": len(trials), "distinct": len(trials) - repeats, "out_of_space": outside,
            "statuses": {s: sum(1 for n in trials if n.status == s) for s in sorted({n.status for n in trials})}}


def bootstrap_ci(values: list[float], rng, reps: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return float(arr.mean()), float(arr.mean())
    means = arr[rng.integers(0, len(arr), size=(reps, len(arr)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(results: list[dict], trials: int) -> tuple[list[str], dict]:
    """The Markdown table rows and, per (designer, dataset), the mean curve with its band."""
    import numpy as np

    rng = np.random.default_rng(0)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["job"].designer, r["job"].dataset), []).append(r)
    marks = [c for c in CHECKPOINTS if c <= trials] or [trials]
    head = "| designer | dataset | seeds | " + " | ".join(f"test @ {c} trials" for c in marks) + \
           " | distinct / candidates | out of space |"
    rows = [head, "|" + "---|" * (5 + len(marks))]
    curves = {}
    for (designer, dataset), rs in sorted(groups.items()):
        tests = np.array([[t for _, t in r["curve"]] for r in rs])
        cells = []
        for c in marks:
            col = tests[:, c - 1]
            lo, hi = bootstrap_ci(list(col), rng)
            sd = statistics.stdev(col) if len(col) > 1 else 0.0
            cells.append(f"{col.mean():.2f} ± {sd:.2f} [{lo:.2f}, {hi:.2f}]")
        distinct = sum(r["counts"]["distinct"] for r in rs)
        total = sum(r["counts"]["trials"] for r in rs)
        outside = sum(r["counts"]["out_of_space"] for r in rs)
        rows.append(f"| {designer} | {dataset} | {len(rs)} | " + " | ".join(cells) + f" | {distinct} / {total} | {outside} |")
        band = [bootstrap_ci(list(tests[:, i]), rng, reps=500) for i in range(tests.shape[1])]
        curves[(designer, dataset)] = (tests.mean(axis=0), band)
    return rows, curves


def overhead_lines(results: list[dict], trials: int) -> list[str]:
    """Non-training overhead (loop time minus evaluation time) and tokens per trial, per designer,
    around trial 10 (trials 6-10) and at the end (the last five trials)."""
    early = range(max(2, min(10, trials) - 4), min(10, trials) + 1)
    late = range(max(2, trials - 4), trials + 1)
    lines = []
    for designer in sorted({r["job"].designer for r in results}):
        rs = [r for r in results if r["job"].designer == designer]

        def mean(key, window):
            vals = [(e["seconds"] - e["eval_seconds"]) if key == "overhead" else e[key]
                    for r in rs for e in r["timeline"] if e["trial"] in window]
            return statistics.fmean(vals) if vals else float("nan")

        a, b = mean("overhead", early), mean("overhead", late)
        lines.append(f"{designer}: overhead per trial {a:.3f} s at trials {early.start}-{early.stop - 1}, "
                     f"{b:.3f} s at trials {late.start}-{late.stop - 1} ({b / a if a else float('nan'):.2f}x); "
                     f"prompt tokens per trial {mean('prompt_tokens', early):,.0f} -> {mean('prompt_tokens', late):,.0f}, "
                     f"completion {mean('completion_tokens', early):,.0f} -> {mean('completion_tokens', late):,.0f}")
    return lines


def write_csv(results: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["designer", "dataset", "seed", "trial", "best_valid", "best_test"])
        for r in sorted(results, key=lambda r: (r["job"].designer, r["job"].dataset, r["job"].seed)):
            for t, (v, te) in enumerate(r["curve"], 1):
                w.writerow([r["job"].designer, r["job"].dataset, r["job"].seed, t, f"{v:.4f}", f"{te:.4f}"])


def plot(curves: dict, path: Path, trials: int) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is missing; install the bench extra: pip install -e '.[bench]'", file=sys.stderr)
        return False
    datasets = sorted({d for _, d in curves})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    xs = list(range(1, trials + 1))
    for ax, dataset in zip(axes[0], datasets):
        for (designer, ds), (mean, band) in sorted(curves.items()):
            if ds != dataset:
                continue
            ax.plot(xs, mean, label=designer)
            ax.fill_between(xs, [lo for lo, _ in band], [hi for _, hi in band], alpha=0.2)
        ax.set_title(f"NB201 {dataset}: best-by-validation candidate")
        ax.set_xlabel("trials")
        ax.set_ylabel("test accuracy (%)")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--designers", default="team,random,rea")
    ap.add_argument("--datasets", default="cifar10,cifar100")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--table", default=str(DEFAULT_TABLE), help="the NB201 CSV (README: The NB201 table)")
    ap.add_argument("--llm", default="offline", help="the team's model: a conf/llm option")
    ap.add_argument("--llm-cache", default=None, help="record the model's answers here; a rerun replays them free")
    ap.add_argument("--screen-k", type=int, default=3, help="designs per trial of a NAME+screen designer")
    ap.add_argument("--screen-proxy", default="synflow", help="the proxy of a NAME+screen designer")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config override")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel (processes)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the csv, md and png")
    ap.add_argument("--keep-runs", default=None, help="keep each run's directory under this folder")
    args = ap.parse_args(argv)
    if not Path(args.table).is_file():
        ap.error(f"--table {args.table}: no such file (build it: python -m graphs nb201-table RELEASE -o table.csv)")
    if args.seeds < 1 or args.trials < 1 or args.jobs < 1:
        ap.error("--seeds, --trials and --jobs must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="search_quality-"))
    jobs = [Job(d, ds, s, args.trials, str(Path(args.table).resolve()), args.llm, args.llm_cache, tuple(args.set),
                str(scratch / f"{d}-{ds}-s{s}"), args.screen_k, args.screen_proxy)
            for d in args.designers.split(",") for ds in args.datasets.split(",") for s in range(args.seeds)]
    for j in jobs:
        if Path(j.run_dir).exists():
            shutil.rmtree(j.run_dir)  # a fresh run each time: a leftover tree would be resumed
    print(f"{len(jobs)} runs of {args.trials} trials ({args.jobs} in parallel)", flush=True)
    started = time.perf_counter()
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i, r in enumerate(pool.map(run_job, jobs), 1):
            results.append(r)
            if i % max(1, len(jobs) // 10) == 0 or i == len(jobs):
                print(f"  {i}/{len(jobs)} runs done ({time.perf_counter() - started:.0f} s)", flush=True)
    if not args.keep_runs:
        shutil.rmtree(scratch, ignore_errors=True)
    rows, curves = summarize(results, args.trials)
    write_csv(results, out / "search_quality.csv")
    (out / "search_quality.md").write_text("\n".join(rows) + "\n")
    drew = plot(curves, out / "search_quality.png", args.trials)
    print("\n".join(rows))
    for line in overhead_lines(results, args.trials):
        print(line)
    print(f"total {time.perf_counter() - started:.0f} s for {len(jobs) * args.trials} trials; wrote "
          f"{out / 'search_quality.csv'}, {out / 'search_quality.md'}" + (f", {out / 'search_quality.png'}" if drew else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
