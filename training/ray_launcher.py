"""`ray`: each training a Ray task, on a local cluster or one the run joins (`address`).

The dataset goes into the object store once per (dataset, root, seed, subset) and every task reads
it from there. A task first reports where it runs (pid, node), then its result; a worker or node
that dies mid-training, a task past its time limit (cancelled, forcibly) or a task Ray cannot place
ends as a failed trial with its reason, never as an exception. Ray is an optional extra:
`pip install ".[ray]"`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .evaluators import Evaluator, TrainEvaluator
from .results import TrialResult
from .trials import TrialSpec, recorded_failure

__all__ = ["RayLauncher", "RayMissingError", "import_ray"]


class RayMissingError(ImportError):
    """launcher=ray without Ray installed."""


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError('launcher=ray needs Ray: install the extra with pip install ".[ray]"') from exc
    return ray


def _evaluate(evaluator: Evaluator, spec: TrialSpec, data, threads: int | None):
    """The task: where it runs, then the result as JSON (a generator, so the driver hears of the
    start before the end; the hard limit counts from there)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    yield {"pid": os.getpid(), "host": socket.gethostname()}
    if data is not None and isinstance(evaluator, TrainEvaluator):
        from .trainer import train

        result = train(spec.model_factory, data, spec.resolved_profile(), seed=spec.seed, device=spec.device,
                       time_limit_s=spec.time_limit_s, progress=evaluator.progress, out=spec.out,
                       trial_id=spec.trial_id, weights=spec.weights_out)
    else:
        from .launchers import guarded

        result = guarded(evaluator, spec)
    yield result.model_dump_json()


@dataclass
class RayLauncher:
    """`address`: None starts a local cluster (`num_cpus`, default all cores); `auto` or
    `ray://host:port` joins one. `resources`: each task's Ray resources (`num_cpus`, `num_gpus`,
    `memory` or custom ones); `num_cpus` defaults to `threads`. `time_limit_s` as for the other
    launchers: the trainer stops itself at the limit, and a task still running `grace_s` later is
    cancelled with force (its worker killed)."""

    evaluator: Evaluator = field(default_factory=TrainEvaluator)
    time_limit_s: float | None = None
    address: str | None = None
    resources: dict = field(default_factory=dict)
    threads: int | None = None
    num_cpus: int | None = None  # a local cluster's size
    grace_s: float = 30.0
    on_result: Callable[[int, TrialResult], None] | None = None
    _data: dict = field(default_factory=dict, init=False, repr=False)  # object refs, one per dataset key
    # Trials side by side call run() from worker threads: one of them starts Ray and puts a dataset.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _ray(self):
        ray = import_ray()
        with self._lock:
            if not ray.is_initialized():
                kwargs = {"address": self.address} if self.address else {"num_cpus": self.num_cpus}
                ray.init(**kwargs, include_dashboard=False, log_to_driver=False, configure_logging=False,
                         ignore_reinit_error=True)
        return ray

    def _dataset_ref(self, ray, spec: TrialSpec):
        """The trial's dataset in the object store (loaded here once), or None when the evaluator
        does not train or the dataset cannot be loaded (the task then reports the error)."""
        if not isinstance(self.evaluator, TrainEvaluator):
            return None
        from .datasets import DatasetError, load_dataset
        from .profiles import ProfileError

        try:
            subset = spec.resolved_profile().subset
            key = (spec.dataset, spec.root, spec.data_seed, subset)
            with self._lock:
                if key not in self._data:
                    self._data[key] = ray.put(load_dataset(spec.dataset, spec.root, seed=spec.data_seed,
                                                           subset=subset))
        except (DatasetError, ProfileError):
            return None
        return self._data[key]

    def _options(self) -> dict:
        res = dict(self.resources or {})
        opts = {"max_retries": 0}  # a dead worker is this trial's failure, not a silent rerun
        for k in ("num_cpus", "num_gpus", "memory"):
            if k in res:
                opts[k] = res.pop(k)
        opts.setdefault("num_cpus", self.threads or 1)
        if res:
            opts["resources"] = res
        return opts

    def _fail(self, spec: TrialSpec, why: str) -> TrialResult:
        return recorded_failure(spec, why, evaluator=self.evaluator.name)

    def run(self, trials: Sequence[TrialSpec]) -> list[TrialResult]:
        ray = self._ray()
        task = ray.remote(_evaluate).options(**self._options())
        out: list[TrialResult] = []
        for i, spec in enumerate(trials):
            if spec.time_limit_s is None and self.time_limit_s is not None:
                spec = dataclasses.replace(spec, time_limit_s=self.time_limit_s)
            res = self._one(ray, task, spec)
            if self.on_result:
                self.on_result(i, res)
            out.append(res)
        return out

    def _one(self, ray, task, spec: TrialSpec) -> TrialResult:
        gen = task.remote(self.evaluator, spec, self._dataset_ref(ray, spec), self.threads)
        try:
            where = ray.get(next(gen))
            if spec.out:  # where the trial runs: a researcher can look at (or kill) that worker
                path = Path(spec.out).with_name("worker.json")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(where))
            limit = None if spec.time_limit_s is None else spec.time_limit_s + self.grace_s
            ready, _ = ray.wait([gen], timeout=limit)
            if not ready:
                ray.cancel(gen, force=True)
                return self._fail(spec, f"time limit of {spec.time_limit_s:g}s exceeded; Ray task cancelled "
                                        f"(worker killed) after {self.grace_s:g}s grace")
            return TrialResult.model_validate_json(ray.get(next(gen)))
        except StopIteration:
            return self._fail(spec, "Ray task ended without a result")
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return self._fail(spec, f"Ray worker or node failed: {type(exc).__name__}: {first}")
        except KeyboardInterrupt:
            ray.cancel(gen, force=True)
            raise
