"""Which model-call failures are worth retrying, and how to say what went wrong in one line.

Provider SDKs (openai, anthropic, ollama) differ in class names but agree on shape: HTTP failures
carry `status_code` and `response.headers`; network failures are connection or timeout errors."""
from __future__ import annotations

import asyncio
import logging
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Iterator

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


# AutoGen's runtime logs an agent's failure with its traceback, then once more for every other agent
# of the group chat, which is sent a GroupChatError that its container cannot handle.
_ECHO = ("Unhandled message in agent container", "GroupChatError")


class OneLineFailures(logging.Filter):
    """For AutoGen's runtime logger ("autogen_core"): each failure becomes at most one line.

    A model-call failure was logged once already, in one line, by the client (ManagedClient), so
    AutoGen's record of it is dropped, as are the echoes it logs for the other agents; any other
    exception is kept as one line naming it. The failure's full traceback goes to `debug_log` at
    DEBUG (where it is enabled)."""

    def __init__(self, debug_log: logging.Logger | None = None):
        super().__init__()
        self._debug = debug_log or logging.getLogger("nader.llm")

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        if all(m in str(exc) for m in _ECHO):  # says nothing the first record did not
            return False
        if self._debug.isEnabledFor(logging.DEBUG):
            self._debug.debug("%s (full trace)", record.getMessage(), exc_info=record.exc_info)
        if any(isinstance(e, ModelCallError) for e in _chain(exc)):
            return False
        text = str(exc).strip().splitlines()
        record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}: {text[0] if text else ''}", ()
        record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def one_line_failures(logger: str = "autogen_core", debug_log: logging.Logger | None = None
                      ) -> Iterator[OneLineFailures]:
    """Install OneLineFailures on `logger` for the duration of the block (a run)."""
    target = logging.getLogger(logger)
    flt = OneLineFailures(debug_log)
    target.addFilter(flt)
    try:
        yield flt
    finally:
        target.removeFilter(flt)
