"""A design run: the root is trained, then each trial selects a tree node, runs the team on it and
records the result. The tree is rewritten atomically after every trial, so no work is lost and a
run can be resumed from its directory."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from autogen_core.models import ChatCompletionClient
from rich.console import Console

from graphs.atomic import atomic_write
from graphs.cost import Budget, BudgetError, fit_design
from graphs.ir import parse_block
from graphs.search import select, with_in_flight
from graphs.space import Space
from graphs.tree import ModificationTree, TreeNode
from graphs.validate import check
from tools.memory import Memory
from tools.training_tools import TrainArgs, training_tool

from .interrupt import Interrupt, RunInterrupted
from .llm import UsageLedger
from .designers import Designer
from .progress import RunProgress
from .team import TeamParts
from .trial import Staged, TrialEnv, commit_trial, run_designer_trial, run_trial


class RunError(RuntimeError):
    """The run cannot start or continue (bad root block, untrainable root, ...)."""


@dataclass(frozen=True)
class RunSettings:
    """What the loop needs of the config (built from the checked config; the defaults are in conf/)."""

    dataset: str
    macro: str
    trials: int
    seed: int
    policy: str
    policy_options: dict
    budget: Budget
    max_rounds: int
    export: bool
    space: Space
    designer: Designer | None  # None: the team of agents; else a baseline (agents.designers)
    scorer: Callable | None = None  # training.screening.ProxyScorer: proxy scores of every candidate
    screen_k: int = 1               # designs per trial; the best by screen_proxy is trained
    screen_proxy: str = "synflow"
    parallel: int = 1               # trials in flight at once
    tracker: object | None = None   # agents.tracking.MlflowTracker: .trial(trial, node), .end(summary)
    progress: RunProgress | None = None  # what the run shows while it works (None: plain lines)
    trainer: str = ""               # the trainer profile, named on screen and in the summary
    team_parts: TeamParts = field(default_factory=TeamParts)  # the team's parts (ablations switch them off)


@dataclass
class RunSummary:
    trials: int
    statuses: dict[str, int]
    best_node: int | None
    best_valid_acc: float | None
    best_test_acc: float | None
    tokens: int
    client_failures: int
    usd: float = 0.0
    stopped: str | None = None
    usage_lines: list[str] = field(default_factory=list)
    trainer: str = ""  # the trainer profile, e.g. "smoke (development schedule)"
    # per proxy: Spearman/Kendall against the trained nodes' validation accuracy (training.screening)
    proxy_correlations: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        best = (f"best node {self.best_node}: valid {self.best_valid_acc:.2f}%, test {self.best_test_acc:.2f}%"
                if self.best_node is not None else "no trained node")
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self.statuses.items()))
        head = [f"stopped early: {self.stopped}"] if self.stopped else []
        from training.screening import correlation_lines

        trainer = [f"trainer profile: {self.trainer}"] if self.trainer else []
        return head + [f"{self.trials} trials ({counts}); {best}; {self.tokens:,} tokens, ${self.usd:.4f}",
                       *correlation_lines(self.proxy_correlations), *self.usage_lines, *trainer]

    def to_json(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "lines": self.lines()}


async def run_design(settings: RunSettings, run_dir: Path, root_block: str, clients: Mapping[str, ChatCompletionClient],
                     memory: Memory, train: Callable[[TrainArgs], dict], console: Console | None = None,
                     ledger: UsageLedger | None = None, redact: Callable[[str], str] = lambda s: s,
                     interrupt: Interrupt | None = None) -> RunSummary:
    """`ledger` records the model calls of `clients` (agents.llm.ManagedClient); with plain clients
    the usage is still counted from the transcripts' message usage. After a Ctrl-C (`interrupt`)
    the trial in progress is dropped, to run again on resume, and RunInterrupted is raised; what
    finished before it is already saved."""
    console = console or Console(stderr=True)
    ledger = ledger or UsageLedger(redact=redact)
    run_dir.mkdir(parents=True, exist_ok=True)
    if settings.trainer:
        console.print(f"trainer profile: {settings.trainer}", soft_wrap=True)
    tree_path = run_dir / "tree.json"
    usage_path = run_dir / "usage.json"
    # Side by side, each training runs in a worker thread so that the other trials' model calls go on.
    train_tool = training_tool(train if settings.parallel == 1 else (lambda args: asyncio.to_thread(train, args)))
    if tree_path.exists():
        tree = ModificationTree.load(tree_path)
        console.print(f"resuming {tree_path}: {len(tree)} nodes")
        ledger.set_aside(finished_trials(tree))
    elif spent := ledger.exceeded():  # e.g. the Reader spent the budget: nothing more starts, not even the root
        ledger.stop(f"{spent}; the root was not trained")
        console.print(f"[yellow]stopping: {ledger.stopped}[/]")
        ledger.save(usage_path)
        summary = summarize(ModificationTree())
        summary.stopped, summary.usage_lines = ledger.stopped, ledger.summary_lines()
        return summary
    else:
        tree = ModificationTree()
        try:
            _train_root(settings, tree, root_block, train, console)
        except KeyboardInterrupt:
            if interrupt is None or not interrupt.requested:
                raise
            raise RunInterrupted(None, "while training the root") from None
        tree.save(tree_path)
    env = TrialEnv(tree=tree, memory=memory, clients=clients, train=train_tool, dataset=settings.dataset,
                   macro=settings.macro, budget=settings.budget, max_rounds=settings.max_rounds, run_dir=run_dir,
                   export=settings.export, ledger=ledger, redact=redact, space=settings.space,
                   scorer=settings.scorer, screen_k=settings.screen_k, screen_proxy=settings.screen_proxy,
                   seed=settings.seed, parts=settings.team_parts)
    finished = {n.trial for n in tree.nodes if n.trial}
    todo = [t for t in range(1, settings.trials + 1) if t not in finished]
    rng = random.Random(settings.seed)
    stopped = ledger.exceeded() if todo else None
    flights: dict[asyncio.Task, _Flight] = {}

    progress = settings.progress or RunProgress(console, False, settings.parallel)
    progress.begin(settings.trials, len(finished))

    def start(trial: int) -> _Flight:
        # The policy sees the trials in flight as taken expansions (graphs.search.with_in_flight).
        view = with_in_flight(tree, [f.parent.id for f in flights.values()])
        parent = tree.get(select(view, settings.policy, rng, **settings.policy_options).id)
        progress.started(trial, parent.id)
        if settings.designer is None:
            console.print(f"[bold]trial {trial}/{settings.trials}[/]: improving node {parent.id} "
                          f"(valid {parent.valid_acc:.2f}%)")
        else:  # a baseline picks its own parent (rea) or none (random)
            console.print(f"[bold]trial {trial}/{settings.trials}[/]: designer {settings.designer.name}")
        fork = tree.fork()  # the trial adds its nodes here; the driver alone changes the run's tree
        return _Flight(trial, parent, fork, len(fork), time.perf_counter(), time.time(),
                       dataclasses.replace(env, tree=fork, drafted=[], trial=trial, run_tree=tree,
                                           on_stage=progress.stage))

    async def run_one(f: _Flight) -> Staged:
        with ledger.charging(str(f.trial)):
            if settings.designer is None:
                return await run_trial(f.env, f.trial, f.parent)
            return await run_designer_trial(f.env, f.trial, f.parent, settings.designer,
                                            random.Random(f"{settings.seed}:{f.trial}"))

    try:
        while True:
            finished_now: list[tuple[_Flight, Staged]] = []
            while todo and not stopped and len(flights) < settings.parallel:
                if interrupt is not None and interrupt.requested:
                    raise RunInterrupted(None, f"before trial {todo[0]}")
                f = start(todo.pop(0))
                if settings.parallel == 1:  # one at a time, in this task: as before, and Ctrl-C stops training at once
                    flights[asyncio.current_task()] = f
                    finished_now.append((f, await run_one(f)))
                    flights.clear()
                    break  # committed below before the next one is selected
                else:
                    flights[asyncio.create_task(run_one(f))] = f
            if not finished_now:
                if not flights:
                    break
                done, _ = await asyncio.wait(flights, return_when=asyncio.FIRST_COMPLETED)
                finished_now = [(flights.pop(t), t.result()) for t in sorted(done, key=lambda t: flights[t].trial)]
            for f, staged in finished_now:
                node = commit_trial(env, f.fork, f.since, staged)
                tree.save(tree_path)
                if not stopped:
                    stopped = ledger.exceeded() if todo else None
                    ledger.stop(f"{stopped}; stopped after trial {f.trial}" if stopped else None)
                ledger.save(usage_path)
                _append_timeline(run_dir, f, node, ledger.totals(str(f.trial)))
                progress.finished(f.trial)
                _report(console, tree, f.trial, node, settings)
                _write_html(run_dir, console)
                _track(settings, console, "trial", f.trial, node)
    except (asyncio.CancelledError, KeyboardInterrupt):
        progress.close()
        others = [t for t in flights if t is not asyncio.current_task()]
        for t in others:
            t.cancel()
        if interrupt is None or not interrupt.requested:
            raise
        task = asyncio.current_task()
        while task is not None and task.cancelling():  # handled here: later awaits must not be cancelled
            task.uncancel()
        await asyncio.gather(*others, return_exceptions=True)
        ledger.save(usage_path)  # the stopped trials' calls were spent; resume sets them aside
        stopped_trials = sorted(f.trial for f in flights.values())
        if not stopped_trials:
            raise RunInterrupted(None, "between trials") from None
        raise RunInterrupted(stopped_trials[0], "during trial" + ("s " if len(stopped_trials) > 1 else " ")
                             + ", ".join(map(str, stopped_trials))) from None
    except BaseException:
        progress.close()
        raise
    progress.close()
    if stopped:
        ledger.stop(ledger.stopped or f"{stopped}; no trial started")
        console.print(f"[yellow]stopping: {ledger.stopped}[/]; the tree is saved in {tree_path}")
    ledger.save(usage_path)
    write_best(tree, run_dir, settings)
    summary = summarize(tree)
    summary.stopped, summary.trainer = ledger.stopped, settings.trainer
    if ledger.calls:  # one scope for tokens and dollars: every model call of the run, the Reader's too
        summary.tokens = ledger.totals()["tokens"]
    summary.usd = ledger.totals()["usd"]
    summary.usage_lines = ledger.summary_lines() if ledger.calls else []
    if settings.scorer is not None:
        from training.screening import run_correlations

        summary.proxy_correlations = run_correlations(tree.nodes, settings.scorer.names, seed=settings.seed)
    atomic_write(run_dir / "summary.json", json.dumps(summary.to_json(), indent=2))
    _write_html(run_dir, console)
    _track(settings, console, "end", summary)
    return summary


@dataclass
class _Flight:
    """A trial in flight: its parent, the fork of the tree it adds nodes to, and its own env."""

    trial: int
    parent: TreeNode
    fork: ModificationTree
    since: int
    began: float       # perf_counter, for its duration
    started_at: float  # Unix time, for the timeline
    env: TrialEnv


def _report(console: Console, tree: ModificationTree, trial: int, node: TreeNode, settings: RunSettings) -> None:
    acc = f", valid {node.valid_acc:.2f}%" if node.status == "trained" else ""
    why = f" ({node.reason})" if node.reason else (f" of node {node.duplicate_of}" if node.duplicate_of else "")
    screened = sum(1 for n in tree.nodes if n.trial == trial and n.status == "screened")
    picked = f" (best of {screened + 1} by {settings.screen_proxy}; {screened} screened out)" if screened else ""
    console.print(f"  -> trial {trial}: node {node.id}: {node.status}{why}{acc}{picked}")


def _write_html(run_dir: Path, console: Console) -> None:
    """report.html after each trial and at the end; a report that cannot be drawn never stops a run."""
    from .report import write_report

    try:
        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the run's own files are saved; only the page is missing
        console.print(f"[yellow]warning:[/] report.html not written: {type(exc).__name__}: {exc}", soft_wrap=True)


def _track(settings: RunSettings, console: Console, what: str, *args) -> None:
    """Experiment tracking, when on; a tracking failure is a warning (the run's files are the record)."""
    if settings.tracker is None:
        return
    try:
        getattr(settings.tracker, what)(*args)
    except Exception as exc:  # noqa: BLE001 - e.g. the tracking server went away
        console.print(f"[yellow]warning:[/] tracking ({what}) failed: {type(exc).__name__}: {exc}", soft_wrap=True)


def _append_timeline(run_dir: Path, f: _Flight, node, usage: dict) -> None:
    """timeline.jsonl: one line per finished trial (in the order they finish) with its whole time in
    the loop (selection, design, evaluation, saving) and the evaluation's own time, so the loop's
    overhead per trial can be read off (bench/search_quality.py); when it started and ended (Unix
    seconds: trials side by side overlap); the node it started from; its prompt and completion tokens."""
    evaluated = float((node.metrics or {}).get("wall_time_s") or 0.0) if node.status in ("trained", "failed") else 0.0
    line = {"trial": f.trial, "node": node.id, "parent": f.parent.id, "status": node.status,
            "seconds": round(time.perf_counter() - f.began, 4), "started": round(f.started_at, 3),
            "ended": round(time.time(), 3),
            "eval_seconds": round(evaluated, 4), "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"]}
    with open(run_dir / "timeline.jsonl", "a") as fh:  # appended: a line per trial, never rewritten
        fh.write(json.dumps(line) + "\n")


