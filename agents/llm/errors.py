"""Which model-call failures are worth retrying, and how to say what went wrong in one line.

Provider SDKs (openai, anthropic, ollama) differ in class names but agree on shape: HTTP failures
carry `status_code` and `response.headers`; network failures are connection or timeout errors."""
from __future__ import annotations

import asyncio
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

# Request timeout, conflict, rate limit: the same request may succeed later. 5xx likewise.
TRANSIENT_STATUS = {408, 409, 425, 429}
_NETWORK_NAMES = ("APIConnectionError", "APITimeoutError", "ConnectError", "ReadTimeout", "RemoteProtocolError",
                  "TimeoutException", "TransportError", "ConnectTimeout", "ReadError", "WriteError", "PoolTimeout")


class ModelCallError(RuntimeError):
    """A model call failed for good: a permanent error, or a transient one that outlived its retries.
    The message is one line, redacted where it is made (with_retries, ManagedClient): callers print it."""

    def __init__(self, message: str, status: int | None = None, attempts: int = 1):
        super().__init__(message)
        self.status = status
        self.attempts = attempts


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return True
    return any(type(c).__name__ in _NETWORK_NAMES for c in _chain(exc))


def is_transient(exc: BaseException) -> bool:
    status = status_of(exc)
    if status is not None:
        return status in TRANSIENT_STATUS or status >= 500
    return is_network_error(exc)


def is_api_error(exc: BaseException) -> bool:
    """An error from talking to the model service (as opposed to a bug or a bad argument)."""
    return status_of(exc) is not None or is_network_error(exc)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After as seconds or HTTP date, or retry-after-ms)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def server_message(exc: BaseException) -> str:
    """The server's own error text when the SDK parsed one, else the exception's first line."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg).strip().splitlines()[0][:300]
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def describe(exc: BaseException) -> str:
    """'HTTP 429: Rate limit reached' / 'APIConnectionError: Connection error.'"""
    status = status_of(exc)
    head = f"HTTP {status}" if status is not None else type(exc).__name__
    return f"{head}: {server_message(exc)}"


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
