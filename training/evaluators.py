"""Evaluators turn a trial into a result. `train` trains it; others (the NB201 table look-up)
plug in through the same protocol and the read-only table of kinds below."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Protocol, runtime_checkable

from .datasets import DatasetError, load_dataset
from .profiles import ProfileError
from .results import TrialResult
from .trainer import train
from .trials import TrialSpec, recorded_failure

__all__ = ["Evaluator", "TrainEvaluator", "EVALUATORS", "make_evaluator",
           "UnknownEvaluatorError"]


@runtime_checkable
class Evaluator(Protocol):
    """Must be picklable (the pool sends it to its workers) and must not raise for a bad trial."""

    name: str

    def evaluate(self, trial: TrialSpec) -> TrialResult: ...


class UnknownEvaluatorError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class TrainEvaluator:
    """Load the trial's dataset (NB201 splits, seeded) and train its model with the trainer."""

    progress: bool | None = None
    name: str = "train"
    # Told (trial id, epoch, epochs) after each epoch; in this process only (not picklable in general).
    on_epoch: Callable[[str, int, int], None] | None = None

    def evaluate(self, trial: TrialSpec) -> TrialResult:
        try:
            profile = trial.resolved_profile()
            data = load_dataset(trial.dataset, trial.root, seed=trial.data_seed, subset=profile.subset)
        except (DatasetError, ProfileError) as e:
            return recorded_failure(trial, f"{type(e).__name__}: {e}", evaluator=self.name)
        return train(trial.model_factory, data, profile, seed=trial.seed, device=trial.device,
                     time_limit_s=trial.time_limit_s, progress=self.progress, out=trial.out,
                     trial_id=trial.trial_id, weights=trial.weights_out,
                     on_epoch=None if self.on_epoch is None else
                     (lambda m: self.on_epoch(trial.trial_id, m.epoch, profile.epochs)))


def _nb201_table(**kwargs) -> Evaluator:
    """`nb201_table(table_path, out_of_space="train"|"skip")`: NB201 accuracies looked up through the
    graphs/ bridge (imported on use, so `train` needs nothing from graphs/)."""
    from .nb201_table import Nb201TableEvaluator

    return Nb201TableEvaluator(**kwargs)


# Read-only: evaluator kinds are fixed here, not registered at run time (no global mutable state).
EVALUATORS: Mapping[str, Callable[..., Evaluator]] = MappingProxyType(
    {"train": TrainEvaluator, "nb201_table": _nb201_table})


def make_evaluator(name: str, **kwargs) -> Evaluator:
    if name not in EVALUATORS:
        raise UnknownEvaluatorError(f"unknown evaluator '{name}'; valid names: {', '.join(EVALUATORS)}")
    return EVALUATORS[name](**kwargs)
