"""PyTorch modules for the ops that torch.nn lacks as modules; registry entries name them
(`module="AddN"`). This file imports only torch: exported model sources embed these classes
verbatim, so they must stand alone."""
import torch
from torch import nn


class AddN(nn.Module):
    """Sum of any number of inputs (broadcasting)."""

    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class MulN(nn.Module):
    """Elementwise product of any number of inputs (broadcasting)."""

    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class MatMul(nn.Module):
    """Matrix product of two inputs, in order."""

    def forward(self, a, b):
        return torch.matmul(a, b)


class Concat(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Reduce(nn.Module):
    """mean, sum or amax over dims, keeping them."""

    def __init__(self, how, dims):
        super().__init__()
        self.how = how
        self.dims = tuple(dims)

    def forward(self, x):
        return getattr(torch, self.how)(x, dim=self.dims, keepdim=True)

    def extra_repr(self):
        return f"{self.how}, dims={self.dims}"


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x.permute(*self.dims)

    def extra_repr(self):
        return f"dims={self.dims}"


class Reshape(nn.Module):
    """Each target size is a*B+b, since the block text may name the batch size B."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = tuple(tuple(p) for p in sizes)

    def forward(self, x):
        return x.reshape([a * x.shape[0] + b for a, b in self.sizes])

    def extra_repr(self):
        return f"sizes(a*B+b)={self.sizes}"


class Repeat(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.sizes = tuple(tuple(p) for p in sizes)

    def forward(self, x):
        return x.repeat([a * x.shape[0] + b for a, b in self.sizes])

    def extra_repr(self):
        return f"sizes(a*B+b)={self.sizes}"


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's whole path with probability p and rescale."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype) < keep
        return x * mask / keep

    def extra_repr(self):
        return f"p={self.p}"


class Zero(nn.Module):
    """All zeros in the input's shape (an NB201 cell whose output receives only `none`)."""

    def forward(self, x):
        return torch.zeros_like(x)

