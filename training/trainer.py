"""A lean training loop for the NB201 protocol.

The dataset sits on the training device as uint8; batches come from a seeded permutation and are
augmented there (training/augment.py), so there are no DataLoader workers and no host-device copies
per step. `Trainer` owns one run's state and its step; `train()` wraps it so that every failure
(NaN/Inf loss, an exception in the model, CUDA OOM, the time limit) comes back as a failed result.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from graphs.atomic import atomic_path

from .augment import Normalizer, random_crop_flip, sample_offsets
from .datasets import ImageDataset, Split
from .profiles import TrainerProfile, get_profile
from .results import EpochMetrics, TrialResult

__all__ = ["ModelSource", "TrainingFailure", "Trainer", "train", "resolve_device"]

ModelSource = Union[nn.Module, Callable[[], nn.Module]]


# Seeding and building a model must not interleave with another thread's: weights stay a function
# of the seed when trainings of trials side by side run in threads of one process.
_SEEDED_BUILD = threading.Lock()

class TrainingFailure(Exception):
    """A run that cannot go on; `train()` turns it into a failed result with this message."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def _determinism(on: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the run, then restore the caller's global settings."""
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    try:
        if on:
            # warn_only: a kernel without a deterministic variant must not fail the trial.
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench


def _accuracy_pct(correct: float, n: int) -> float:
    return 100.0 * correct / max(n, 1)


