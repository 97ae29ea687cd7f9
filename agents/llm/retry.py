"""Retries of transient model-call failures through tenacity: exponential backoff with jitter, at
least as long as the server's Retry-After, bounded by attempts and by the total wait."""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

from pydantic import BaseModel, Field
from tenacity import (AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay,
                      wait_exponential_jitter)

from .errors import ModelCallError, describe, is_api_error, is_transient, retry_after, status_of

T = TypeVar("T")


class RetryPolicy(BaseModel):
    attempts: int = Field(6, ge=1, description="tries per model call, the first included")
    max_wait_s: float = Field(300.0, gt=0, description="the time, from the first try, after which no retry "
                                                        "starts or runs on")
    initial_s: float = Field(1.0, ge=0, description="first backoff")
    max_backoff_s: float = Field(60.0, ge=0, description="longest single backoff")
    jitter_s: float = Field(1.0, ge=0, description="random extra wait, so that parallel clients spread out")


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(multiplier=policy.initial_s, max=policy.max_backoff_s, jitter=policy.jitter_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after(exc) if exc is not None else None
        return max(backoff(state), asked or 0.0)

    return wait


def attempt_limit(timeout_s: float | None, attempt: int, left_s: float) -> float | None:
    """How long one attempt may run. The first runs up to timeout_s (a slow answer is not a failure);
    a retry also ends when max_wait_s is used up, so that retrying never outlasts it."""
    if attempt == 1:
        return timeout_s
    left_s = max(left_s, 0.01)
    return left_s if timeout_s is None else min(timeout_s, left_s)


async def _bounded(call: Callable[[], Awaitable[T]], limit: float | None) -> T:
    if limit is None:
        return await call()
    try:
        return await asyncio.wait_for(call(), limit)
    except TimeoutError as exc:
        if str(exc):  # the SDK's own timeout, with its own words
            raise
        raise TimeoutError(f"no answer within {limit:.3g}s") from None


def give_up_reason(exc: BaseException, attempts: int, policy: RetryPolicy, elapsed_s: float) -> str:
    """Why the retries ended, in words that name the setting to change."""
    if not is_transient(exc):
        return f"permanent error after {attempts} attempt(s)"
    if attempts >= policy.attempts:
        return f"gave up after {attempts} attempt(s)"
    asked = retry_after(exc)
    if asked is not None and elapsed_s + asked >= policy.max_wait_s:
        return (f"gave up after {attempts} attempt(s): the server's Retry-After {asked:g}s is more than "
                f"llm.retry.max_wait_s={policy.max_wait_s:g}s allows")
    return f"gave up after {attempts} attempt(s): llm.retry.max_wait_s={policy.max_wait_s:g}s used up"


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, label: str,
                       on_retry: Callable[[str], None] = lambda _: None, *, timeout_s: float | None = None,
                       redact: Callable[[str], str] = lambda s: s) -> tuple[T, int, list[str]]:
    """(result, attempts, errors seen). API failures that are permanent or outlive the policy
    become ModelCallError with the server's message; other exceptions pass through unchanged.
    Every line it makes (retry notes, errors, the ModelCallError) has passed through `redact`:
    servers echo keys in their error texts."""
    errors: list[str] = []
    start = time.monotonic()

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        asked = retry_after(exc)
        hint = f" (Retry-After {asked:g}s)" if asked is not None else ""
        line = (f"{label}: {describe(exc)}{hint}; retry {state.attempt_number + 1}/{policy.attempts} "
                f"in {state.upcoming_sleep:.2f}s")
        errors.append(redact(describe(exc)))
        on_retry(redact(line))

    retrying = AsyncRetrying(retry=retry_if_exception(is_transient),
                             stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.max_wait_s),
                             wait=_wait(policy), before_sleep=before_sleep, reraise=True)
    attempts = 0
    try:
        async for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                limit = attempt_limit(timeout_s, attempts, policy.max_wait_s - (time.monotonic() - start))
                return await _bounded(call, limit), attempts, errors
    except Exception as exc:  # noqa: BLE001 - classified below; non-API errors re-raised as they are
        if not is_api_error(exc):
            raise
        errors.append(redact(describe(exc)))
        why = give_up_reason(exc, attempts, policy, time.monotonic() - start)
        raise ModelCallError(redact(f"{label}: {describe(exc)} ({why})"), status=status_of(exc),
                             attempts=attempts) from None  # the SDK chain may quote request details
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
