"""Launchers and evaluators: in-process, and a pool that survives a killed and a hung worker."""

from __future__ import annotations

import functools
import os
import pickle
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from training.evaluators import Evaluator, TrainEvaluator, make_evaluator
from training.launchers import InProcessLauncher, make_launcher
from training.profiles import PROFILES
from training.results import TrialResult
from training.trials import TrialSpec


pytestmark = pytest.mark.usefixtures("one_thread")


QUICK = PROFILES["smoke"].model_copy(update={"epochs": 1, "batch_size": 64, "subset": 128})


def small_model(width: int = 4, in_channels: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                         nn.Flatten(), nn.Linear(width * 16, 10))


def write_tiny_cifar10(root: Path, n: int = 40) -> str:
    """Real CIFAR-10 pickle layout; workers load it faster than they import scikit-learn for digits."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(obj))
    return str(root)


def suicidal_model() -> nn.Module:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


class _Hang(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        time.sleep(120)  # stuck inside one forward: only the hard limit can stop it


def hanging_model() -> nn.Module:
    return _Hang()


def test_inprocess_runs_in_order(tmp_path: Path) -> None:
    trials = [TrialSpec(functools.partial(small_model, w), profile=QUICK, seed=w, trial_id=str(w),
                        out=str(tmp_path / f"{w}.json")) for w in (2, 3)]
    seen = []
    res = InProcessLauncher(on_result=lambda i, r: seen.append(i)).run(trials)
    assert [r.trial_id for r in res] == ["2", "3"] and all(r.ok for r in res) and seen == [0, 1]
    assert TrialResult.read_json(tmp_path / "3.json").trial_id == "3"


def test_train_evaluator_reports_dataset_errors(tmp_path: Path) -> None:
    ev = make_evaluator("train")
    assert isinstance(ev, Evaluator) and isinstance(ev, TrainEvaluator)
    r = ev.evaluate(TrialSpec(small_model, dataset="cifar10", root=str(tmp_path), profile=QUICK, trial_id="x"))
    assert r.status == "failed" and "DatasetNotFoundError" in r.reason and "dataset=digits" in r.reason
    r = ev.evaluate(TrialSpec(small_model, dataset="mnist", profile=QUICK))
    assert r.status == "failed" and "digits" in r.reason
    r = ev.evaluate(TrialSpec(small_model, profile="nonesuch"))
    assert r.status == "failed" and "unknown trainer profile" in r.reason
    with pytest.raises(KeyError, match="valid names: train"):
        make_evaluator("nope")


def test_pool_survives_killed_and_hung_workers(tmp_path: Path) -> None:
    root = write_tiny_cifar10(tmp_path / "data")
    cifar = dict(dataset="cifar10", root=root, profile=QUICK.model_copy(update={"batch_size": 16}))
    model = functools.partial(small_model, 4, 3)
    trials = [
        TrialSpec(hanging_model, trial_id="hung", time_limit_s=1.0, **cifar),
        TrialSpec(model, seed=0, trial_id="ok-0", **cifar),
        TrialSpec(suicidal_model, trial_id="killed", out=str(tmp_path / "killed.json"), **cifar),
        TrialSpec(lambda: small_model(), trial_id="lambda", **cifar),
        TrialSpec(functools.partial(small_model, 3, 3), seed=1, trial_id="ok-1", **cifar),
    ]
    res = make_launcher("pool", workers=2, grace_s=1.0).run(trials)
    by = {r.trial_id: r for r in res}
    assert [r.trial_id for r in res] == [s.trial_id for s in trials]
    assert by["ok-0"].ok and by["ok-1"].ok, (by["ok-0"].reason, by["ok-1"].reason)
    assert by["killed"].status == "failed" and "SIGKILL" in by["killed"].reason
    assert TrialResult.read_json(tmp_path / "killed.json").reason == by["killed"].reason
    assert by["hung"].status == "failed" and "time limit of 1s exceeded" in by["hung"].reason
    assert by["lambda"].status == "failed" and "cannot start worker" in by["lambda"].reason
    # the same seed gives the same numbers in a worker as here (both on one thread: a different
    # thread count may change float summation order)
    here = InProcessLauncher().run([trials[1]])[0]
    assert here.final_valid_acc == by["ok-0"].final_valid_acc
    assert [m.train_loss for m in here.epochs] == [m.train_loss for m in by["ok-0"].epochs]
