"""A dimension evaluated at several assignments of the block symbols at once.

Shape inference runs on these instead of plain ints, so one pass covers every assignment and
two dimensions are equal only when they agree everywhere: a literal `32` never passes for `C`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dim:
    vals: tuple[int, ...]

    @staticmethod
    def const(value: int, width: int) -> "Dim":
        return Dim((value,) * width)

    @property
    def is_const(self) -> bool:
        return all(v == self.vals[0] for v in self.vals)

    @property
    def value(self) -> int:
        """The single value of a constant dimension (the first one otherwise)."""
        return self.vals[0]

    def _other(self, other: "Dim | int") -> tuple[int, ...]:
        return other.vals if isinstance(other, Dim) else (other,) * len(self.vals)

    def __add__(self, o):  # noqa: D105
        return Dim(tuple(a + b for a, b in zip(self.vals, self._other(o))))

    __radd__ = __add__

    def __sub__(self, o):  # noqa: D105
        return Dim(tuple(a - b for a, b in zip(self.vals, self._other(o))))

    def __mul__(self, o):  # noqa: D105
        return Dim(tuple(a * b for a, b in zip(self.vals, self._other(o))))

    __rmul__ = __mul__

    def __floordiv__(self, o):  # noqa: D105
        return Dim(tuple(a // b for a, b in zip(self.vals, self._other(o))))

    def __mod__(self, o):  # noqa: D105
        return Dim(tuple(a % b for a, b in zip(self.vals, self._other(o))))

    def __neg__(self):  # noqa: D105
        return Dim(tuple(-a for a in self.vals))

    def eq(self, o: "Dim | int") -> bool:
        return self.vals == self._other(o)

    def any_le(self, bound: int) -> bool:
        return any(v <= bound for v in self.vals)


# Names tried, in order, when a dimension is shown to a person.
_READABLE = ("B", "C", "dim", "H", "W", "H/2", "W/2", "2*C", "4*C", "C/2", "C/4", "C/8", "C/16",
             "3*C", "8*C", "2*dim", "4*dim", "dim/2", "dim/4", "H*W", "H*W/4", "C*H*W", "C+dim", "2*H", "2*W",
             "H/4", "W/4")


def readable(d: Dim, env: dict[str, Dim]) -> str:
    """Render a dimension as the simplest symbolic name that matches it at every assignment."""
    if d.is_const:
        return str(d.value)
    for text in _READABLE:
        try:
            if _eval_simple(text, env).eq(d):
                return text
        except (KeyError, ZeroDivisionError):
            continue
    for k in range(2, 17):  # small multiples and fractions of the main symbols
        for s in ("C", "dim", "H", "W"):
            if s in env and (env[s] * k).eq(d):
                return f"{k}*{s}"
            if s in env and (env[s] // k).eq(d):
                return f"{s}/{k}"
    return "|".join(str(v) for v in d.vals)


def _eval_simple(text: str, env: dict[str, Dim]) -> Dim:
    # Only the fixed strings of _READABLE come through here: a product or quotient of two terms.
    for op in ("+", "/", "*"):
        if op in text:
            a, b = text.split(op, 1)
            x, y = _term(a, env), _term(b, env)
            if op == "+":
                return x + y
            return x * y if op == "*" else x // y
    return _term(text, env)


def _term(t: str, env: dict[str, Dim]):
    if t.isdigit():
        return int(t)
    if "*" in t:
        a, b = t.split("*", 1)
        return _term(a, env) * _term(b, env)
    return env[t]


def readable_shape(shape, env: dict[str, Dim]) -> str:
    return "(" + ",".join(readable(d, env) for d in shape) + ")"
