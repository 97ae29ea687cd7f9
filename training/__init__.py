"""Training and evaluation: datasets, augmentation, the NB201-protocol trainer, evaluators and
trial launchers. Model-agnostic: it takes a torch.nn.Module or a zero-arg factory of one.

Importing the package loads nothing heavy; the names below resolve lazily from their modules.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_dataset": "datasets", "available_datasets": "datasets", "ImageDataset": "datasets",
    "Split": "datasets", "DatasetError": "datasets",
    "TrainerProfile": "profiles", "PROFILES": "profiles", "get_profile": "profiles",
    "TrialResult": "results", "EpochMetrics": "results",
    "Trainer": "trainer", "train": "trainer",
    "TrialSpec": "trials",
    "Evaluator": "evaluators", "TrainEvaluator": "evaluators", "make_evaluator": "evaluators",
    "InProcessLauncher": "launchers", "PoolLauncher": "launchers", "make_launcher": "launchers",
    "EVALUATORS": "evaluators", "BlockNetwork": "models", "Nb201TableEvaluator": "nb201_table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
