"""Batched augmentation on uint8 image tensors, on whatever device they live on.

Random crop with zero padding and horizontal flip are one gather with per-sample index arithmetic
(no Python loop over samples); it runs on uint8, so the gather moves a quarter of the bytes of a
float gather. Normalisation then fuses the uint8 -> float conversion with a multiply-add.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Normalizer", "random_crop_flip", "sample_offsets", "CropFlip"]


class Normalizer:
    """uint8 (B,C,H,W) -> float ((x/255 - mean) / std), optionally channels_last."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device | str = "cpu",
                 channels_last: bool = False, dtype: torch.dtype = torch.float32) -> None:
        m = torch.tensor(mean, dtype=dtype, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=dtype, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * s)
        self.shift = -m / s
        self.channels_last = channels_last
        self.dtype = dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addcmul(self.shift, x.to(self.dtype), self.scale)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out


@dataclass(frozen=True)
class CropFlip:
    """Per-sample parameters: top/left offsets in the padded image, and the flip flags."""

    top: torch.Tensor  # int64 (B,), in [0, 2*pad]
    left: torch.Tensor
    flip: torch.Tensor  # bool (B,)

    def __getitem__(self, sl: slice) -> "CropFlip":
        return CropFlip(self.top[sl], self.left[sl], self.flip[sl])


def sample_offsets(n: int, pad: int, flip: bool, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> CropFlip:
    """Draw the parameters on the CPU generator (identical streams on every device), then move them."""
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return CropFlip(top.to(device, non_blocking=True), left.to(device, non_blocking=True),
                    flips.to(device, non_blocking=True))


def random_crop_flip(x: torch.Tensor, pad: int, params: CropFlip) -> torch.Tensor:
    """Crop each image of `x` (B,C,H,W) from its zero-padded version at its own offset, flipping
    where asked. Equivalent to torchvision's RandomCrop(padding=pad) + RandomHorizontalFlip."""
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad)) if pad else x
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = params.top[:, None] + ar_h  # (B,H)
    # A flip reads columns right-to-left from the same crop window.
    cols = params.left[:, None] + torch.where(params.flip[:, None], (w - 1) - ar_w, ar_w)  # (B,W)
    # Flat index into each padded image: one gather over (B, C, H*W).
    hp, wp = h + 2 * pad, w + 2 * pad
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return xp.reshape(b, c, hp * wp).gather(2, flat).reshape(b, c, h, w)
