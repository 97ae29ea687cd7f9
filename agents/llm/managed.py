"""The client every agent talks to: it wraps a provider's ChatCompletionClient with the replay
cache, retries and the usage ledger, one instance per role so that usage is charged to the role."""
from __future__ import annotations

import copy
import logging
import time
from typing import Any, AsyncGenerator, Callable, Literal, Mapping, Optional, Sequence

from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage, ModelInfo, RequestUsage
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from .cache import RecordedFailure, ReplayCache, request_key, request_record
from .errors import ModelCallError
from .ledger import UsageLedger
from .retry import RetryPolicy, with_retries

log = logging.getLogger("nader.llm")


class ManagedClient(ChatCompletionClient):
    def __init__(self, inner: ChatCompletionClient, *, role: str, model: str, ledger: UsageLedger,
                 retry: RetryPolicy | None = None, cache: ReplayCache | None = None, timeout_s: float | None = None,
                 settings: Mapping[str, Any] | None = None, free: bool = False,
                 redact: Callable[[str], str] = lambda s: s):
        """`settings`: the client's answer-deciding configuration (no keys, no endpoints), part of
        every cache key so that a cache shared by runs of other seeds or models never mixes them.
        `free`: calls cost nothing whatever the model is called (the offline designer). `redact`:
        applied to every error this client raises, since callers print them."""
        self.inner = inner
        self.role = role
        self.model = model
        self._ledger = ledger
        self._retry = retry or RetryPolicy()
        self._cache = cache
        self._timeout_s = timeout_s  # some SDKs (ollama) have no request timeout of their own
        self._settings = dict(settings or {})
        self._free = free
        self._redact = redact
        self._last = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)

    # Read-only views of what the client was built with (tests and reports read these).
    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    @property
    def cache(self) -> ReplayCache | None:
        return self._cache

    @property
    def timeout_s(self) -> float | None:
        return self._timeout_s

    @property
    def settings(self) -> dict[str, Any]:
        """The answer-deciding settings that key the cache (a copy)."""
        return copy.deepcopy(self._settings)

    async def create(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = [],
                     tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                     json_output: Optional[bool | type[BaseModel]] = None,
                     extra_create_args: Mapping[str, Any] = {},
                     cancellation_token: Optional[CancellationToken] = None) -> CreateResult:
        record = request_record(self.model, messages, tools, tool_choice, json_output, extra_create_args,
                                self._settings)
        key = request_key(record)
        if self._cache is not None:
            hit = self._cache.get(key)
            if isinstance(hit, CreateResult):
                return self._account(hit, cached=True)
            if self._cache.mode == "replay":
                if isinstance(hit, RecordedFailure):  # recorded as failed: fail the same way
                    self._ledger.event(self.role, f"replayed failure: {hit.message}")
                    raise ModelCallError(self._redact(hit.message), status=hit.status, attempts=hit.attempts)
                message = self._redact(f"{self.role}: request {key[:12]} is not in the replay cache "
                                       f"{self._cache.dir} (llm.cache_mode=replay forbids calling the model)")
                log.error(message)
                self._ledger.event(self.role, message)
                raise ModelCallError(message)

        def on_retry(line: str) -> None:
            log.warning(line)
            self._ledger.event(self.role, line)

        start = time.monotonic()
        try:
            result, attempts, errors = await with_retries(
                lambda: self.inner.create(messages, tools=tools, tool_choice=tool_choice, json_output=json_output,
                                          extra_create_args=extra_create_args, cancellation_token=cancellation_token),
                self._retry, label=f"{self.role} ({self.model})", on_retry=on_retry, timeout_s=self._timeout_s,
                redact=self._redact)
        except ModelCallError as exc:
            log.error(str(exc))
            self._ledger.event(self.role, str(exc))
            self._ledger.record(self.role, self.model, 0, 0, attempts=exc.attempts,
                                seconds=time.monotonic() - start, errors=[str(exc)], failed=True, free=self._free)
            if self._cache is not None:
                self._cache.put(key, record, RecordedFailure(message=str(exc), status=exc.status,
                                                             attempts=exc.attempts))
            raise
        if self._cache is not None:
            self._cache.put(key, record, result)
        return self._account(result, attempts=attempts, seconds=time.monotonic() - start, errors=errors)

    def _account(self, result: CreateResult, cached: bool = False, attempts: int = 1, seconds: float = 0.0,
                 errors: list[str] | None = None) -> CreateResult:
        u = result.usage
        self._ledger.record(self.role, self.model, u.prompt_tokens, u.completion_tokens, cached=cached,
                            attempts=attempts, seconds=seconds, errors=errors, free=self._free)
        self._last = u
        self._total = RequestUsage(prompt_tokens=self._total.prompt_tokens + u.prompt_tokens,
                                   completion_tokens=self._total.completion_tokens + u.completion_tokens)
        return result.model_copy(update={"cached": cached}) if cached else result

    async def create_stream(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = [],
                            tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                            json_output: Optional[bool | type[BaseModel]] = None,
                            extra_create_args: Mapping[str, Any] = {},
                            cancellation_token: Optional[CancellationToken] = None,
                            ) -> AsyncGenerator[str | CreateResult, None]:
        # One whole answer: retries and replay need complete responses, and the team does not stream.
        yield await self.create(messages, tools=tools, tool_choice=tool_choice, json_output=json_output,
                                extra_create_args=extra_create_args, cancellation_token=cancellation_token)

    async def close(self) -> None:
        await self.inner.close()

    def actual_usage(self) -> RequestUsage:
        return self._last

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.inner.count_tokens(messages, tools=tools)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.inner.remaining_tokens(messages, tools=tools)

    @property
    def capabilities(self):  # type: ignore[override]
        return self.inner.capabilities

    @property
    def model_info(self) -> ModelInfo:
        return self.inner.model_info