def write_best(tree: ModificationTree, run_dir: Path, settings: RunSettings) -> Path | None:
    """best/: the best node's block, standalone PyTorch source, trained weights and metrics."""
    import shutil

    from graphs.compile import build_model
    from graphs.export import export_source

    best = tree.best()
    if best is None:
        return None
    out = run_dir / "best"
    out.mkdir(parents=True, exist_ok=True)
    (out / "block.txt").write_text(best.block)
    x = best.widths[0] if settings.macro == "nader" and best.widths else None
    from training.datasets import input_normalization

    (out / "model.py").write_text(export_source(build_model(parse_block(best.block), settings.macro,
                                                            settings.dataset, x),
                                                normalization=input_normalization(settings.dataset, settings.seed)))
    weights = run_dir / "trials" / f"{best.trial or 0:04d}" / "weights.pt"
    if weights.exists():
        shutil.copyfile(weights, out / "weights.pt")
    (out / "metrics.json").write_text(json.dumps({"node": best.id, "trial": best.trial, "widths": best.widths,
                                                  "params": best.params, "flops": best.flops,
                                                  "metrics": best.metrics}, indent=2))
    return out


def finished_trials(tree: ModificationTree) -> int | list[int]:
    """The trials the tree holds: the last one when they are 1..n, else the list (trials that ran
    side by side can finish out of order)."""
    done = sorted({n.trial for n in tree.nodes if n.trial})
    return len(done) if done == list(range(1, len(done) + 1)) else done


