"""Training-step throughput: our trainer against NB201's style of input pipeline, in one run.

Ours:      uint8 data resident on the device, batched crop/flip/normalise (training/augment.py),
           channels_last unless the profile or --channels-last says otherwise; measured without and
           with torch.compile of the model for the training step (--compile), labelled.
Reference: torch.utils.data.DataLoader with 2 workers over a Dataset that crops (pad 4), flips and
           normalises one sample at a time, feeding a default-layout eager model (what NB201's code does).

All train the same model (fresh copy, same init) with the same optimiser (SGD nesterov 0.9,
lr 0.1 cosine, wd 5e-4), batch 256, fp32, on 50k synthetic uint8 32x32x3 images, with
torch.set_num_threads(all cores) in the main process (the reference's 2 workers compete for the same
cores, as they do in NB201). Each pipeline is built once; --repeats runs every pipeline's warm-up +
timed steps again, alternating the order, and the report takes the median of the per-repeat medians,
so a machine whose load drifts hurts all pipelines alike. torch.compile's compile time is paid in the
first step and reported separately; it is never part of a steady-state figure.

    python bench/train_throughput.py [--steps 12] [--warmup 3] [--repeats 3] [--compile both|on|off]
                                     [--model pkg.mod:factory] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from training.datasets import ImageDataset, Split  # noqa: E402
from training.profiles import PROFILES  # noqa: E402
from training.trainer import Trainer  # noqa: E402

NB201_RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


# --- models ----------------------------------------------------------------------------------


def _relu_conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class _ResNetCell(nn.Module):
    """NB201's ResNet cell: n1 = conv(x); n2 = x + conv(n1); out = x + n2."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.a, self.b = _relu_conv_bn(c, c), _relu_conv_bn(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (x + self.b(self.a(x)))


