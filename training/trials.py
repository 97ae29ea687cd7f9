"""A trial: everything a worker process needs to evaluate one candidate, in picklable form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from .profiles import TrainerProfile, get_profile
from .results import TrialResult

__all__ = ["TrialSpec", "failed_result", "recorded_failure"]


@dataclass(frozen=True)
class TrialSpec:
    """`model_factory` must be picklable for the pool launcher: a module-level function, a class,
    or a functools.partial of one (not a lambda or a closure)."""

    model_factory: Callable[[], nn.Module]
    dataset: str = "digits"
    root: str | None = None
    profile: TrainerProfile | str = "smoke"
    seed: int = 0
    split_seed: int | None = None  # None: the trial seed fixes the split too
    trial_id: str = ""
    time_limit_s: float | None = None
    device: str | None = None
    out: str | None = None  # JSON path for the result
    weights_out: str | None = None  # path for the trained state dict
    extra: dict = field(default_factory=dict)  # evaluator-specific settings (e.g. block text, arch)

    def resolved_profile(self) -> TrainerProfile:
        return get_profile(self.profile)

    @property
    def data_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed


def failed_result(spec: TrialSpec, reason: str, evaluator: str = "train", **kw) -> TrialResult:
    """A failure recorded against `spec` (used where no trainer ran: bad dataset, dead worker)."""
    try:
        prof = spec.resolved_profile()
        pname, full = prof.name, prof.full_protocol
    except Exception:  # noqa: BLE001 - an invalid profile is itself the failure being reported
        pname, full = str(spec.profile), False
    return TrialResult(status="failed", reason=reason, trial_id=spec.trial_id, evaluator=evaluator,
                       dataset=spec.dataset, profile=pname, full_protocol=full, seed=spec.seed,
                       split_seed=spec.data_seed, device=spec.device or "", **kw)


def recorded_failure(spec: TrialSpec, reason: str, evaluator: str = "train") -> TrialResult:
    """`failed_result`, also written to the spec's `out` when it has one (as a finished trial's is)."""
    result = failed_result(spec, reason, evaluator=evaluator)
    if spec.out:
        result.write_json(spec.out)
    return result