def summarize(tree: ModificationTree) -> RunSummary:
    """Counts by status are of nodes: with screening a trial adds several (one trained, the rest
    screened); `trials` counts trials."""
    trials = [n for n in tree.nodes if n.trial]
    statuses: dict[str, int] = {}
    for n in trials:
        statuses[n.status] = statuses.get(n.status, 0) + 1
    best = tree.best()
    return RunSummary(trials=len({n.trial for n in trials}), statuses=statuses, best_node=best.id if best else None,
                      best_valid_acc=best.valid_acc if best else None, best_test_acc=best.test_acc if best else None,
                      tokens=sum(int(n.cost.get("tokens", 0)) for n in tree.nodes),
                      client_failures=len({n.trial for n in trials if (n.reason or "").startswith("model client error")}))


def _train_root(settings: RunSettings, tree: ModificationTree, text: str, train, console: Console) -> None:
    try:
        block = check(parse_block(text), "base")
    except ValueError as exc:
        raise RunError(f"the root block is not a valid base block: {exc}") from exc
    try:
        x, widths, params, flops = fit_design(block, settings.macro, settings.dataset, settings.budget)
    except BudgetError as exc:
        raise RunError(f"the root block does not fit the budget: {exc}") from exc
    console.print(f"training the root block {block.name}: widths {widths}, {params:,} params")
    scores = settings.scorer(block, x).as_metrics() if settings.scorer is not None else {}
    m = train(TrainArgs(block=str(block), x=x, trial=0))
    if m.get("status") != "ok":
        raise RunError(f"the root block could not be trained: {m.get('reason')}")
    tree.root(str(block), metrics={**m, "valid_acc": m.get("final_valid_acc"), "test_acc": m.get("final_test_acc"),
                                   **scores}, widths=widths, params=params, flops=flops, trial=0)
    console.print(f"  root: valid {m.get('final_valid_acc'):.2f}%")
