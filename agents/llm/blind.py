"""A model client that sees a blind space (graphs.blind): every request it passes on, system
prompts, tasks, tool results and tool schemas included, is in the space's neutral op names, and
the tool calls of every answer come back in real names for the tools. It wraps the role's managed client, so the
replay cache and the usage journal hold what the model was really sent."""
from __future__ import annotations

from typing import Any, AsyncGenerator, Literal, Mapping, Optional, Sequence

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (AssistantMessage, ChatCompletionClient, CreateResult, FunctionExecutionResult,
                                 FunctionExecutionResultMessage, LLMMessage, ModelInfo, RequestUsage, SystemMessage,
                                 UserMessage)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from graphs.blind import BlindView


class BlindClient(ChatCompletionClient):
    def __init__(self, inner: ChatCompletionClient, view: BlindView):
        self.inner = inner
        self.view = view

    @property
    def model(self) -> str:
        return str(getattr(self.inner, "model", "") or "")

    # ------------------------------------------------------------------ translation
    def encode_messages(self, messages: Sequence[LLMMessage]) -> list[LLMMessage]:
        return [self._encode(m) for m in messages]

    def _encode(self, m: LLMMessage) -> LLMMessage:
        enc = self.view.encode
        if isinstance(m, (SystemMessage, UserMessage)):
            content = enc(m.content) if isinstance(m.content, str) else \
                [enc(x) if isinstance(x, str) else x for x in m.content]
            return m.model_copy(update={"content": content})
        if isinstance(m, AssistantMessage):
            content = enc(m.content) if isinstance(m.content, str) else \
                [FunctionCall(id=c.id, name=c.name, arguments=enc(c.arguments)) for c in m.content]
            return m.model_copy(update={"content": content, "thought": enc(m.thought) if m.thought else m.thought})
        if isinstance(m, FunctionExecutionResultMessage):
            return m.model_copy(update={"content": [
                FunctionExecutionResult(content=enc(r.content), name=r.name, call_id=r.call_id, is_error=r.is_error)
                for r in m.content]})
        return m

    def encode_tools(self, tools: Sequence[Tool | ToolSchema]) -> list[ToolSchema]:
        out = []
        for t in tools:
            schema = dict(t) if isinstance(t, dict) else dict(t.schema)
            name = schema.pop("name")  # a tool keeps its name: the team calls it by that name
            out.append({"name": name, **self.view.encode_value(schema)})
        return out

    def decode_result(self, result: CreateResult) -> CreateResult:
        """Tool arguments in real names for the tools; text stays as the model wrote it (in neutral
        names), so that the history, the plan the tree keeps and the transcript say what it said."""
        if isinstance(result.content, str):
            return result
        return result.model_copy(update={"content": [
            FunctionCall(id=c.id, name=c.name, arguments=self.view.decode(c.arguments)) for c in result.content]})

    # ------------------------------------------------------------------ ChatCompletionClient
    async def create(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = [],
                     tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                     json_output: Optional[bool | type[BaseModel]] = None,
                     extra_create_args: Mapping[str, Any] = {},
                     cancellation_token: Optional[CancellationToken] = None) -> CreateResult:
        result = await self.inner.create(self.encode_messages(messages), tools=self.encode_tools(tools),
                                         tool_choice=tool_choice, json_output=json_output,
                                         extra_create_args=extra_create_args, cancellation_token=cancellation_token)
        return self.decode_result(result)

    async def create_stream(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = [],
                            tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                            json_output: Optional[bool | type[BaseModel]] = None,
                            extra_create_args: Mapping[str, Any] = {},
                            cancellation_token: Optional[CancellationToken] = None,
                            ) -> AsyncGenerator[str | CreateResult, None]:
        yield await self.create(messages, tools=tools, tool_choice=tool_choice, json_output=json_output,
                                extra_create_args=extra_create_args, cancellation_token=cancellation_token)

    async def close(self) -> None:
        return None  # the wrapped client belongs to the run's client set, which closes it

    def actual_usage(self) -> RequestUsage:
        return self.inner.actual_usage()

    def total_usage(self) -> RequestUsage:
        return self.inner.total_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.inner.count_tokens(self.encode_messages(messages), tools=self.encode_tools(tools))

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.inner.remaining_tokens(self.encode_messages(messages), tools=self.encode_tools(tools))

    @property
    def capabilities(self):  # type: ignore[override]
        return self.inner.capabilities

    @property
    def model_info(self) -> ModelInfo:
        return self.inner.model_info


def blind_clients(clients: Mapping[str, ChatCompletionClient], view: BlindView) -> dict[str, ChatCompletionClient]:
    """The design roles' clients behind the blind view; the Reader reads papers, not cells."""
    return {role: c if role == "Reader" else BlindClient(c, view) for role, c in clients.items()}
