"""The usage ledger: every model call's tokens and dollars by role, trial and model, the run's
caps, and the retry/error events the trial transcript shows. One ledger per run, passed in."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from pydantic import BaseModel, Field

from graphs.atomic import atomic_write


class Price(BaseModel):
    input: float = Field(0.0, ge=0, description="dollars per million prompt tokens")
    output: float = Field(0.0, ge=0, description="dollars per million completion tokens")


class Caps(BaseModel):
    """Run limits; None = no limit. Checked between trials: the trial in progress finishes.
    Replayed calls count as if they had been made (their tokens, their dollars at list price), so
    that replaying a run with the same config stops where the recorded run stopped."""

    max_usd: float | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_hours: float | None = Field(None, gt=0)


class Call(BaseModel):
    time: str
    trial: str
    role: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    usd: float                    # what the call cost: 0 when replayed
    list_usd: float | None = None  # what it costs at list price, replayed or not (None: usd, older ledgers)
    cached: bool = False
    attempts: int = 1
    seconds: float = 0.0
    errors: list[str] = []
    failed: bool = False


def _zero() -> dict:
    return {"calls": 0, "cached_calls": 0, "failed_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0,
            "spent_tokens": 0, "usd": 0.0, "list_usd": 0.0, "retries": 0}


def _add(agg: dict, c: Call) -> None:
    agg["calls"] += 1
    agg["cached_calls"] += int(c.cached)
    agg["failed_calls"] += int(c.failed)
    agg["prompt_tokens"] += c.prompt_tokens
    agg["completion_tokens"] += c.completion_tokens
    agg["tokens"] += c.prompt_tokens + c.completion_tokens
    agg["spent_tokens"] += 0 if c.cached else c.prompt_tokens + c.completion_tokens
    agg["usd"] = round(agg["usd"] + c.usd, 8)
    agg["list_usd"] = round(agg["list_usd"] + (c.usd if c.list_usd is None else c.list_usd), 8)
    agg["retries"] += max(0, c.attempts - 1)


class UsageLedger:
    """`tokens` and `list_usd` count every call (replayed ones too, at list price): they are what the
    caps limit, so a replay takes the recorded run's path. `spent_tokens` and `usd` count only calls
    that reached a model: what the run actually spent."""

    def __init__(self, prices: Mapping[str, Price | dict] | None = None, caps: Caps | None = None,
                 redact=lambda s: s):
        self.prices = {k: Price.model_validate(v) for k, v in (prices or {}).items()}
        self.caps = caps or Caps()
        self.calls: list[Call] = []
        self.trial = "setup"  # which part of the run calls are charged to; set by the run loop
        self.stopped: str | None = None
        self._events: list[dict] = []
        self._redact = redact
        self._elapsed_before = 0.0
        self._started = time.monotonic()

    # ------------------------------------------------------------------ recording
    def price(self, model: str) -> Price:
        return self.prices.get(model, Price())

    def record(self, role: str, model: str, prompt_tokens: int, completion_tokens: int, *, cached: bool = False,
               attempts: int = 1, seconds: float = 0.0, errors: list[str] | None = None, failed: bool = False,
               free: bool = False) -> Call:
        """`free`: a client that costs nothing whatever its model is called (the offline designer)."""
        p = Price() if free else self.price(model)
        list_usd = round((prompt_tokens * p.input + completion_tokens * p.output) / 1e6, 8)
        call = Call(time=_now(), trial=self.trial, role=role, model=model, prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens, usd=0.0 if cached else list_usd, list_usd=list_usd,
                    cached=cached, attempts=attempts,
                    seconds=round(seconds, 3), errors=[self._redact(e) for e in errors or []], failed=failed)
        self.calls.append(call)
        return call

    def event(self, role: str, text: str) -> None:
        """A retry or error inside a model call: not a chat message, but the transcript shows it."""
        self._events.append({"time": _now(), "trial": self.trial, "role": role, "text": self._redact(text)})

    def take_events(self, trial: str) -> list[dict]:
        mine = [e for e in self._events if e["trial"] == trial]
        self._events = [e for e in self._events if e["trial"] != trial]
        return mine

    # ------------------------------------------------------------------ totals
    def totals(self, trial: str | None = None, role: str | None = None) -> dict:
        agg = _zero()
        for c in self.calls:
            if (trial is None or c.trial == trial) and (role is None or c.role == role):
                _add(agg, c)
        return agg

    def by(self, field: str) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for c in self.calls:
            _add(out.setdefault(getattr(c, field), _zero()), c)
        return out

    def elapsed_s(self) -> float:
        return self._elapsed_before + time.monotonic() - self._started

    def exceeded(self) -> str | None:
        """The first cap reached, named as in the config, or None. Replayed calls count as made."""
        t = self.totals()
        replayed = " (replayed calls included)" if t["cached_calls"] else ""
        if self.caps.max_tokens is not None and t["tokens"] >= self.caps.max_tokens:
            return f"budget.max_tokens reached: {t['tokens']:,} tokens used{replayed}, cap {self.caps.max_tokens:,}"
        if self.caps.max_usd is not None and t["list_usd"] >= self.caps.max_usd:
            return f"budget.max_usd reached: ${t['list_usd']:.4f} spent{replayed}, cap ${self.caps.max_usd:g}"
        hours = self.elapsed_s() / 3600
        if self.caps.max_hours is not None and hours >= self.caps.max_hours:
            return f"budget.max_hours reached: {hours:.2f} h elapsed, cap {self.caps.max_hours:g} h"
        return None

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict:
        per_trial = {}
        for trial in dict.fromkeys(c.trial for c in self.calls):
            mine = [c for c in self.calls if c.trial == trial]
            roles: dict[str, dict] = {}
            for c in mine:
                _add(roles.setdefault(c.role, _zero()), c)
            per_trial[trial] = {"total": self.totals(trial), "per_role": roles}
        return {"total": self.totals(), "per_role": self.by("role"), "per_model": self.by("model"),
                "per_trial": per_trial, "elapsed_s": round(self.elapsed_s(), 1), "caps": self.caps.model_dump(),
                "prices": {m: p.model_dump() for m, p in self.prices.items()}, "stopped": self.stopped,
                "calls": [c.model_dump() for c in self.calls]}

    def save(self, path: Path) -> None:
        atomic_write(path, self._redact(json.dumps(self.to_json(), indent=2)))  # never half a ledger

    def resume(self, path: Path) -> None:
        """Continue the totals (and the elapsed time) of an earlier run in the same directory."""
        if not path.exists():
            return
        data = json.loads(path.read_text())
        self.calls = [Call.model_validate(c) for c in data.get("calls", [])]
        self._elapsed_before = float(data.get("elapsed_s", 0.0))

    def set_aside(self, finished: int) -> None:
        """Calls of trials after `finished` belong to a trial that was interrupted; a resumed run
        runs it again, so they are kept (they were spent) under their own label, not that trial's."""
        for c in self.calls:
            if c.trial.isdigit() and int(c.trial) > finished:
                c.trial = f"{c.trial}-interrupted"

    def summary_lines(self) -> list[str]:
        t = self.totals()
        cached = f", {t['cached_calls']} replayed from cache" if t["cached_calls"] else ""
        cached += f", {t['failed_calls']} failed" if t["failed_calls"] else ""
        retries = f", {t['retries']} retries" if t["retries"] else ""
        listed = (f" (${t['list_usd']:.4f} at list price with the replayed calls, as the caps count it)"
                  if t["list_usd"] != t["usd"] else "")
        lines = [f"model usage: {t['calls']} calls{cached}{retries}; {t['prompt_tokens']:,} prompt + "
                 f"{t['completion_tokens']:,} completion tokens; ${t['usd']:.4f}{listed}"]
        for role, r in sorted(self.by("role").items()):
            lines.append(f"  {role}: {r['calls']} calls, {r['tokens']:,} tokens, ${r['usd']:.4f}")
        return lines


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
