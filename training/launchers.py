"""Trial launchers: `inprocess` runs trials one after another here; `pool` runs each trial in its
own spawned worker process, N at a time, so that a segfault, a kill or a hang costs one trial only;
`ray` (training/ray_launcher.py, an optional extra) runs each as a Ray task on a local or remote
cluster. All return one result per trial, in trial order, and never raise for a failing trial."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Callable, Protocol, Sequence

from .evaluators import Evaluator, TrainEvaluator
from .results import TrialResult
from .trials import TrialSpec, failed_result, recorded_failure

__all__ = ["Launcher", "InProcessLauncher", "PoolLauncher", "LAUNCHERS", "make_launcher", "UnknownLauncherError",
           "guarded", "auto_time_limit", "default_threads", "AUTO_LIMIT_FACTOR", "AUTO_LIMIT_FLOOR_S"]

# launcher.time_limit_s=auto: this many times the root's own training time (analytic MACs miss real
# cost: a design with 2.4x the root's MACs trained 20x slower), never under the floor: a short root
# timed on an idle machine must not fail ordinary trials when the machine gets busy (a 10-trial
# digits run lost 2 trials to a 72 s limit while tests ran beside it).
AUTO_LIMIT_FACTOR = 5.0
AUTO_LIMIT_FLOOR_S = 600.0


class Launcher(Protocol):
    def run(self, trials: Sequence[TrialSpec]) -> list[TrialResult]: ...


class UnknownLauncherError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _with_limit(spec: TrialSpec, limit: float | None) -> TrialSpec:
    """The trial's own limit wins; otherwise the launcher's applies (the trainer checks it per step)."""
    if spec.time_limit_s is None and limit is not None:
        return dataclasses.replace(spec, time_limit_s=limit)
    return spec


def guarded(evaluator: Evaluator, spec: TrialSpec) -> TrialResult:
    try:
        return evaluator.evaluate(spec)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - an evaluator bug still ends as this trial's result
        return failed_result(spec, f"evaluator error: {type(e).__name__}: {e}", evaluator=evaluator.name)


@dataclass
class InProcessLauncher:
    evaluator: Evaluator = field(default_factory=TrainEvaluator)
    time_limit_s: float | None = None
    on_result: Callable[[int, TrialResult], None] | None = None

    def run(self, trials: Sequence[TrialSpec]) -> list[TrialResult]:
        out = []
        for i, spec in enumerate(trials):
            r = guarded(self.evaluator, _with_limit(spec, self.time_limit_s))
            if self.on_result:
                self.on_result(i, r)
            out.append(r)
        return out


def _worker(evaluator: Evaluator, spec: TrialSpec, conn: Connection, threads: int | None) -> None:
    """Runs in the spawned process; reports 'started' (so the hard limit excludes interpreter and torch
    start-up), then the result as JSON."""
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        conn.send(("started", None))
        conn.send(("result", guarded(evaluator, spec).model_dump_json()))
    finally:
        conn.close()


@dataclass
class _Running:
    spec: TrialSpec
    proc: mp.process.BaseProcess
    conn: Connection
    spawned: float
    started: float | None = None
    result: TrialResult | None = None


def _death_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker process died from {name} (exit code {code}) before returning a result"
    return f"worker process exited with code {code} without returning a result"


@dataclass
class PoolLauncher:
    """`time_limit_s` is per trial: the trainer stops itself at the limit; a worker still running at
    limit + `grace_s` (e.g. stuck inside one forward) is killed. Workers use spawn, so the evaluator and
    each spec's model factory must be picklable."""

    evaluator: Evaluator = field(default_factory=TrainEvaluator)
    workers: int = 2
    time_limit_s: float | None = None
    grace_s: float = 30.0
    startup_timeout_s: float = 300.0
    threads_per_worker: int | None = None  # default: the cores shared out among the workers
    on_result: Callable[[int, TrialResult], None] | None = None

    def _threads(self) -> int:
        return self.threads_per_worker or default_threads(self.workers)

    def _start(self, ctx, spec: TrialSpec) -> _Running | TrialResult:
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(self.evaluator, spec, writer, self._threads()), daemon=True)
        try:
            proc.start()
        except Exception as e:  # noqa: BLE001 - e.g. a lambda model factory cannot be pickled
            reader.close()
            writer.close()
            return failed_result(spec, f"cannot start worker: {type(e).__name__}: {e}", evaluator=self.evaluator.name)
        writer.close()  # the child holds the only write end now, so its death reads as EOF here
        return _Running(spec, proc, reader, time.monotonic())

    @staticmethod
    def _drain(r: _Running) -> None:
        try:
            while r.result is None and r.conn.poll():
                kind, payload = r.conn.recv()
                if kind == "started":
                    r.started = time.monotonic()
                elif kind == "result":
                    r.result = TrialResult.model_validate_json(payload)
        except (EOFError, OSError):
            pass  # the worker is gone; its exit code tells why

    def _deadline(self, r: _Running) -> float:
        if r.started is None:
            return r.spawned + self.startup_timeout_s
        limit = r.spec.time_limit_s
        return float("inf") if limit is None else r.started + limit + self.grace_s

    @staticmethod
    def _stop(r: _Running) -> None:
        r.proc.terminate()
        r.proc.join(2.0)
        if r.proc.is_alive():
            r.proc.kill()
            r.proc.join(5.0)

    def _finish(self, r: _Running) -> TrialResult:
        if r.result is not None:
            r.proc.join(10.0)
            if r.proc.is_alive():
                self._stop(r)
            res = r.result
        else:
            r.proc.join(1.0)
            res = recorded_failure(r.spec, _death_reason(r.proc.exitcode), evaluator=self.evaluator.name)
        r.conn.close()
        return res

    def run(self, trials: Sequence[TrialSpec]) -> list[TrialResult]:
        ctx = mp.get_context("spawn")
        todo = [(i, _with_limit(s, self.time_limit_s)) for i, s in enumerate(trials)]
        todo.reverse()
        results: list[TrialResult | None] = [None] * len(trials)
        running: dict[int, _Running] = {}

        def done(i: int, res: TrialResult) -> None:
            results[i] = res
            if self.on_result:
                self.on_result(i, res)

        try:
            while todo or running:
                while todo and len(running) < max(1, self.workers):
                    i, spec = todo.pop()
                    started = self._start(ctx, spec)
                    if isinstance(started, TrialResult):
                        done(i, started)
                    else:
                        running[i] = started
                if not running:
                    continue
                now = time.monotonic()
                timeout = max(0.0, min(self._deadline(r) for r in running.values()) - now)
                wait([r.conn for r in running.values()] + [r.proc.sentinel for r in running.values()],
                     timeout=min(timeout, 5.0))
                for i, r in list(running.items()):
                    self._drain(r)
                    if r.result is not None or not r.proc.is_alive():
                        self._drain(r)  # a result sent just before exit
                        done(i, self._finish(r))
                        del running[i]
                    elif time.monotonic() > self._deadline(r):
                        self._stop(r)
                        if r.started is None:
                            why = f"worker did not start within {self.startup_timeout_s:g}s"
                        else:
                            why = (f"time limit of {r.spec.time_limit_s:g}s exceeded; worker killed after "
                                   f"{self.grace_s:g}s grace")
                        res = recorded_failure(r.spec, why, evaluator=self.evaluator.name)
                        r.conn.close()
                        done(i, res)
                        del running[i]
        finally:
            for r in running.values():  # only on an interrupt: leave no orphans behind
                self._stop(r)
        return [r for r in results if r is not None]


