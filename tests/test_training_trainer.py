"""Trainer: reproducibility, metrics, and failures returned as results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from training.datasets import load_dataset
from training.profiles import PROFILES
from training.results import TrialResult
from training.trainer import Trainer, train

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = PROFILES["smoke"].model_copy(update={"epochs": 2, "batch_size": 32, "subset": 256})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


class TinyNet(nn.Module):
    def __init__(self, in_channels: int = 3, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes))

    def forward(self, x):
        return self.body(x)


class NaNNet(TinyNet):
    """Softmax of a huge product: inf - inf inside softmax gives NaN."""

    def forward(self, x):
        h = self.body(x)
        return torch.softmax(h * h * 1e38 * 1e38, dim=1) * 0 + torch.softmax(h * 1e38 - h * 1e38 + h * 1e38 * 1e38, 1)


class Broken(TinyNet):
    def forward(self, x):
        raise RuntimeError("shapes do not match")


class Slow(TinyNet):
    def forward(self, x):
        time.sleep(0.05)
        return super().forward(x)


class FakeOOM(TinyNet):
    def forward(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_trains_and_writes_json(digits, tmp_path: Path) -> None:
    out = tmp_path / "m" / "metrics.json"
    r = train(TinyNet, digits, TINY, seed=1, out=out, trial_id="0001")
    assert r.status == "ok" and r.reason is None, r.reason
    assert [m.epoch for m in r.epochs] == [1, 2]
    assert 0 <= r.final_valid_acc <= 100 and 0 <= r.final_test_acc <= 100
    assert r.final_valid_acc == r.epochs[-1].valid_acc and r.best_epoch in (1, 2)
    assert r.images_per_s > 0 and r.wall_time_s >= r.train_time_s > 0
    assert r.split_seed == 0 and r.profile == "smoke" and not r.full_protocol and r.device == "cpu"
    assert r.params == sum(p.numel() for p in TinyNet().parameters())
    assert r.epochs[-1].lr == pytest.approx(0.0, abs=1e-12)
    assert TrialResult.read_json(out) == r
    assert json.loads(out.read_text())["trial_id"] == "0001"


def test_same_seed_same_numbers(digits) -> None:
    a = train(TinyNet, digits, TINY, seed=3)
    b = train(TinyNet, digits, TINY, seed=3)
    c = train(TinyNet, digits, TINY, seed=4)
    strip = lambda r: [(m.train_loss, m.train_acc, m.valid_acc) for m in r.epochs] + [r.final_test_acc]  # noqa: E731
    assert a.ok and strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_accepts_a_module(digits) -> None:
    torch.manual_seed(0)
    assert train(TinyNet(), digits, TINY, seed=0).ok


def test_nan_loss_is_a_failed_result(digits) -> None:
    r = train(NaNNet, digits, TINY, seed=0)
    assert r.status == "failed" and "non-finite training loss" in r.reason
    assert r.final_valid_acc is None


@pytest.mark.parametrize("model, needle", [(Broken, "model error: RuntimeError: shapes do not match"),
                                           (FakeOOM, "CUDA out of memory"),
                                           (lambda: "not a module", "not a torch.nn.Module")])
def test_model_errors_are_failed_results(digits, model, needle) -> None:
    r = train(model, digits, TINY, seed=0)
    assert r.status == "failed" and needle in r.reason


def test_time_limit_is_a_failed_result(digits) -> None:
    t = time.perf_counter()
    r = train(Slow, digits, TINY, seed=0, time_limit_s=0.3)
    assert r.status == "failed" and "time limit of 0.3s exceeded" in r.reason
    assert time.perf_counter() - t < 5


def test_global_determinism_settings_restored(digits) -> None:
    before = torch.are_deterministic_algorithms_enabled()
    train(TinyNet, digits, TINY, seed=0)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_progress_bar_runs(digits, capsys) -> None:
    assert train(TinyNet, digits, TINY.model_copy(update={"epochs": 1}), seed=0, progress=True).ok


def test_schedule_and_batches(digits) -> None:
    tr = Trainer(TinyNet(), digits, TINY, seed=0)
    assert tr.steps_per_epoch == 8 and tr.total_steps == 16
    assert tr.lr_at(0) == pytest.approx(0.1) and tr.lr_at(8) == pytest.approx(0.05) and tr.lr_at(16) == 0
    xs = [x for x, _ in tr.batches()]
    assert len(xs) == 8 and xs[0].shape == (32, 3, 8, 8) and xs[0].dtype == torch.float32
    opt = tr.optimizer.param_groups[0]
    assert opt["nesterov"] and opt["momentum"] == 0.9 and opt["weight_decay"] == 5e-4


@pytest.mark.slow
def test_smoke_profile_nb201_resnet_standin_reaches_90(digits) -> None:
    """The smoke profile's sizing, checked on the plain-torch NB201 ResNet skeleton of the bench."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("bench_train_throughput", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = train(lambda: mod.NB201ResNetStandIn(digits.num_classes, digits.channels), digits, "smoke", seed=0)
    assert r.ok and r.final_valid_acc >= 90, (r.reason, [m.valid_acc for m in r.epochs])
