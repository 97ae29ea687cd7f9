"""Trials side by side (issue 13): wall time of a run at parallel=K against K=1.

1. Model-bound: 8 trials of the team on the NB201 table evaluator (nothing trains), every model call
   answered by the project's fake OpenAI-compatible server (tests/fake_openai_server.py, the offline
   designer behind HTTP) after `--latency` seconds; K = 1, 2, 4. Goal: >= 3x at K=4.
2. Training-bound: 4 trials of the smoke trainer on digits (designer=random, no model), K=1 vs K=2,
   through `launcher=pool` and through `launcher=ray` (a local cluster).

Each configuration runs once in a fresh temporary run directory, in this process (the loop) and
in worker processes (pool, ray); the figures are wall seconds of the whole run, root included, and
the ratio to K=1 of the same kind. It prints figures; it asserts nothing.

    .venv/bin/python bench/concurrency.py [--latency 1.0] [--trials 8] [--train-trials 4]
                                          [--skip-model] [--skip-training] [--no-ray]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"
TABLE_RUN = ["space=nb201", "evaluator.name=nb201_table", f"evaluator.table={TABLE}", "evaluator.out_of_space=skip",
             "dataset=cifar100"]
COMMON = ["memory.embedder=hashing", "export=false", "progress=false", "proxies.names=[]"]


def run(overrides: list[str]) -> tuple[float, dict]:
    """One run of the loop in a temporary directory: (wall seconds, summary as JSON)."""
    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from agents.factory import build_run

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = asyncio.run(build_run(cfg, Path(tmp) / "run", Console(file=open(os.devnull, "w")))())
        seconds = time.perf_counter() - start
        lines = [json.loads(x) for x in (Path(tmp) / "run" / "timeline.jsonl").read_text().splitlines()]
    overlap = sum(1 for i, a in enumerate(lines) for b in lines[i + 1:]
                  if a["started"] < b["ended"] and b["started"] < a["ended"])
    return seconds, {"trials": summary.trials, "statuses": summary.statuses, "overlapping_pairs": overlap}


def model_bound(latency: float, trials: int, ks: list[int]) -> list[str]:
    from fake_openai_server import FakeOpenAIServer

    out = [f"## Model-bound: {trials} trials, team on the NB201 table, every model call {latency:g} s", "",
           "| K | wall s | speed-up vs K=1 | model calls | trials | overlapping trial pairs |", "|---|---|---|---|---|---|"]
    base = None
    for k in ks:
        with FakeOpenAIServer(seed=0, latency_s=latency) as server:
            llm = ["llm=openai_compatible", f"llm.base_url={server.base_url}", "llm.model=fake-designer",
                   "+llm.prices.fake-designer={input:0.0,output:0.0}"]
            seconds, info = run(TABLE_RUN + COMMON + llm + [f"trials={trials}", f"parallel={k}"])
            calls = server.chat_requests
        base = base or seconds
        out.append(f"| {k} | {seconds:.1f} | {base / seconds:.2f}x | {calls} | {info['trials']} "
                   f"| {info['overlapping_pairs']} |")
        print(out[-1], flush=True)
    return out


def training_bound(trials: int, launchers: list[str]) -> list[str]:
    out = [f"## Training-bound: {trials} trials of the smoke trainer on digits (designer=random)", "",
           "| launcher | K | wall s | speed-up vs K=1 | trained | overlapping trial pairs |", "|---|---|---|---|---|---|"]
    for name in launchers:
        base = None
        for k in (1, 2):
            seconds, info = run(COMMON + ["designer=random", f"launcher.name={name}", f"trials={trials}",
                                          f"parallel={k}"])
            base = base or seconds
            out.append(f"| {name} | {k} | {seconds:.1f} | {base / seconds:.2f}x | {info['statuses'].get('trained', 0)} "
                       f"| {info['overlapping_pairs']} |")
            print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--train-trials", type=int, default=4)
    ap.add_argument("--ks", default="1,2,4")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--no-ray", action="store_true")
    a = ap.parse_args()
    print(f"# bench/concurrency.py on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}\n", flush=True)
    lines: list[str] = []
    run(TABLE_RUN + COMMON + ["trials=1"])  # warm-up: imports and first-use costs are not the first row's
    if not a.skip_model:
        lines += model_bound(a.latency, a.trials, [int(k) for k in a.ks.split(",")]) + [""]
    if not a.skip_training:
        lines += training_bound(a.train_trials, ["pool"] + ([] if a.no_ray else ["ray"]))
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
