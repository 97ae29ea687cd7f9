"""Tensor shapes for inference: dimensions plus a tag per axis saying what it holds.

Tags let the validator tell channels from spatial axes after permutes and reshapes:
B batch, C channels, S spatial, ? anything else.
"""
from __future__ import annotations

from dataclasses import dataclass

from .dims import Dim, readable_shape


@dataclass(frozen=True, slots=True)
class TShape:
    dims: tuple[Dim, ...]
    tags: tuple[str, ...]

    @property
    def rank(self) -> int:
        return len(self.dims)

    def same(self, other: "TShape") -> bool:
        return len(self.dims) == len(other.dims) and all(a.eq(b) for a, b in zip(self.dims, other.dims))

    def numel(self, index: int = 0) -> int:
        """Element count at one assignment (index 0: batch 1 in concrete evaluation)."""
        n = 1
        for d in self.dims:
            n *= d.vals[index]
        return n

    def show(self, env: dict[str, Dim]) -> str:
        return readable_shape(self.dims, env)


class ShapeError(Exception):
    """Raised by a shape or parameter rule; the validator turns it into an Issue."""

    def __init__(self, code, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


# Fixed assignments for validation: unrelated values so that no literal passes for a symbol.
_VALIDATION = (
    {"B": 2, "C": 48, "dim": 80, "H": 16, "W": 16},
    {"B": 3, "C": 80, "dim": 112, "H": 12, "W": 8},
)


def validation_env(kind: str) -> dict[str, Dim]:
    """Symbol values for validating a block of `kind`, one entry per assignment."""
    rows = [dict(a) for a in _VALIDATION]
    for r in rows:
        if kind == "base":
            r["dim"] = r["C"]
        elif kind == "stem":
            r["C"] = 3
    return {k: Dim(tuple(r[k] for r in rows)) for k in rows[0]}


def concrete_env(c_in: int, c_out: int, h: int, w: int) -> dict[str, Dim]:
    """Symbol values for building at real widths. Batch runs over 1,2,3 so that shape
    expressions in B can be compiled as a*B+b; index 0 (batch 1) gives per-image costs."""
    return {"B": Dim((1, 2, 3)), "C": Dim.const(c_in, 3), "dim": Dim.const(c_out, 3),
            "H": Dim.const(h, 3), "W": Dim.const(w, 3)}


def input_shape(env: dict[str, Dim]) -> TShape:
    return TShape((env["B"], env["C"], env["H"], env["W"]), ("B", "C", "S", "S"))
