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

    @property
    def schema(self):
        # Sent with every model call that offers the tool: pydantic's titles and the discriminator
        # mapping repeat what the names and `kind` constants already say.
        out = dict(super().schema)
        out["parameters"] = _compact(out["parameters"])
        return out

    def return_value_as_string(self, value: Any) -> str:
        return value.model_dump_json(exclude_none=True) if isinstance(value, BaseModel) else str(value)


def _compact(node: Any, in_properties: bool = False) -> Any:
    """A JSON schema without `title` and `discriminator` keywords (a property that is named
    "title" is kept: inside `properties` the keys are field names, not keywords)."""
    if isinstance(node, list):
        return [_compact(x) for x in node]
    if not isinstance(node, dict):
        return node
    return {k: _compact(v, k == "properties") for k, v in node.items()
            if in_properties or k not in ("title", "discriminator")}
