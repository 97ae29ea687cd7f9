"""An independent MAC counter for tests: forward hooks on a built module, applying thop's rules
to the tensors that really flow (not the analytic shapes)."""
from __future__ import annotations

import torch
from torch import nn

from graphs import torch_ops


def _conv(m: nn.Conv2d, ins, out) -> int:
    kh, kw = m.kernel_size
    return out.numel() * (ins[0].shape[1] // m.groups) * kh * kw


def _adaptive(m, ins, out) -> int:
    kh, kw = ins[0].shape[-2] // out.shape[-2], ins[0].shape[-1] // out.shape[-1]
    return (kh * kw + 1) * out.numel()


RULES = {
    nn.Conv2d: _conv,
    nn.BatchNorm2d: lambda m, ins, out: 4 * ins[0].numel(),
    nn.Linear: lambda m, ins, out: m.in_features * out.numel(),
    nn.AvgPool2d: lambda m, ins, out: out.numel(),
    nn.AdaptiveAvgPool2d: _adaptive,
    nn.LayerNorm: lambda m, ins, out: 2 * ins[0].numel(),
    torch_ops.MatMul: lambda m, ins, out: out.numel() * ins[0].shape[-1],
}


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(m, ins, out):
        nonlocal total
        rule = RULES.get(type(m))
        if rule is not None:
            total += rule(m, ins, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total
