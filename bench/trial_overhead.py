"""Per-trial overhead of the design loop and prompt tokens per trial (issue 11, items 7-8).

Runs the real loop in-process (the Hydra config from conf/, agents.factory.build_run, the offline
designer) into a temporary run directory and prints, per window of trials: the non-training
overhead (a trial's wall time, from the end of the previous trial's saves to the end of its own,
minus the evaluator's time; the offline designer has no network latency) and the prompt and
completion tokens per trial, by role. It prints figures; it asserts nothing.

    .venv/bin/python bench/trial_overhead.py [--trials 500] [--embedder minilm|hashing] [--profile]
                                             [--window 9] [--keep DIR] [override ...]

Extra arguments are Hydra overrides, applied after the defaults below (the NB201 table evaluator
on CIFAR-100, so that no trial trains).
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TABLE = "/work/shared/data/nb201_cifar.csv"
DEFAULTS = ["evaluator.name=nb201_table", f"evaluator.table={TABLE}", "evaluator.out_of_space=skip",
            "dataset=cifar100"]


class Clock:
    """Timestamps the loop's own boundaries: the end of each save of usage.json (once per trial)
    and the evaluator's time per trial, by wrapping the two callables the factory hands the loop."""

    def __init__(self) -> None:
        self.saves: list[float] = []
        self.eval_s: dict[int, float] = {}
        self.build_s = 0.0  # factory.build_run: config, tree, evaluator (the run's fixed cost before trial 1)

    def wrap_trainer(self, make_trainer):
        def make(*args, **kwargs):
            train = make_trainer(*args, **kwargs)

            def timed(targs):
                t = time.perf_counter()
                try:
                    return train(targs)
                finally:
                    self.eval_s[targs.trial] = self.eval_s.get(targs.trial, 0.0) + time.perf_counter() - t
            return timed
        return make

    def wrap_save(self, save):
        def timed(ledger, path):
            out = save(ledger, path)
            self.saves.append(time.perf_counter())
            return out
        return timed


def run_loop(trials: int, overrides: list[str], run_dir: Path, clock: Clock, profile: cProfile.Profile | None):
    from hydra import compose, initialize_config_dir
    from rich.console import Console

    import agents.factory as factory
    from agents.llm.ledger import UsageLedger

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("config", overrides=[*DEFAULTS, f"trials={trials}", *overrides])
    console = Console(file=io.StringIO())  # the loop's progress lines are not the figures
    factory.check_config(cfg, run_dir, console)
    saved_make, saved_save = factory.make_trainer, UsageLedger.save
    factory.make_trainer = clock.wrap_trainer(saved_make)
    UsageLedger.save = clock.wrap_save(saved_save)
    try:
        built = time.perf_counter()
        run = factory.build_run(cfg, run_dir, console, saved_configs=[])
        started = time.perf_counter()
        clock.build_s = started - built
        if profile is not None:
            profile.enable()
        try:
            asyncio.run(run())
        finally:
            if profile is not None:
                profile.disable()
        return started, time.perf_counter() - started
    finally:
        factory.make_trainer, UsageLedger.save = saved_make, saved_save


def per_trial_tokens(run_dir: Path) -> dict[int, dict[str, dict[str, int]]]:
    """trial -> role -> {prompt, completion, calls}, from the usage journal."""
    out: dict[int, dict[str, dict[str, int]]] = {}
    for line in (run_dir / "usage.jsonl").read_text().splitlines():
        c = json.loads(line)
        if "trial" not in c or not str(c["trial"]).isdigit():
            continue
        r = out.setdefault(int(c["trial"]), {}).setdefault(c["role"], {"prompt": 0, "completion": 0, "calls": 0})
        r["prompt"] += c["prompt_tokens"]
        r["completion"] += c["completion_tokens"]
        r["calls"] += 1
    return out