class Trainer:
    """One training run. Use `run()`, or drive `batches()` and `train_step()` yourself (the throughput bench does)."""

    def __init__(self, model: nn.Module, data: ImageDataset, profile: TrainerProfile, *, seed: int = 0,
                 device: str | torch.device | None = None, time_limit_s: float | None = None) -> None:
        self.profile = profile
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.data = data.subset(profile.subset)
        if len(self.data.train) < 2:
            raise TrainingFailure(f"training split has {len(self.data.train)} examples; need at least 2")
        # channels_last by default: faster for convs on CUDA and, measured with the bench, on CPU too
        self.channels_last = True if profile.channels_last is None else profile.channels_last
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=fmt)
        self.step_model = self.model  # replaced by a compiled wrapper when the profile asks for it
        self.norm = Normalizer(data.mean, data.std, self.device, channels_last=self.channels_last)
        self.train_x = self.data.train.x.to(self.device)
        self.train_y = self.data.train.y.to(self.device)
        self._on_device: dict[int, Split] = {}  # evaluation splits, moved once
        self.gen = torch.Generator().manual_seed(self.seed)  # data order and augmentation
        n, bs = len(self.data.train), profile.batch_size
        # A final batch of one sample is dropped: BatchNorm cannot train on it.
        self.steps_per_epoch = n // bs + (1 if n % bs >= 2 else 0)
        self.total_steps = self.steps_per_epoch * profile.epochs
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=profile.lr, momentum=profile.momentum,
                                         nesterov=profile.nesterov, weight_decay=profile.weight_decay)
        self.step_count = 0
        if self.use_compile():
            self.step_model = torch.compile(self.model)  # training steps only: eval stays eager
        self.time_limit_s = time_limit_s if time_limit_s is not None else profile.time_limit_s
        self.t0 = time.perf_counter()

    # --- pieces ------------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        """Cosine annealing to zero, per step (NB201: eta_min 0, no warm-up)."""
        return 0.5 * self.profile.lr * (1.0 + math.cos(math.pi * step / max(self.total_steps, 1)))

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of augmented, normalised batches in seeded order."""
        p = self.profile
        n = self.train_x.shape[0]
        perm = torch.randperm(n, generator=self.gen).to(self.device)
        aug = sample_offsets(n, p.crop_padding, p.flip, self.gen, self.device)
        for i in range(self.steps_per_epoch):
            sl = slice(i * p.batch_size, (i + 1) * p.batch_size)
            idx = perm[sl]
            x = random_crop_flip(self.train_x[idx], p.crop_padding, aug[sl])
            yield self.norm(x), self.train_y[idx]

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step; returns (summed loss, correct count) as device tensors (no host sync)."""
        lr = self.lr_at(self.step_count)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        logits = self._forward(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.profile.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        with torch.no_grad():
            return loss.detach() * y.shape[0], (logits.argmax(1) == y).sum()

    def use_compile(self) -> bool:
        c = self.profile.compile
        return c if c is not None else self.total_steps >= 1000

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.step_model(x)
        except Exception as exc:  # noqa: BLE001 - a compiler that fails here must not fail the design
            from torch._dynamo.exc import TorchDynamoException

            if self.step_model is self.model or not isinstance(exc, TorchDynamoException):
                raise
            self.step_model = self.model
            return self.model(x)

    @torch.no_grad()
    def evaluate(self, split: Split) -> float:
        """Accuracy (percent) on a split, unaugmented, in eval mode."""
        if id(split) not in self._on_device:
            self._on_device[id(split)] = Split(split.x.to(self.device), split.y.to(self.device))
        dev_split = self._on_device[id(split)]
        self.model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        bs = self.profile.eval_batch_size
        for i in range(0, len(split), bs):
            correct += (self.model(self.norm(dev_split.x[i:i + bs])).argmax(1) == dev_split.y[i:i + bs]).sum()
        self.model.train()
        return _accuracy_pct(float(correct.item()), len(split))

    def _check_time(self, epoch: int, step: int) -> None:
        if self.time_limit_s is not None and time.perf_counter() - self.t0 > self.time_limit_s:
            raise TrainingFailure(f"time limit of {self.time_limit_s:g}s exceeded (epoch {epoch}, step {step})")

    @staticmethod
    def _check_finite(loss_sum: torch.Tensor, epoch: int, step: int) -> None:
        if not bool(torch.isfinite(loss_sum)):
            raise TrainingFailure(f"non-finite training loss ({float(loss_sum)}) at epoch {epoch}, step {step}")

    # --- the loop ----------------------------------------------------------------------------

    def run(self, progress: bool = False, on_epoch: Callable[[EpochMetrics], None] | None = None
            ) -> tuple[list[EpochMetrics], float, int]:
        """Train all epochs; returns (history, training seconds, images trained)."""
        p = self.profile
        history: list[EpochMetrics] = []
        train_seconds, images = 0.0, 0
        self.model.train()
        with _progress(progress, p.epochs, self.steps_per_epoch) as bar:
            for epoch in range(1, p.epochs + 1):
                t_ep = time.perf_counter()
                loss_sum = torch.zeros((), device=self.device)
                correct = torch.zeros((), dtype=torch.int64, device=self.device)
                seen = 0
                for step, (x, y) in enumerate(self.batches(), 1):
                    l_, c_ = self.train_step(x, y)
                    loss_sum += l_
                    correct += c_
                    seen += y.shape[0]
                    self._check_time(epoch, step)
                    if step % p.nan_check_every == 0:  # a host sync; kept rare for the GPU's sake
                        self._check_finite(loss_sum, epoch, step)
                    bar.advance()
                self._check_finite(loss_sum, epoch, self.steps_per_epoch)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                train_seconds += time.perf_counter() - t_ep
                images += seen
                m = EpochMetrics(epoch=epoch, train_loss=float(loss_sum) / seen,
                                 train_acc=_accuracy_pct(float(correct), seen),
                                 valid_acc=self.evaluate(self.data.valid), lr=self.lr_at(self.step_count),
                                 seconds=time.perf_counter() - t_ep)
                history.append(m)
                bar.epoch_done(m)
                if on_epoch is not None:
                    on_epoch(m)
                self._check_time(epoch, self.steps_per_epoch)
        return history, train_seconds, images


class _Bar:
    def advance(self) -> None: ...
    def epoch_done(self, m: EpochMetrics) -> None: ...


@contextlib.contextmanager
def _progress(show: bool, epochs: int, steps: int) -> Iterator[_Bar]:
    if not show:
        yield _Bar()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"))
    with Progress(*cols, transient=False) as prog:
        task = prog.add_task("epoch 1", total=steps, stats="")

        class RichBar(_Bar):
            def advance(self) -> None:
                prog.advance(task)

            def epoch_done(self, m: EpochMetrics) -> None:
                stats = f"loss {m.train_loss:.3f} train {m.train_acc:.1f}% valid {m.valid_acc:.1f}%"
                prog.update(task, description=f"epoch {m.epoch}/{epochs}", stats=stats)
                if m.epoch < epochs:
                    prog.reset(task, total=steps, description=f"epoch {m.epoch + 1}/{epochs}", stats=stats)

        yield RichBar()


def _is_oom(e: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e).lower()


def _exception_reason(e: BaseException) -> str:
    if _is_oom(e):
        return f"CUDA out of memory: {str(e).splitlines()[0][:300]}"
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"model error: {type(e).__name__}: {str(e)[:500]}{where}"


def _save_weights(net: nn.Module, path: Path) -> None:
    """Atomic, contiguous CPU tensors: loads into the exported standalone source as well."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(model: ModelSource, data: ImageDataset, profile: str | TrainerProfile = "smoke", *, seed: int = 0,
          device: str | torch.device | None = None, time_limit_s: float | None = None,
          progress: bool | None = None, out: str | Path | None = None, trial_id: str = "",
          weights: str | Path | None = None,
          on_epoch: Callable[[EpochMetrics], None] | None = None) -> TrialResult:
    """Train `model` (a module, or a zero-arg factory built here under `seed`) on `data`.

    Never raises for a failing model: NaN/Inf loss, exceptions in the model, CUDA OOM and the time
    limit give `status="failed"` with a reason. `out` is a JSON path the result is written to;
    `weights`, a path for the trained state dict (written only when training succeeded).
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    prof = get_profile(profile)
    show = sys.stdout.isatty() if progress is None else progress
    base = dict(trial_id=trial_id, dataset=data.name, profile=prof.name, full_protocol=prof.full_protocol,
                seed=int(seed), split_seed=data.split_seed, device=str(dev))
    history: list[EpochMetrics] = []
    trainer: Trainer | None = None
    net: nn.Module | None = None
    try:
        with _determinism(prof.deterministic, dev):
            with _SEEDED_BUILD:  # trials side by side in threads share torch's global generator
                torch.manual_seed(seed)  # weight init of a factory-built model, dropout masks
                net = model() if not isinstance(model, nn.Module) else model
            if not isinstance(net, nn.Module):
                raise TrainingFailure(f"model factory returned {type(net).__name__}, not a torch.nn.Module")
            base["params"] = sum(p.numel() for p in net.parameters())
            trainer = Trainer(net, data, prof, seed=seed, device=dev, time_limit_s=time_limit_s)
            def epoch_done(m: EpochMetrics) -> None:
                history.append(m)
                if on_epoch is not None:  # e.g. the run's live display
                    on_epoch(m)

            _, train_s, images = trainer.run(progress=show, on_epoch=epoch_done)
            best = max(history, key=lambda m: m.valid_acc)
            result = TrialResult(status="ok", **base, epochs=history, final_valid_acc=history[-1].valid_acc,
                                 final_test_acc=trainer.evaluate(trainer.data.test), best_epoch=best.epoch,
                                 best_valid_acc=best.valid_acc, wall_time_s=time.perf_counter() - t0,
                                 train_time_s=train_s, images_per_s=images / train_s if train_s > 0 else None)
            if weights is not None:
                _save_weights(net, Path(weights))
    except TrainingFailure as e:
        result = TrialResult(status="failed", reason=str(e), **base, epochs=history,
                             wall_time_s=time.perf_counter() - t0)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - anything the model does wrong is this trial's result
        result = TrialResult(status="failed", reason=_exception_reason(e), **base, epochs=history,
                             wall_time_s=time.perf_counter() - t0)
    finally:
        trainer = net = None
        if dev.type == "cuda":
            torch.cuda.empty_cache()  # an OOM'd trial must not starve the next one
    if out is not None:
        result.write_json(out)
    return result