def default_threads(in_flight: int, cores: int | None = None) -> int:
    """Torch threads per training: the cores shared out among the trainings in flight (left at
    torch's default, two processes on 2 cores ran one CIFAR trial in 535 s against 60 s with one
    thread each)."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, in_flight))


def auto_time_limit(root_seconds: float | None, in_flight: int = 1, factor: float = AUTO_LIMIT_FACTOR,
                    floor: float = AUTO_LIMIT_FLOOR_S) -> float | None:
    """A trial's limit from the root's training time: `factor` times it, times the trainings in
    flight (they share the cores the root had alone), at least `floor`; None when the root's time
    is unknown (e.g. a table look-up, which trains nothing)."""
    if not root_seconds or root_seconds <= 0:
        return None
    return max(floor, factor * float(root_seconds) * max(1, in_flight))


def _ray_launcher(**kwargs) -> Launcher:
    from .ray_launcher import RayLauncher  # imports Ray only when asked for

    return RayLauncher(**kwargs)


LAUNCHERS: dict[str, Callable[..., Launcher]] = {"inprocess": InProcessLauncher, "pool": PoolLauncher,
                                                 "ray": _ray_launcher}


def make_launcher(name: str, **kwargs) -> Launcher:
    if name not in LAUNCHERS:
        raise UnknownLauncherError(f"unknown launcher '{name}'; valid names: {', '.join(sorted(LAUNCHERS))}")
    return LAUNCHERS[name](**kwargs)
