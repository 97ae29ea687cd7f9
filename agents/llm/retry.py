"""Retries of transient model-call failures through tenacity: exponential backoff with jitter, at
least as long as the server's Retry-After, bounded by attempts and by the total wait."""
from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

from pydantic import BaseModel, Field
from tenacity import (AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay,
                      wait_exponential_jitter)

from .errors import ModelCallError, describe, is_api_error, is_transient, retry_after, status_of

T = TypeVar("T")


class RetryPolicy(BaseModel):
    attempts: int = Field(6, ge=1, description="tries per model call, the first included")
    max_wait_s: float = Field(300.0, gt=0, description="total time one call may spend failing and waiting")
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


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, label: str,
                       on_retry: Callable[[str], None] = lambda _: None) -> tuple[T, int, list[str]]:
    """(result, attempts, errors seen). API failures that are permanent or outlive the policy
    become ModelCallError with the server's message; other exceptions pass through unchanged."""
    errors: list[str] = []

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        asked = retry_after(exc)
        hint = f" (Retry-After {asked:g}s)" if asked is not None else ""
        line = (f"{label}: {describe(exc)}{hint}; retry {state.attempt_number + 1}/{policy.attempts} "
                f"in {state.upcoming_sleep:.2f}s")
        errors.append(describe(exc))
        on_retry(line)

    retrying = AsyncRetrying(retry=retry_if_exception(is_transient),
                             stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.max_wait_s),
                             wait=_wait(policy), before_sleep=before_sleep, reraise=True)
    attempts = 0
    try:
        async for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                return await call(), attempts, errors
    except Exception as exc:  # noqa: BLE001 - classified below; non-API errors re-raised as they are
        if not is_api_error(exc):
            raise
        errors.append(describe(exc))
        why = "gave up after" if is_transient(exc) else "permanent error after"
        raise ModelCallError(f"{label}: {describe(exc)} ({why} {attempts} attempt(s))", status=status_of(exc),
                             attempts=attempts) from None  # the SDK chain may quote request details
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