def window_row(name: str, trials: list[int], overhead: dict[int, float], tokens, roles: list[str]) -> list[str]:
    oh = [overhead[t] for t in trials if t in overhead]
    prompt = [sum(r["prompt"] for r in tokens.get(t, {}).values()) for t in trials]
    comp = [sum(r["completion"] for r in tokens.get(t, {}).values()) for t in trials]
    by_role = [statistics.mean(tokens.get(t, {}).get(role, {}).get("prompt", 0) for t in trials) for role in roles]
    return [name, f"{trials[0]}-{trials[-1]}", f"{statistics.median(oh):.3f}" if oh else "-",
            f"{statistics.mean(oh):.3f}" if oh else "-", f"{statistics.median(prompt):,.0f}", f"{statistics.mean(prompt):,.0f}",
            f"{statistics.mean(comp):,.0f}", *(f"{v:,.0f}" for v in by_role)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"])
    ap.add_argument("--window", type=int, default=9, help="trials per window (default 9: trials 2-10)")
    ap.add_argument("--profile", action="store_true", help="cProfile the loop: top 25 by cumulative, top 15 by own time")
    ap.add_argument("--keep", type=Path, help="run in this directory (kept) instead of a temporary one")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. search=greedy")
    a = ap.parse_args(argv)
    if a.trials < a.window + 1:
        raise SystemExit(f"--trials must be at least --window + 1 ({a.window + 1}), got {a.trials}")

    tmp = None if a.keep else tempfile.TemporaryDirectory(prefix="trial_overhead_")
    run_dir = Path(a.keep or tmp.name)
    clock = Clock()
    prof = cProfile.Profile() if a.profile else None
    started, total = run_loop(a.trials, [f"memory.embedder={a.embedder}", *a.overrides], run_dir, clock, prof)

    # The loop saves usage.json once after every trial (then at the end): trial t ends at saves[t - 1].
    ends = [started, *clock.saves[: a.trials]]
    wall = {t: ends[t] - ends[t - 1] for t in range(1, min(len(ends), a.trials + 1))}
    overhead = {t: w - clock.eval_s.get(t, 0.0) for t, w in wall.items()}
    tokens = per_trial_tokens(run_dir)
    roles = sorted({role for per in tokens.values() for role in per})
    start_w = list(range(2, 2 + a.window))
    end_w = list(range(a.trials - a.window + 1, a.trials + 1))

    print(f"trial_overhead: {a.trials} trials, embedder {a.embedder}, overrides {DEFAULTS + a.overrides}")
    print(f"total {total:.1f} s for the run (the root's table lookup and memory opening included: "
          f"trial 1 holds them); build_run before it: {clock.build_s:.2f} s")
    head = ["window", "trials", "overhead s (median)", "overhead s (mean)", "prompt tok/trial (median)", "(mean)",
            "completion tok/trial", *(f"{r} prompt (mean)" for r in roles)]
    rows = [window_row("start", start_w, overhead, tokens, roles), window_row("end", end_w, overhead, tokens, roles)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    s_oh, e_oh = [overhead[t] for t in start_w if t in overhead], [overhead[t] for t in end_w if t in overhead]
    if s_oh and e_oh:  # a run resumed in --keep DIR has fewer saves than trials: no end window
        print(f"overhead end/start: {statistics.median(e_oh) / statistics.median(s_oh):.2f}x (medians); trial 1 "
              f"(memory opening, first embed): {overhead.get(1, float('nan')):.3f} s")
    p10 = sum(r["prompt"] for r in tokens.get(min(10, a.trials), {}).values())
    pend = sum(r["prompt"] for r in tokens.get(a.trials, {}).values())
    print(f"prompt tokens at trial {min(10, a.trials)}: {p10:,}; at trial {a.trials}: {pend:,}")
    if prof is not None:
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(25)
        stats.sort_stats("tottime").print_stats(15)  # where the time is spent, not only through what
        print(out.getvalue())
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
