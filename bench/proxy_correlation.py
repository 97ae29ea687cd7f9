"""Proxy audit (issue 12 item 4): how well each training-free proxy of training/proxies.py ranks
NAS-Bench-201 cells, against the table's 200-epoch test accuracy.

    python bench/proxy_correlation.py                       # 500 cells, every dataset of the table
    python bench/proxy_correlation.py --cells 60 --data-root ~/.cache/nader/data --out cells.csv

Samples `--cells` arch strings of the table (seeded), builds each on the NB201 skeleton
(graphs.compile.build_model, macro nb201) for each dataset's input size and classes, with weights
initialised from a per-cell seed, computes every proxy on one minibatch, and prints per proxy and
dataset Spearman rho and Kendall tau against the table's test accuracy, each with a percentile
bootstrap 95% CI, beside the published rho where there is one. Data-dependent proxies use a real
minibatch of the dataset when `--data-root` holds it (training/datasets.py reads it); otherwise the
scikit-learn digits images resized to the input shape, and the output says so. It also prints the
mean and median seconds per network of each proxy (proxies sharing one pass are timed together).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from graphs.compile import build_model  # noqa: E402
from graphs.nb201 import Nb201Table, TABLE_DATASETS, arch_to_block, dataset_columns  # noqa: E402
from training.proxies import PROXIES, rank_correlations, score  # noqa: E402
from training.screening import minibatch  # noqa: E402

DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"

# Spearman rho over all NB201 cells, CIFAR-10 / CIFAR-100 / ImageNet16-120, as issue 12 quotes them
# (Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS"). That paper's jacob_cov is the
# Jacobian covariance of NASWOT's first version: our `jacov`; our `jacob_cov` is NASWOT's final
# code-kernel score, so both are shown against it.
PUBLISHED_RHO: dict[str, dict[str, float]] = {
    "synflow": {"cifar10": 0.74, "cifar100": 0.76, "imagenet16-120": 0.75},
    "jacob_cov": {"cifar10": 0.73, "cifar100": 0.70, "imagenet16-120": 0.70},
    "jacov": {"cifar10": 0.73, "cifar100": 0.70, "imagenet16-120": 0.70},
    "grad_norm": {"cifar10": 0.59, "cifar100": 0.64, "imagenet16-120": 0.58},
}
TOLERANCE = 0.05


# ------------------------------------------------------------------------------------- data


# ------------------------------------------------------------------------------------- work

# The minibatches, set once per process by the pool initializer (or by main for --jobs 1) so that
# they are not pickled with every job; read-only afterwards.
_WORKER: dict = {}


def _init_worker(batches: dict, threads: int, device: str) -> None:
    torch.set_num_threads(threads)
    _WORKER["batches"] = batches
    _WORKER["device"] = device


def _measure(job: tuple[str, str, int, tuple[str, ...]]) -> tuple[str, str, dict[str, float], dict[str, float], float]:
    """Build one cell for one dataset (weights from the cell's seed) and score it."""
    dataset, arch, cell_seed, names = job
    x, y = _WORKER["batches"][dataset]
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cell_seed)
        net = build_model(arch_to_block(arch), macro="nb201", dataset=dataset)
    net.module.to(_WORKER["device"])  # the proxies move the batch to the model's device
    build_s = time.perf_counter() - start
    timings: dict[str, float] = {}
    scores = score(net, (x, y), names, seed=cell_seed, timings=timings)
    return dataset, arch, scores, timings, build_s


