"""Batched crop/flip/normalise against a per-sample reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.augment import CropFlip, Normalizer, random_crop_flip, sample_offsets


def _images(b=6, c=3, h=8, w=10) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_matches_per_sample_crop_and_flip() -> None:
    x, pad = _images(), 4
    p = sample_offsets(x.shape[0], pad, True, torch.Generator().manual_seed(1))
    out = random_crop_flip(x, pad, p)
    assert out.shape == x.shape and out.dtype == torch.uint8
    xp = F.pad(x, (pad,) * 4)
    for i in range(x.shape[0]):
        t, l_ = int(p.top[i]), int(p.left[i])
        ref = xp[i, :, t:t + x.shape[2], l_:l_ + x.shape[3]]
        assert torch.equal(out[i], ref.flip(2) if p.flip[i] else ref)


def test_identity_and_pure_flip() -> None:
    x = _images()
    zero = torch.zeros(x.shape[0], dtype=torch.long)
    assert torch.equal(random_crop_flip(x, 0, CropFlip(zero, zero, torch.zeros(6, dtype=torch.bool))), x)
    assert torch.equal(random_crop_flip(x, 0, CropFlip(zero, zero, torch.ones(6, dtype=torch.bool))), x.flip(3))
    four = torch.full((6,), 4)
    assert torch.equal(random_crop_flip(x, 4, CropFlip(four, four, torch.zeros(6, dtype=torch.bool))), x)


def test_seeded_offsets_are_deterministic() -> None:
    a = sample_offsets(100, 4, True, torch.Generator().manual_seed(7))
    b = sample_offsets(100, 4, True, torch.Generator().manual_seed(7))
    assert torch.equal(a.top, b.top) and torch.equal(a.left, b.left) and torch.equal(a.flip, b.flip)
    assert int(a.top.min()) >= 0 and int(a.top.max()) <= 8 and 0 < int(a.flip.sum()) < 100
    assert not sample_offsets(100, 4, False, torch.Generator().manual_seed(7)).flip.any()


def test_normalizer() -> None:
    x = _images()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out = Normalizer(mean, std)(x)
    ref = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and torch.allclose(out, ref, atol=1e-5)
    cl = Normalizer(mean, std, channels_last=True)(x)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.allclose(cl, ref, atol=1e-5)
