"""Search quality: how good a designer is inside the NAS-Bench-201 cell space, measured without
training (the NB201 table answers every candidate).

    python bench/search_quality.py                        # offline team, random, rea; CIFAR-10/100; 20 seeds; 100 trials
    python bench/search_quality.py --designers team --llm openai --llm-cache ~/nb201-cache --seeds 5 --trials 25
    python bench/search_quality.py --designers team,team+screen,random,random+screen --datasets cifar100
    python bench/search_quality.py --blind --permute-ops  # also with neutral op names, and on a permuted table

A designer written NAME+screen is NAME with proxy screening (`screen.k=--screen-k
screen.proxy=--screen-proxy`): each trial designs k candidates and only the best by the proxy is
looked up, so a curve still counts one evaluated design per trial. No other proxy is computed
(`proxies.names=[]`): unscreened runs score nothing.

Every run is the product's own loop (main.py's config, `space=nb201 macro=nb201
evaluator.name=nb201_table designer=D dataset=DS seed=S`), so designers differ only in the designer.
Every designer runs in every variant with the same seeds: "as is" (the table as it is; --no-asis
drops it), "blind" (--blind: `space.blind=true`, the team sees the ops under neutral names) and
"permuted K" (--permute-ops K: a copy of the table whose row for arch A holds the numbers of the
original row for pi(A), pi the K-th permutation of the three ops that are nodes of a cell; a
designer's op prior now misleads). `none` and skip_connect stay: they are no node of the block (no
edge, a plain wire), so renaming them would change which arch strings are the same network, and the
evaluator (which answers a cell with the mean over its isomorphism class) could not give every
network one number; renaming nodes keeps the classes, and the run checks that every cell's answer
is its image's in the original table.

Per trial the curve holds the test accuracy of the best-by-validation candidate so far (the root
included). Writes bench/results/search_quality.{csv,md,png}: per-trial rows (with the variant), and
per variant three Markdown tables: at 10/25/50/100 trials the mean ± sd and a bootstrap 95% CI of
the mean over seeds, with how many distinct trajectories the seeds gave; per designer pair the
difference of means with a bootstrap 95% CI and a Mann-Whitney U p-value; the regret against the
variant's table's best-by-validation cell (the oracle) and the fraction of runs that found it. The
plot has the mean curves with bootstrap 95% bands, one panel per variant and dataset. Also prints
the loop's non-training overhead per trial and the prompt and completion tokens per trial, at trial
10 and at the last trial (from each run's timeline.jsonl).
Needs the `bench` extra for the plot: pip install -e '.[bench]'.
Runs use the hashing embedder for memory (`memory.embedder=hashing`: no model to load in each
worker); `--set memory.embedder=minilm` measures with the default embedder.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from graphs.nb201 import NB201_OPS, dataset_columns, format_arch, parse_arch  # noqa: E402

DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"
CHECKPOINTS = (10, 25, 50, 100)
AS_IS = "as is"


# The ops that are nodes of a cell's block: renaming them keeps every isomorphism class (none and
# skip_connect are no node: no edge and a plain wire).
NODE_OPS = ("avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")


def derangements() -> list[dict[str, str]]:
    """The permutations of NODE_OPS other than the identity (op -> its image; the others stay), in
    itertools.permutations order: --permute-ops K is the K-th (from 1)."""
    return [dict(zip(NODE_OPS, p)) for p in itertools.permutations(NODE_OPS) if p != NODE_OPS]


# The default of a bare --permute-ops: the 3x3 conv and the 3x3 pool trade places, so the best op by
# general knowledge has the worst numbers and "more 3x3 convs" misleads the most.
SWAP = {"avg_pool_3x3": "nor_conv_3x3", "nor_conv_1x1": "nor_conv_1x1", "nor_conv_3x3": "avg_pool_3x3"}
SWAP_K = derangements().index(SWAP) + 1


def image(arch: str, pi: dict[str, str]) -> str:
    """pi applied to every edge's op of an arch string (none stays none)."""
    return format_arch({e: pi.get(op, op) for e, op in parse_arch(arch).items()})