def _verdict(rho: float, published: float | None) -> str:
    if published is None:
        return "-"
    if math.isnan(rho):
        return f"{published:.2f}  n/a"
    diff = rho - published
    return f"{published:.2f}  {diff:+.3f}  {'yes' if abs(diff) <= TOLERANCE else 'NO'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=500, help="NB201 cells sampled (default 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--data-root", default=None, help="folder with the datasets' files (training/datasets.py)")
    ap.add_argument("--batch", type=int, default=64, help="minibatch size (the zero-cost-proxies paper: 64)")
    ap.add_argument("--proxies", default=",".join(PROXIES), help="comma-separated (default: all)")
    ap.add_argument("--datasets", default=None, help="comma-separated subset of the table's datasets")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (1 thread each when > 1)")
    ap.add_argument("--device", default="cpu", help="torch device for the networks (cpu, cuda)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--out", default=None, help="CSV of every cell's scores and accuracy")
    args = ap.parse_args(argv)

    names = tuple(n.strip() for n in args.proxies.split(",") if n.strip())
    for n in names:
        if n not in PROXIES:
            ap.error(f"unknown proxy {n!r}; valid proxies: {', '.join(PROXIES)}")
    t0 = time.perf_counter()
    table = Nb201Table.load(args.table)
    datasets = table.datasets
    if args.datasets:
        wanted = tuple(d.strip() for d in args.datasets.split(","))
        bad = [d for d in wanted if d not in datasets]
        if bad:
            ap.error(f"dataset(s) {', '.join(bad)} not in the table; it has {', '.join(datasets)}")
        datasets = wanted
    archs = sorted(table.rows)
    rng = np.random.default_rng(args.seed)
    n = min(args.cells, len(archs))
    sample = [archs[i] for i in rng.choice(len(archs), size=n, replace=False)]

    from graphs.macro import dataset_shape

    batches, sources = {}, {}
    for d in datasets:
        shape = dataset_shape(d)
        x, y, src = minibatch(d, shape.image_size, args.data_root, args.batch, args.seed)
        if src.startswith("no "):
            src += f" (labels 0-9 of {shape.num_classes} classes): NOT the published setting"
        batches[d], sources[d] = (x, y), src

    threads = 1 if args.jobs > 1 else torch.get_num_threads()
    print(f"proxy_correlation: {n} NB201 cells sampled with seed {args.seed} from {args.table} "
          f"({len(table)} rows; datasets {', '.join(table.datasets)}); batch {args.batch}; "
          f"{args.jobs} process(es) x {threads} torch thread(s) on {args.device}; torch {torch.__version__}")
    missing = [d for d in TABLE_DATASETS if d not in table.datasets]
    if missing:
        print(f"  not in this table (no correlation computed): {', '.join(missing)}")
    for d in datasets:
        print(f"  data for {d}: {sources[d]}")
    print(f"  load + sample + data: {time.perf_counter() - t0:.1f} s", flush=True)

    # each cell gets its own init seed, the same for every dataset
    jobs = [(d, a, args.seed * 1_000_003 + i, names) for d in datasets for i, a in enumerate(sample)]
    results = []
    t1 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, initializer=_init_worker, initargs=(batches, threads, args.device)) as pool:
            for k, r in enumerate(pool.map(_measure, jobs, chunksize=1), 1):
                results.append(r)
                _progress(k, len(jobs), t1)
    else:
        _init_worker(batches, threads, args.device)
        for k, job in enumerate(jobs, 1):
            results.append(_measure(job))
            _progress(k, len(jobs), t1)
    wall = time.perf_counter() - t1

    col = {d: table.columns.index(dataset_columns(d)[1]) for d in datasets}
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["dataset", "arch", "test_acc", *names, "build_s", *(f"t_{g}" for g in results[0][3])])
            for d, a, s, t, b in results:
                w.writerow([d, a, table.rows[a][col[d]], *(repr(s[p]) for p in names), f"{b:.4f}",
                            *(f"{t[g]:.4f}" for g in results[0][3])])

    print(f"\nSpearman rho and Kendall tau against the table's test accuracy ({args.bootstrap} bootstrap "
          f"resamples, 95% CI); published rho, difference, within {TOLERANCE}:")
    print(f"{'dataset':<15}{'proxy':<11}{'n':>5}  {'rho':>6} {'[95% CI]':<16}{'tau':>6} {'[95% CI]':<16}"
          f"published  diff  within")
    if n < 500:
        print(f"  ({n} cells: the published rho is over all 15,625 cells; at this size the CI, not the "
              f"'within' column, says whether a proxy matches it)")
    for d in datasets:
        rows = [r for r in results if r[0] == d]
        acc = [table.rows[a][col[d]] for _, a, _, _, _ in rows]
        for p in names:
            c = rank_correlations([s[p] for _, _, s, _, _ in rows], acc, args.bootstrap, args.seed + 1)
            (rlo, rhi), (tlo, thi) = c["spearman_ci"], c["kendall_ci"]
            print(f"{d:<15}{p:<11}{c['n']:>5}  {c['spearman']:6.3f} [{rlo:6.3f},{rhi:6.3f}] {c['kendall']:6.3f} "
                  f"[{tlo:6.3f},{thi:6.3f}] {_verdict(c['spearman'], PUBLISHED_RHO.get(p, {}).get(d))}")
    print("\nseconds per network (mean / median / max), proxies sharing a pass timed together:")
    groups = list(results[0][3]) + ["build"]
    for d in datasets:
        rows = [r for r in results if r[0] == d]
        parts = []
        for g in groups:
            ts = [b for _, _, _, _, b in rows] if g == "build" else [t[g] for _, _, _, t, _ in rows]
            parts.append(f"{g} {statistics.mean(ts):.2f}/{statistics.median(ts):.2f}/{max(ts):.2f}")
        total = statistics.mean(sum(t.values()) + b for _, _, _, t, b in rows)
        print(f"  {d:<15}" + "; ".join(parts) + f"; all {total:.2f}")
    print(f"\n{len(results)} networks in {wall:.0f} s ({wall / max(len(results), 1):.2f} s each, wall); "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


def _progress(k: int, total: int, start: float) -> None:
    if k == total or k % 10 == 0:
        el = time.perf_counter() - start
        print(f"  ... {k}/{total} networks, {el:.0f} s, ~{el / k * (total - k):.0f} s left", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