class _Reduction(nn.Module):
    """NB201's ResNet basic block, stride 2, avg-pool + 1x1 conv shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.a, self.b = _relu_conv_bn(cin, cout, 2), _relu_conv_bn(cout, cout)
        self.short = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.short(x) + self.b(self.a(x))


class NB201ResNetStandIn(nn.Module):
    """Plain-torch NB201 skeleton (C=16, N=5) with the ResNet cell, for when graphs/ is absent."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, c: int = 16, n: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)]
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage:
                layers.append(_Reduction(width // 2, width))
            layers += [_ResNetCell(width) for _ in range(n)]
        layers += [nn.BatchNorm2d(4 * c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * c, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def default_model(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """The nb201 skeleton with the ResNet cell via graphs/ (CIFAR-10 shape) when it is importable,
    else the stand-in."""
    try:
        from graphs.compile import build_model
        from graphs.nb201 import arch_to_block

        built = build_model(arch_to_block(NB201_RESNET), macro="nb201", dataset="cifar10")
        return built if isinstance(built, nn.Module) else built.module  # a Compiled wraps the module
    except Exception as e:  # noqa: BLE001 - any mismatch falls back, loudly
        print(f"WARNING: graphs/ model unavailable ({type(e).__name__}: {e}); "
              "using the plain-torch NB201 ResNet stand-in", file=sys.stderr)
        return NB201ResNetStandIn(num_classes, in_channels)


def load_factory(path: str):
    mod, _, name = path.partition(":")
    return getattr(importlib.import_module(mod), name or "model")


# --- reference pipeline ----------------------------------------------------------------------


class PerSampleAugmentDataset(torch.utils.data.Dataset):
    """NB201's transform chain, one sample at a time: RandomCrop(32, padding=4), flip, ToTensor, Normalize."""

    def __init__(self, x_hwc: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x_hwc, y  # uint8 (N,H,W,C), as torchvision datasets hold CIFAR
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = self.x[i].permute(2, 0, 1).float().div_(255)  # ToTensor
        img = F.pad(img, (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        img = img[:, top:top + 32, left:left + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(2)
        return (img - self.mean) / self.std, self.y[i]


def _timed_steps(step_iter, steps: int, warmup: int, batch: int, sync) -> tuple[list[float], float]:
    """(images/s of each step after warm-up, seconds of the first step). Timed end to end: a step that
    waits for its data pays for the wait."""
    rates, first = [], 0.0
    t = time.perf_counter()
    for k in range(warmup + steps):
        next(step_iter)
        sync()
        now = time.perf_counter()
        if k == 0:
            first = now - t
        if k >= warmup:
            rates.append(batch / (now - t))
        t = now
    return rates, first


def reference_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch: int,
                    total: int):
    """NB201's loop: DataLoader (2 workers, per-sample transforms) feeding an eager default-layout model."""
    ds = PerSampleAugmentDataset(x.permute(0, 2, 3, 1).contiguous(), y)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=2, drop_last=True,
                                         pin_memory=device.type == "cuda", persistent_workers=True)
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    k = 0
    while True:
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            for g in opt.param_groups:
                g["lr"] = 0.05 * (1 + math.cos(math.pi * k / total))
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            k += 1
            yield


def ours_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch: int,
               channels_last: bool | None, compile_model: bool):
    """training.trainer.Trainer's own batches() and train_step(). With compile_model, the profile's
    `compile` field is on, so the trainer's steps run torch.compile of its model."""
    split = Split(x, y)
    data = ImageDataset("synthetic-cifar", split, Split(x[:2], y[:2]), Split(x[:2], y[:2]), 10, MEAN, STD, 0)
    profile = PROFILES["nb201"].model_copy(update={"batch_size": batch, "channels_last": channels_last,
                                                   "deterministic": False, "compile": compile_model})
    tr = Trainer(model, data, profile, seed=0, device=device)
    layout = "channels_last" if tr.channels_last else "contiguous"

    def gen():
        while True:
            for xb, yb in tr.batches():
                tr.train_step(xb, yb)
                yield

    return gen(), layout, tr


def input_cost(tr: Trainer, x: torch.Tensor, y: torch.Tensor, batch: int, n: int = 5) -> tuple[float, float]:
    """Median ms to produce one augmented, normalised batch: ours (one batched gather on uint8 + fused
    normalise) and the reference's per-sample transform chain (one process, no workers)."""
    ours, ref = [], []
    it = tr.batches()
    next(it)  # the epoch's permutation and crop/flip draws: once per epoch, not per batch
    ds = PerSampleAugmentDataset(x[: batch * n].permute(0, 2, 3, 1).contiguous(), y[: batch * n])
    for i in range(n):
        t = time.perf_counter()
        next(it)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        torch.utils.data.default_collate([ds[j] for j in range(i * batch, (i + 1) * batch)])
        ref.append(time.perf_counter() - t)
    return 1000 * statistics.median(ours), 1000 * statistics.median(ref)


def _load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per pipeline and repeat (>= 10 for the report)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1, help="rounds over all pipelines, order alternating")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--model", default=None, help="zero-arg factory 'pkg.module:function' (default: nb201 ResNet)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    ap.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                    help="layout for our trainer (auto: the trainer's default, channels_last)")
    ap.add_argument("--compile", choices=["off", "on", "both"], default="both",
                    help="our trainer without / with torch.compile of the model (both: two labelled rows)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (args.images,), generator=g)

    torch.manual_seed(0)
    model = load_factory(args.model)() if args.model else default_model()
    params = sum(p.numel() for p in model.parameters())
    cl = {"auto": None, "on": True, "off": False}[args.channels_last]
    total = (args.steps + args.warmup) * args.repeats

    pipes: dict[str, tuple] = {"reference": (reference_steps(copy.deepcopy(model), x, y, device, args.batch, total),
                                             "contiguous")}
    trainer = None
    for comp in {"off": [False], "on": [True], "both": [False, True]}[args.compile]:
        it, layout, tr = ours_steps(copy.deepcopy(model), x, y, device, args.batch, cl, comp)
        pipes["ours+compile" if comp else "ours"] = (it, layout)
        trainer = trainer or tr
    print(f"device {device}, threads {torch.get_num_threads()}, cpu_count {os.cpu_count()}, torch {torch.__version__}, "
          f"model {type(model).__name__} ({params:,} params), batch {args.batch}, fp32, {args.steps} timed steps "
          f"after {args.warmup} warm-up x {args.repeats} repeat(s), {args.images} images; {_load()} at start",
          flush=True)

    medians: dict[str, list[float]] = {k: [] for k in pipes}
    rates: dict[str, list[float]] = {k: [] for k in pipes}
    first_step: dict[str, float] = {}
    names = list(pipes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rep in range(args.repeats):
            for name in (names if rep % 2 == 0 else names[::-1]):
                r, first = _timed_steps(pipes[name][0], args.steps, args.warmup, args.batch, sync)
                first_step.setdefault(name, first)
                medians[name].append(statistics.median(r))
                rates[name] += r
                print(f"  repeat {rep + 1} {name:<13} median {medians[name][-1]:8.1f} img/s  ({_load()})", flush=True)

    med = {k: statistics.median(v) for k, v in medians.items()}
    print(f"{'pipeline':<14}{'median img/s':>14}{'min':>9}{'max':>9}  {'first step s':>12}  layout")
    for k in names:
        print(f"{k:<14}{med[k]:>14.1f}{min(rates[k]):>9.1f}{max(rates[k]):>9.1f}  {first_step[k]:>12.1f}  {pipes[k][1]}")
    for k in names[1:]:
        print(f"ratio {k}/reference: {med[k] / med['reference']:.2f}")
    if device.type == "cpu" and trainer is not None:
        ours_ms, ref_ms = input_cost(trainer, x, y, args.batch)
        print(f"input pipeline per batch of {args.batch} (one process): ours {ours_ms:.1f} ms, "
              f"reference per-sample transforms {ref_ms:.1f} ms")
    print(f"{_load()} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
