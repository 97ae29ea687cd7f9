"""Parameter values of the text format: integers, tuples, booleans, floats and integer
expressions in the block symbols. Parsed with `ast` and walked by hand: never evaluated by Python.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

from .dims import Dim

SYMBOLS = ("B", "C", "dim", "H", "W")
# Every integer literal, every constant a sub-expression folds to, and every value a parameter takes
# (see infer) lies within +-MAX_INT, so what is read also prints as text that reads back.
MAX_INT = 10**9


class ExprError(ValueError):
    """A parameter value that is not a number, tuple or expression of the block symbols."""


@dataclass(frozen=True)
class Expr:
    """An integer expression; `text` is its canonical spelling."""

    text: str
    tree: ast.expr = field(compare=False, repr=False)

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name))

    def evaluate(self, env: dict[str, Dim]) -> Dim | int:
        return _eval(self.tree, env)

    def __str__(self) -> str:
        return self.text


# A parsed value: Expr, a tuple of values, a bool or a float.
Value = object


def parse_value(text: str) -> Value:
    text = text.strip()
    if not text:
        raise ExprError("empty value")
    if len(text) > 200:
        raise ExprError("value longer than 200 characters")
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ExprError(f"cannot read {text!r} as a number, tuple or expression") from exc
    return _to_value(tree, text)


def _to_value(node: ast.expr, text: str) -> Value:
    if isinstance(node, ast.Tuple):
        if not node.elts:
            raise ExprError("empty tuple")
        return tuple(_to_value(e, text) for e in node.elts)
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in ("True", "False", "true", "false"):
        return node.id.lower() == "true"
    if isinstance(node, ast.Constant) and isinstance(node.value, float):
        if not math.isfinite(node.value):
            raise ExprError(f"{text!r} is not a finite number")
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, float):
        if not math.isfinite(node.operand.value):
            raise ExprError(f"{text!r} is not a finite number")
        return -node.operand.value
    _check(node, text)
    simple = _simplify(node, text)
    return Expr(_show(simple), simple)


def _check(node: ast.expr, text: str, depth: int = 0) -> None:
    if depth > 30:
        raise ExprError(f"expression {text!r} is nested too deeply")
    if isinstance(node, ast.Constant):
        if type(node.value) is not int:
            raise ExprError(f"{node.value!r} in {text!r} is not an integer")
        if abs(node.value) > MAX_INT:
            raise ExprError(f"{node.value} in {text!r} is out of range (|value| <= {MAX_INT:,})")
    elif isinstance(node, ast.Name):
        if node.id not in SYMBOLS:
            raise ExprError(f"unknown symbol {node.id!r} in {text!r}; valid symbols: {', '.join(SYMBOLS)}")
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv)):
            raise ExprError(f"operator in {text!r} not allowed; use + - * / ( )")
        _check(node.left, text, depth + 1)
        _check(node.right, text, depth + 1)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        _check(node.operand, text, depth + 1)
    else:
        raise ExprError(f"cannot read {text!r}: only integers, tuples and + - * / ( ) over {', '.join(SYMBOLS)}")


def _is_int(node: ast.expr, value: int | None = None) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and (value is None or node.value == value)


def _folded(value: int, text: str) -> ast.Constant:
    if abs(value) > MAX_INT:
        raise ExprError(f"{text!r} folds to {value}, which is out of range (|value| <= {MAX_INT:,})")
    return ast.Constant(value)


def _simplify(node: ast.expr, text: str) -> ast.expr:
    """Fold constants and drop identities (`C*1`, `C/1`, `C+0`), so equal values print alike.
    A folded constant outside +-MAX_INT is an error: it would print as a literal that does not read back."""
    if isinstance(node, ast.UnaryOp):
        inner = _simplify(node.operand, text)
        if _is_int(inner):
            return ast.Constant(-inner.value if isinstance(node.op, ast.USub) else inner.value)
        return inner if isinstance(node.op, ast.UAdd) else ast.UnaryOp(node.op, inner)
    if not isinstance(node, ast.BinOp):
        return node
    left, right, op = _simplify(node.left, text), _simplify(node.right, text), node.op
    if isinstance(op, ast.FloorDiv):
        op = ast.Div()
    if _is_int(left) and _is_int(right):
        a, b = left.value, right.value
        if isinstance(op, ast.Add):
            return _folded(a + b, text)
        if isinstance(op, ast.Sub):
            return _folded(a - b, text)
        if isinstance(op, ast.Mult):
            return _folded(a * b, text)
        if b != 0:
            return _folded(a // b, text)
    if isinstance(op, ast.Mult):
        if _is_int(right, 1):
            return left
        if _is_int(left, 1):
            return right
    if isinstance(op, ast.Div) and _is_int(right, 1):
        return left
    if isinstance(op, (ast.Add, ast.Sub)) and _is_int(right, 0):
        return left
    if isinstance(op, ast.Add) and _is_int(left, 0):
        return right
    return ast.BinOp(left, op, right)


_PREC = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2}


def _show(node: ast.expr, parent: int = 0, right_side: bool = False) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value) if node.value >= 0 or parent == 0 else f"({node.value})"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.UnaryOp):
        return f"-{_show(node.operand, 3)}"
    prec = _PREC[type(node.op)]
    sym = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(node.op)]
    text = f"{_show(node.left, prec)}{sym}{_show(node.right, prec, True)}"
    needs = prec < parent or (right_side and prec == parent and parent > 0)
    return f"({text})" if needs else text


def _eval(node: ast.expr, env: dict[str, Dim]) -> Dim | int:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        return -_eval(node.operand, env)
    a, b = _eval(node.left, env), _eval(node.right, env)
    if isinstance(node.op, ast.Add):
        return a + b if isinstance(a, Dim) or not isinstance(b, Dim) else b + a
    if isinstance(node.op, ast.Sub):
        return a - b if isinstance(a, Dim) or not isinstance(b, Dim) else -(b - a)
    if isinstance(node.op, ast.Mult):
        return a * b if isinstance(a, Dim) or not isinstance(b, Dim) else b * a
    # floor division, as the format defines `/`
    if isinstance(b, Dim):
        if any(v == 0 for v in b.vals):
            raise ZeroDivisionError("division by zero")
        if not isinstance(a, Dim):
            a = Dim.const(a, len(b.vals))
        return a // b
    if b == 0:
        raise ZeroDivisionError("division by zero")
    return a // b


def show_value(v: Value) -> str:
    if isinstance(v, tuple):
        return "(" + ",".join(show_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, bool):
        return "True" if v else "False"
    return str(v)
