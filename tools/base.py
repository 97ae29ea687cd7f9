"""Typed tools: one pydantic argument model in, one pydantic result out. Expected failures come
back as results with `ok=False` and an error text the model can act on; nothing escapes as an
exception into the agent loop."""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Generic, TypeVar

from autogen_core import CancellationToken
from autogen_core.tools import BaseTool
from pydantic import BaseModel

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


class ToolResult(BaseModel):
    ok: bool = True
    error: str | None = None


class TypedTool(BaseTool[A, R], Generic[A, R]):
    """A tool whose behaviour is a plain function `fn(args) -> result`, passed in."""

    def __init__(self, name: str, description: str, args_type: type[A], result_type: type[R],
                 fn: Callable[[A], R | Awaitable[R]]):
        super().__init__(args_type, result_type, name, description)
        self._fn = fn

    async def run(self, args: A, cancellation_token: CancellationToken) -> R:
        try:
            out = self._fn(args)
            if hasattr(out, "__await__"):
                out = await out
            return out
        except Exception as exc:  # noqa: BLE001 - a tool failure is a result the model reads
            return self.return_type(ok=False, error=f"{type(exc).__name__}: {exc}")

    def return_value_as_string(self, value: Any) -> str:
        return value.model_dump_json(exclude_none=True) if isinstance(value, BaseModel) else str(value)