def write_permuted_table(src: Path, k: int, dest: Path) -> dict[str, str]:
    """A copy of the table whose row for arch A holds the original row of pi(A): the same numbers
    under other names. Returns pi."""
    pi = derangements()[k - 1]
    with open(src, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        rows = {r["arch"].strip(): r for r in reader}
    missing = sum(1 for a in rows if image(a, pi) not in rows)
    if missing:
        raise ValueError(f"{src}: {missing} arch(s) whose permuted image is not in the table; "
                         "--permute-ops needs the full table")
    with open(dest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for arch in rows:
            w.writerow({**rows[image(arch, pi)], "arch": arch})
    return pi


@dataclass(frozen=True)
class Variant:
    name: str  # "as is", "blind", "permuted K"
    table: str
    overrides: tuple[str, ...] = ()
    pi: tuple[tuple[str, str], ...] = ()  # the permutation of a permuted variant


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
    variant: str = AS_IS

    @property
    def name(self) -> str:
        # "as is" keeps the old names, so caches recorded before variants existed still replay
        base = f"{self.designer}-{self.dataset}-s{self.seed}"
        return base if self.variant == AS_IS else f"{self.variant.replace(' ', '')}-{base}"

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
    """One run of the loop in this process; its per-trial curve, trajectory and timeline."""
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
            "counts": trial_counts(tree), "trajectory": trajectory(tree)}


def best_curve(tree, trials: int) -> list[tuple[float, float, str | None]]:
    """(valid, test, hash) of the best-by-validation trained candidate among the root and trials
    1..t, for t = 1..trials (the last value is carried when a run stopped early)."""
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
        out.append((best.valid_acc, best.test_acc, best.hash) if best is not None
                   else (float("nan"), float("nan"), None))
    return out


def trajectory(tree) -> tuple:
    """What the run evaluated, in order: (trial, canonical hash) of every looked-up candidate
    (screened-out ones, repeats and invalid drafts were never evaluated). Two seeds that give the
    same tuple are one sample, not two."""
    looked_up = sorted((n for n in tree.nodes if n.trial and n.status in ("trained", "failed")),
                       key=lambda n: (n.trial, n.id))
    return tuple((n.trial, n.hash or n.block) for n in looked_up)


def trial_counts(tree) -> dict:
    """Distinct candidates (evaluated, screened out or not, but never a repeat) among all candidates
    (with screening a trial has several), and out-of-space ones."""
    trials = [n for n in tree.nodes if n.trial]
    repeats = sum(1 for n in trials if n.status == "duplicate" or (n.reason or "").startswith("repeat of node"))
    outside = sum(1 for n in trials if (n.reason or "") == "not in table"
                  or any(e.code == "out_of_space" for e in n.errors))
    return {"trials": len(trials), "distinct": len(trials) - repeats, "out_of_space": outside,
            "statuses": {s: sum(1 for n in trials if n.status == s) for s in sorted({n.status for n in trials})}}


# ------------------------------------------------------------------ the oracle and the permutation check

@lru_cache(maxsize=None)
def load_table(path: str):
    """One load per table: the original serves its variants' oracles and the permutation check."""
    from graphs.nb201 import Nb201Table

    return Nb201Table.load(path)


def class_entries(table) -> list[dict]:
    """Every cell (isomorphism class) of a table as the evaluator gets it: Nb201Table.lookup, the
    means over the class's arch strings."""
    return [table.lookup(table.block(members[0])) for members in table.all_classes()]


def oracle(entries: list[dict], dataset: str) -> dict:
    """The best-by-validation cell in the evaluator's terms, so that a run that found it has
    regret 0; `ties` counts the cells with the same validation accuracy."""
    val, test = dataset_columns(dataset)
    best = max(entries, key=lambda e: e[val])
    return {"hash": best["hash"], "valid": best[val], "test": best[test], "arch": best["members"][0],
            "ties": sum(1 for e in entries if e[val] == best[val])}


def permutation_check(original, permuted_entries: list[dict], pi: dict[str, str]) -> tuple[int, int, float]:
    """Per cell of the permuted table: does the evaluator's answer equal the original's for pi of the
    cell? Row by row it does by construction, and so class by class as long as pi keeps the
    isomorphism classes (it renames node ops only). Returns (equal cells, cells, largest difference
    in points)."""
    same, worst = 0, 0.0
    for e in permuted_entries:
        o = original.lookup(original.block(image(e["members"][0], pi)))
        diff = max(abs(e[c] - o[c]) for c in original.columns)
        same += diff < 1e-9
        worst = max(worst, diff)
    return same, len(permuted_entries), worst


def oracles(variants: list[Variant], datasets: list[str], source: str) -> dict[tuple[str, str], dict]:
    """(variant, dataset) -> oracle, each table loaded once; prints the permutation check."""
    entries: dict[str, list[dict]] = {}
    out = {}
    for v in variants:
        if v.table not in entries:
            entries[v.table] = class_entries(load_table(v.table))
        for ds in datasets:
            out[(v.name, ds)] = o = oracle(entries[v.table], ds)
            tie = f" ({o['ties']} cells tie on validation; this one is the table's first)" if o["ties"] > 1 else ""
            print(f"oracle {v.name} {ds}: {o['arch']} valid {o['valid']:.2f} test {o['test']:.2f}{tie}")
        if v.pi:
            same, total, worst = permutation_check(load_table(source), entries[v.table], dict(v.pi))
            print(f"{v.name}: the evaluator's answer for a cell equals the original's for its image in {same} of "
                  f"{total} cells (largest difference {worst:.2f} points)")
    return out


# ------------------------------------------------------------------ statistics

def bootstrap_ci(values, rng, reps: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return float(arr.mean()), float(arr.mean())
    means = arr[rng.integers(0, len(arr), size=(reps, len(arr)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def bootstrap_diff_ci(a, b, rng, reps: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap interval of mean(a) - mean(b), the seeds of each group resampled
    independently (the groups are separate runs, not pairs)."""
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = (a[rng.integers(0, len(a), size=(reps, len(a)))].mean(axis=1)
             - b[rng.integers(0, len(b), size=(reps, len(b)))].mean(axis=1))
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def u_pvalue(a, b) -> float:
    """Two-sided Mann-Whitney U p-value: no normality assumed for accuracies near a ceiling."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def checkpoints(trials: int) -> list[int]:
    return [c for c in CHECKPOINTS if c <= trials] or [trials]


def group(results: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """(variant, designer, dataset) -> its runs, ordered by seed."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in sorted(results, key=lambda r: r["job"].seed):
        out.setdefault((r["job"].variant, r["job"].designer, r["job"].dataset), []).append(r)
    return out


def tests_at(rs: list[dict], c: int) -> list[float]:
    return [r["curve"][c - 1][1] for r in rs]


def quality_table(groups: dict, marks: list[int], rng) -> list[str]:
    """Mean ± sd [bootstrap CI] of the best-by-validation test accuracy per checkpoint."""
    rows = ["| designer | dataset | seeds | " + " | ".join(f"test @ {c} trials" for c in marks) +
            " | distinct trajectories | distinct / candidates | out of space |", "|" + "---|" * (6 + len(marks))]
    for (designer, dataset), rs in groups.items():
        cells = []
        for c in marks:
            col = tests_at(rs, c)
            lo, hi = bootstrap_ci(col, rng)
            sd = statistics.stdev(col) if len(col) > 1 else 0.0
            cells.append(f"{statistics.fmean(col):.2f} ± {sd:.2f} [{lo:.2f}, {hi:.2f}]")
        paths = len({r["trajectory"] for r in rs})
        distinct = sum(r["counts"]["distinct"] for r in rs)
        total = sum(r["counts"]["trials"] for r in rs)
        outside = sum(r["counts"]["out_of_space"] for r in rs)
        rows.append(f"| {designer} | {dataset} | {len(rs)} | " + " | ".join(cells) +
                    f" | {paths} of {len(rs)} | {distinct} / {total} | {outside} |")
    return rows


def pairs_table(groups: dict, designers: list[str], datasets: list[str], marks: list[int], rng) -> list[str]:
    """Per designer pair, dataset and checkpoint: mean test accuracy of A minus B."""
    rows = ["| dataset | trials | A - B | diff [95% CI] | U p |", "|---|---|---|---|---|"]
    for dataset in datasets:
        for c in marks:
            for a, b in itertools.combinations(designers, 2):
                ta, tb = tests_at(groups[(a, dataset)], c), tests_at(groups[(b, dataset)], c)
                lo, hi = bootstrap_diff_ci(ta, tb, rng)
                diff = statistics.fmean(ta) - statistics.fmean(tb)
                rows.append(f"| {dataset} | {c} | {a} - {b} | {diff:+.2f} [{lo:+.2f}, {hi:+.2f}] "
                            f"| {u_pvalue(ta, tb):.3g} |")
    return rows


def regret_table(groups: dict, variant: str, marks: list[int], oracle_of: dict, rng) -> list[str]:
    """Regret (oracle test minus the run's best-by-validation test) and how many runs have the oracle
    cell as their best by validation (the hash and the validation accuracy: a canonical hash alone
    may be shared by two cells, which the table tells apart by isomorphism)."""
    rows = ["| designer | dataset | trials | regret [95% CI] | found the oracle |", "|---|---|---|---|---|"]
    for (designer, dataset), rs in groups.items():
        o = oracle_of[(variant, dataset)]
        for c in marks:
            regrets = [o["test"] - t for t in tests_at(rs, c)]
            found = sum(1 for r in rs if r["curve"][c - 1][2] == o["hash"] and r["curve"][c - 1][0] == o["valid"])
            lo, hi = bootstrap_ci(regrets, rng)
            rows.append(f"| {designer} | {dataset} | {c} | {statistics.fmean(regrets):.2f} [{lo:.2f}, {hi:.2f}] "
                        f"| {found} of {len(rs)} |")
    return rows


def summarize(results: list[dict], variants: list[Variant], designers: list[str], datasets: list[str],
              trials: int, oracle_of: dict) -> tuple[list[str], dict]:
    """The Markdown blocks (one per variant: quality, pairs, regret) and, per (variant, designer,
    dataset), the mean curve with its band."""
    import numpy as np

    groups = group(results)
    marks = checkpoints(trials)
    lines, curves = [], {}
    for v in variants:
        rng = np.random.default_rng(0)  # per variant: a variant's figures do not depend on which others ran
        mine = {(d, ds): groups[(v.name, d, ds)] for d in designers for ds in datasets}
        renamed = "".join(f", {a} -> {b}" for a, b in v.pi)
        best = "; ".join(f"{ds}: {oracle_of[(v.name, ds)]['arch']}, test {oracle_of[(v.name, ds)]['test']:.2f}"
                         for ds in datasets)
        lines += [f"## {v.name} (table {Path(v.table).name}{renamed})", "", *quality_table(mine, marks, rng), "",
                  "Difference of mean test accuracy, bootstrap 95% CI over seeds, two-sided Mann-Whitney U:", "",
                  *pairs_table(mine, designers, datasets, marks, rng), "",
                  f"Regret against the oracle ({best}):", "", *regret_table(mine, v.name, marks, oracle_of, rng), ""]
        for key, rs in mine.items():
            tests = np.array([[t for _, t, _ in r["curve"]] for r in rs])
            band = [bootstrap_ci(tests[:, i], rng, reps=500) for i in range(tests.shape[1])]
            curves[(v.name, *key)] = (tests.mean(axis=0), band)
    return lines, curves


def overhead_lines(results: list[dict], trials: int) -> list[str]:
    """Non-training overhead (loop time minus evaluation time) and tokens per trial, per variant and
    designer, around trial 10 (trials 6-10) and at the end (the last five trials)."""
    early = range(max(2, min(10, trials) - 4), min(10, trials) + 1)
    late = range(max(2, trials - 4), trials + 1)
    lines = []
    for variant, designer in sorted({(r["job"].variant, r["job"].designer) for r in results}):
        rs = [r for r in results if (r["job"].variant, r["job"].designer) == (variant, designer)]

        def mean(key, window):
            vals = [(e["seconds"] - e["eval_seconds"]) if key == "overhead" else e[key]
                    for r in rs for e in r["timeline"] if e["trial"] in window]
            return statistics.fmean(vals) if vals else float("nan")

        a, b = mean("overhead", early), mean("overhead", late)
        lines.append(f"{variant} / {designer}: overhead per trial {a:.3f} s at trials {early.start}-{early.stop - 1}, "
                     f"{b:.3f} s at trials {late.start}-{late.stop - 1} ({b / a if a else float('nan'):.2f}x); "
                     f"prompt tokens per trial {mean('prompt_tokens', early):,.0f} -> {mean('prompt_tokens', late):,.0f}, "
                     f"completion {mean('completion_tokens', early):,.0f} -> {mean('completion_tokens', late):,.0f}")
    return lines


def write_csv(results: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant", "designer", "dataset", "seed", "trial", "best_valid", "best_test"])
        for r in sorted(results, key=lambda r: (r["job"].variant, r["job"].designer, r["job"].dataset, r["job"].seed)):
            for t, (v, te, _) in enumerate(r["curve"], 1):
                w.writerow([r["job"].variant, r["job"].designer, r["job"].dataset, r["job"].seed, t,
                            f"{v:.4f}", f"{te:.4f}"])


def plot(curves: dict, path: Path, trials: int) -> bool:
    """One panel per variant (rows) and dataset (columns)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is missing; install the bench extra: pip install -e '.[bench]'", file=sys.stderr)
        return False
    variants = list(dict.fromkeys(v for v, _, _ in curves))
    datasets = sorted({d for _, _, d in curves})
    fig, axes = plt.subplots(len(variants), len(datasets), figsize=(6 * len(datasets), 4.2 * len(variants)),
                             squeeze=False)
    xs = list(range(1, trials + 1))
    for row, variant in zip(axes, variants):
        for ax, dataset in zip(row, datasets):
            for (v, designer, ds), (mean, band) in curves.items():
                if (v, ds) != (variant, dataset):
                    continue
                ax.plot(xs, mean, label=designer)
                ax.fill_between(xs, [lo for lo, _ in band], [hi for _, hi in band], alpha=0.2)
            ax.set_title(f"NB201 {dataset}, {variant}: best-by-validation candidate")
            ax.set_xlabel("trials")
            ax.set_ylabel("test accuracy (%)")
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def variants_of(args, scratch: Path, ap) -> list[Variant]:
    """The selected variants; a permuted one writes its table into the scratch folder."""
    table = str(Path(args.table).resolve())
    out = [] if args.no_asis else [Variant(AS_IS, table)]
    if args.blind:
        out.append(Variant("blind", table, ("space.blind=true",)))
    if args.permute_ops is not None:
        k = args.permute_ops
        dest = scratch / f"nb201_permuted{k}.csv"
        try:
            pi = write_permuted_table(Path(table), k, dest)
        except ValueError as e:
            ap.error(f"--permute-ops: {e}")
        print(f"permuted {k}: arch A is scored with the numbers of the original A under " +
              ", ".join(f"{a} -> {b}" for a, b in pi.items()) + " (none stays none)")
        out.append(Variant(f"permuted {k}", str(dest), (), tuple(pi.items())))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--designers", default="team,random,rea")
    ap.add_argument("--datasets", default="cifar10,cifar100")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--table", default=str(DEFAULT_TABLE), help="the NB201 CSV (README: The NB201 table)")
    ap.add_argument("--no-asis", action="store_true", help="skip the variant on the table as it is")
    ap.add_argument("--blind", action="store_true",
                    help="add the variant 'blind': space.blind=true, the team sees the ops under neutral names")
    ap.add_argument("--permute-ops", nargs="?", type=int, const=SWAP_K, default=None, metavar="K",
                    help="add the variant 'permuted K': a copy of the table whose row for arch A holds the numbers "
                         "of the original pi(A), pi the K-th (1-5) permutation other than the identity of "
                         "avg_pool_3x3, nor_conv_1x1, nor_conv_3x3 in itertools.permutations order (none and "
                         f"skip_connect stay); without K, K={SWAP_K}: nor_conv_3x3 <-> avg_pool_3x3")
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
    if args.permute_ops is not None and not 1 <= args.permute_ops <= len(derangements()):
        ap.error(f"--permute-ops {args.permute_ops}: K is 1 to {len(derangements())}")
    if args.no_asis and not (args.blind or args.permute_ops is not None):
        ap.error("--no-asis leaves no variant: add --blind or --permute-ops")
    designers, datasets = args.designers.split(","), args.datasets.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="search_quality-"))
    scratch.mkdir(parents=True, exist_ok=True)
    variants = variants_of(args, scratch, ap)
    oracle_of = oracles(variants, datasets, str(Path(args.table).resolve()))
    jobs = [Job(d, ds, s, args.trials, v.table, args.llm, args.llm_cache, v.overrides + tuple(args.set), "",
                args.screen_k, args.screen_proxy, v.name)
            for v in variants for d in designers for ds in datasets for s in range(args.seeds)]
    jobs = [replace(j, run_dir=str(scratch / j.name)) for j in jobs]  # the name says variant, designer, seed
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
    lines, curves = summarize(results, variants, designers, datasets, args.trials, oracle_of)
    write_csv(results, out / "search_quality.csv")
    (out / "search_quality.md").write_text("\n".join(lines) + "\n")
    drew = plot(curves, out / "search_quality.png", args.trials)
    print("\n".join(lines))
    for line in overhead_lines(results, args.trials):
        print(line)
    print(f"total {time.perf_counter() - started:.0f} s for {len(jobs) * args.trials} trials; wrote "
          f"{out / 'search_quality.csv'}, {out / 'search_quality.md'}" + (f", {out / 'search_quality.png'}" if drew else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
