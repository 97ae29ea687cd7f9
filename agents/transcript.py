"""A trial's transcript: every message and tool event with role, tokens and time, as JSONL and as
readable Markdown."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage


class Transcript:
    def __init__(self, models: dict[str, str] | None = None) -> None:
        self.records: list[dict] = []
        self.models = models or {}  # role -> the model that speaks for it

    def add(self, item: BaseAgentEvent | BaseChatMessage | TaskResult) -> None:
        if isinstance(item, TaskResult):
            return
        usage = getattr(item, "models_usage", None)
        self.records.append({
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "role": item.source,
            "type": type(item).__name__,
            "content": _content(item),
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "model": self.models.get(item.source, "") if usage else "",  # a model's own message
        })

    def note(self, role: str, text: str) -> None:
        """An event of the trial loop itself (dedup, budget, training)."""
        self.records.append({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                             "role": role, "type": "TrialEvent", "content": text,
                             "prompt_tokens": 0, "completion_tokens": 0})

    def extend(self, other: "Transcript") -> None:
        """Append another transcript's records (a trial's design sessions, one after another)."""
        self.records.extend(other.records)

    def merge_events(self, events: list[dict]) -> None:
        """Events recorded outside the chat (model-call retries and errors), placed by time."""
        for e in events:
            self.records.append({"time": e["time"], "role": e["role"], "type": "ModelCallEvent",
                                 "content": e["text"], "prompt_tokens": 0, "completion_tokens": 0})
        self.records.sort(key=lambda r: r["time"])  # stable: same-time records keep their order

    def mapped(self, fn: Callable) -> "Transcript":
        """A copy whose records' contents are `fn(content)` (e.g. a blind space's view of them)."""
        out = Transcript(self.models)
        out.records = [{**r, "content": fn(r["content"])} for r in self.records]
        return out

    def texts(self, role: str) -> list[str]:
        return [r["content"] for r in self.records if r["role"] == role and r["type"] == "TextMessage"]

    def write(self, directory: Path, title: str, redact: Callable[[str], str] = lambda s: s) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "transcript.jsonl", "w") as f:
            for r in self.records:
                f.write(redact(json.dumps(r)) + "\n")
        lines = [f"# {title}", ""]
        for r in self.records:
            tokens = r["prompt_tokens"] + r["completion_tokens"]
            head = (f"## {r['role']} · {r['type']} · {r['time']}" + (f" · {r['model']}" if r.get("model") else "")
                    + (f" · {tokens} tokens" if tokens else ""))
            body = r["content"] if isinstance(r["content"], str) else json.dumps(r["content"], indent=2)
            fence = "```" if r["type"] != "TextMessage" else ""
            lines += [head, "", f"{fence}\n{body}\n{fence}" if fence else body, ""]
        (directory / "transcript.md").write_text(redact("\n".join(lines)))


def _content(item) -> str | list:
    c = getattr(item, "content", "")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        out = []
        for x in c:
            if hasattr(x, "arguments"):
                out.append({"call": x.name, "arguments": _maybe_json(x.arguments)})
            elif hasattr(x, "call_id"):
                out.append({"result": getattr(x, "name", ""), "is_error": x.is_error, "content": _maybe_json(x.content)})
            else:
                out.append(str(x))
        return out
    return str(c)


def _maybe_json(s: str):
    try:
        return json.loads(s)
    except (TypeError, json.JSONDecodeError):
        return s
