"""Record and replay of model calls, keyed by the request's content. A rerun with the same seed and
config sends the same requests, so it replays every answer from here at no cost, with no network.

Only the request content (model name, messages, tool schemas, options) is stored: never endpoints,
headers or keys, and the stored text passes through the run's redactor."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from autogen_core.models import CreateResult, LLMMessage
from pydantic import BaseModel

from graphs.atomic import atomic_write

CacheMode = Literal["readwrite", "replay"]


def request_record(model: str, messages: Sequence[LLMMessage], tools: Sequence[Any] = (), tool_choice: Any = "auto",
                   json_output: Any = None, extra_create_args: Mapping[str, Any] | None = None,
                   settings: Mapping[str, Any] | None = None) -> dict:
    """The part of a request that decides the answer, as plain JSON. `settings` are the client's
    own answer-deciding settings (provider, sampling options, the offline designer's seed)."""
    def schema(t: Any) -> Any:
        return t if isinstance(t, dict) else getattr(t, "schema", str(t))

    if isinstance(json_output, type) and issubclass(json_output, BaseModel):
        json_output = {"model": json_output.__name__, "schema": json_output.model_json_schema()}
    return {"model": model,
            "messages": [m.model_dump(mode="json") for m in messages],
            "tools": [schema(t) for t in tools],
            "tool_choice": tool_choice if isinstance(tool_choice, str) else getattr(tool_choice, "name", str(tool_choice)),
            "json_output": json_output,
            "extra_create_args": dict(extra_create_args or {}),
            "settings": dict(settings or {})}


def request_key(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


class RecordedFailure(BaseModel):
    """A call that failed for good while recording: replaying it fails the same way, so a replayed
    run takes the same path through its trials."""

    message: str
    status: int | None = None
    attempts: int = 1


class ReplayCache:
    def __init__(self, directory: str | Path, mode: CacheMode = "readwrite", redact=lambda s: s):
        if mode not in ("readwrite", "replay"):
            raise ValueError(f"llm.cache_mode must be readwrite or replay, not {mode!r}")
        self.dir = Path(directory).expanduser().resolve()
        self.mode = mode
        self._redact = redact
        if mode == "replay" and not any(self.dir.glob("*/*.json")):
            raise ValueError(f"llm.cache_mode=replay: {self.dir} holds no recorded calls (is llm.cache right?)")

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> CreateResult | RecordedFailure | None:
        """The recorded answer, or the recorded final failure of that request, or None."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if "failure" in data:
                return RecordedFailure.model_validate(data["failure"])
            return CreateResult.model_validate(data["response"])
        except (ValueError, KeyError):  # a damaged entry is a miss, not a crash
            return None

    def put(self, key: str, record: dict, result: CreateResult | RecordedFailure) -> None:
        path = self._path(key)
        outcome = ({"failure": result.model_dump()} if isinstance(result, RecordedFailure)
                   else {"response": result.model_dump(mode="json")})
        text = json.dumps({"key": key, "request": record, **outcome}, indent=1)
        atomic_write(path, self._redact(text))

    def __len__(self) -> int:
        return sum(1 for _ in self.dir.glob("*/*.json"))
