"""The usage ledger: every model call's tokens and dollars by role, trial and model, the run's
caps, and the retry/error events the trial transcript shows. One ledger per run, passed in.

On disk: `usage.jsonl`, a journal with one line per call appended as the call is recorded (so a
killed run loses no spent call), and `usage.json`, the summary rewritten by `save()`. On resume the
journal is the record of the calls.

Totals are kept running (each call is folded in once, in order, so they equal a full rescan) and
each call's and each finished trial's JSON text is kept once made: a save after trial 500 costs
about what one after trial 10 does, instead of rescanning and re-serialising every call."""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping

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


class LedgerError(ValueError):
    """The usage journal cannot be read; the message names the file and line."""


JOURNAL_NAME = "usage.jsonl"


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


def _copy(agg: dict) -> dict:
    return dict(agg)


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
                 redact=lambda s: s, clock: Callable[[], float] = time.monotonic):
        self.prices = {k: Price.model_validate(v) for k, v in (prices or {}).items()}
        self.caps = caps or Caps()
        self.calls: list[Call] = []
        # Which part of the run calls are charged to. A context variable, so that trials running
        # side by side (each in its own asyncio task) charge their own calls.
        self._trial: ContextVar[str] = ContextVar(f"ledger_trial_{id(self)}", default="setup")
        self._stopped: str | None = None
        self._journal: Path | None = None
        self._events: list[dict] = []
        self._redact = redact
        self._elapsed_before = 0.0
        # Passed in so that tests can hold time still (saved and rebuilt documents then agree).
        self._clock = clock
        self._started = clock()
        self._sums = _Sums()

    # ------------------------------------------------------------------ what calls are charged to
    @contextmanager
    def charging(self, trial: str) -> Iterator[None]:
        """Calls recorded inside (in this task and the tasks it starts) are charged to `trial`;
        the previous label is restored on exit."""
        token = self._trial.set(str(trial))
        try:
            yield
        finally:
            self._trial.reset(token)

    @property
    def trial(self) -> str:
        """What calls recorded now are charged to (set with `charging`)."""
        return self._trial.get()

    @property
    def stopped(self) -> str | None:
        """Why the run stopped early (a cap reached), or None (set with `stop`)."""
        return self._stopped

    def stop(self, reason: str | None) -> None:
        """Record that the run stops early and why (usage.json reports it); None: it does not."""
        self._stopped = reason or None

    @property
    def journal(self) -> Path | None:
        """The file every recorded call is appended to (set by `resume`), or None: memory only."""
        return self._journal

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
        self._append(call.model_dump())
        return call

    def _append(self, entry: dict) -> None:
        """One journal line, written by a single write() on an O_APPEND descriptor: a killed
        process leaves whole lines (at worst a torn last one, which `resume` drops)."""
        if self._journal is None:
            return
        line = (self._redact(json.dumps(entry, separators=(",", ":"))) + "\n").encode()
        self._journal.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def event(self, role: str, text: str) -> None:
        """A retry or error inside a model call: not a chat message, but the transcript shows it."""
        self._events.append({"time": _now(), "trial": self.trial, "role": role, "text": self._redact(text)})

    def take_events(self, trial: str) -> list[dict]:
        mine = [e for e in self._events if e["trial"] == trial]
        self._events = [e for e in self._events if e["trial"] != trial]
        return mine

    # ------------------------------------------------------------------ totals
    def _synced(self) -> "_Sums":
        """The running totals, with any calls appended to `calls` since the last look folded in."""
        return self._sums.sync(self.calls)

    def totals(self, trial: str | None = None, role: str | None = None) -> dict:
        sums = self._synced()
        if trial is None:
            agg = sums.total if role is None else sums.per_role.get(role)
        else:
            per = sums.per_trial.get(trial)
            agg = None if per is None else (per.total if role is None else per.per_role.get(role))
        return _copy(agg) if agg is not None else _zero()

    def by(self, field: str) -> dict[str, dict]:
        sums = self._synced()
        kept = {"role": sums.per_role, "model": sums.per_model}.get(field)
        if kept is None and field == "trial":
            kept = {t: per.total for t, per in sums.per_trial.items()}
        if kept is not None:
            return {k: _copy(v) for k, v in kept.items()}
        out: dict[str, dict] = {}
        for c in self.calls:
            _add(out.setdefault(getattr(c, field), _zero()), c)
        return out

    def elapsed_s(self) -> float:
        return self._elapsed_before + self._clock() - self._started

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
    def _head(self) -> dict:
        """usage.json without its two long parts, per_trial and calls."""
        return {"total": self.totals(), "per_role": self.by("role"), "per_model": self.by("model"),
                "per_trial": {}, "elapsed_s": round(self.elapsed_s(), 1), "caps": self.caps.model_dump(),
                "prices": {m: p.model_dump() for m, p in self.prices.items()}, "stopped": self._stopped}

    def to_json(self) -> dict:
        sums = self._synced()
        per_trial = {t: {"total": _copy(per.total), "per_role": {r: _copy(a) for r, a in per.per_role.items()}}
                     for t, per in sums.per_trial.items()}
        return {**self._head(), "per_trial": per_trial, "calls": [c.model_dump() for c in self.calls]}

    def to_text(self) -> str:
        """`json.dumps(self.to_json(), indent=2)`, redacted, made from the kept texts of the calls
        and of the trials that have had no call since the last save."""
        sums = self._synced()
        head = self._redact(json.dumps(self._head(), indent=2))
        trials = [f"{json.dumps(t)}: {sums.trial_text(t, self._redact)}" for t in sums.per_trial]
        calls = sums.call_texts(self.calls, self._redact)
        # Splice the kept parts into the head's empty per_trial and, as its last key, calls: the
        # same text json.dumps(indent=2) gives for the whole document (keys are never nested deeper).
        before, after = head.split('"per_trial": {}', 1)
        per_trial = "{\n    " + ",\n    ".join(trials) + "\n  }" if trials else "{}"
        listed = "[\n    " + ",\n    ".join(calls) + "\n  ]" if calls else "[]"
        return before + '"per_trial": ' + per_trial + after[:-2] + ',\n  "calls": ' + listed + "\n}"

    def save(self, path: Path) -> None:
        atomic_write(path, self.to_text())  # never half a ledger

    def resume(self, path: Path) -> None:
        """Continue the calls and the elapsed time of an earlier run in the same directory, and
        append every call recorded from now on to the journal beside `path` (usage.jsonl), so that
        it is on disk at once. The journal is the record of the calls; `path` (usage.json, the
        summary) gives the elapsed time, and the calls when an older run left no journal."""
        path = Path(path)
        journal = path.with_name(JOURNAL_NAME)
        try:
            summary = json.loads(path.read_text()) if path.exists() else {}
            if not isinstance(summary, dict):
                raise ValueError(f"a JSON {type(summary).__name__}, not an object")
            self._elapsed_before = float(summary.get("elapsed_s", 0.0))
        except (ValueError, TypeError) as exc:
            raise LedgerError(f"{path} is not a usage summary ({exc}); delete it to resume (the calls are kept "
                              f"in {journal.name})") from None
        self._sums = _Sums()  # the calls are replaced below: count them afresh
        if journal.exists():
            self.calls = read_journal(journal)
            _mend_tail(journal)
            self._journal = journal
        else:  # a run from before the journal: start one with the calls usage.json holds
            self.calls = [Call.model_validate(c) for c in summary.get("calls", [])]
            self._journal = journal
            for c in self.calls:
                self._append(c.model_dump())

    def set_aside(self, finished: int | list[int]) -> None:
        """Calls of trials that did not finish (after `finished`, or not in it when it is a list:
        trials that ran side by side may finish out of order) belong to a trial that was
        interrupted; a resumed run runs it again, so they are kept (they were spent) under their own
        label, not that trial's. The journal records the step, so that reading it back labels them
        the same way."""
        finished = int(finished) if isinstance(finished, int) else sorted(int(t) for t in finished)
        _set_aside(self.calls, finished)
        self._sums = _Sums()  # calls changed trial: count them afresh
        self._append({"set_aside": finished})

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


class _Trial:
    """One trial's running totals, overall and per role."""

    def __init__(self) -> None:
        self.total = _zero()
        self.per_role: dict[str, dict] = {}


class _Sums:
    """Running totals over a ledger's calls, folded in once each, in order (the same additions, so
    the same numbers, as a full rescan), and the JSON text of each call and of each trial kept once
    made. `sync` notices calls appended to the list since the last look; a list replaced or cut
    short is counted afresh."""

    def __init__(self) -> None:
        self.total = _zero()
        self.per_role: dict[str, dict] = {}
        self.per_model: dict[str, dict] = {}
        self.per_trial: dict[str, _Trial] = {}
        self._calls: list[Call] | None = None  # the list counted, and how far
        self._counted = 0
        self._call_texts: list[str] = []
        self._trial_texts: dict[str, str] = {}  # trials with no call since their text was made

    def sync(self, calls: list[Call]) -> "_Sums":
        if calls is not self._calls or len(calls) < self._counted:
            self.__init__()
            self._calls = calls
        for c in calls[self._counted:]:
            _add(self.total, c)
            _add(self.per_role.setdefault(c.role, _zero()), c)
            _add(self.per_model.setdefault(c.model, _zero()), c)
            per = self.per_trial.setdefault(c.trial, _Trial())
            _add(per.total, c)
            _add(per.per_role.setdefault(c.role, _zero()), c)
            self._trial_texts.pop(c.trial, None)
        self._counted = len(calls)
        return self

    def trial_text(self, trial: str, redact) -> str:
        text = self._trial_texts.get(trial)
        if text is None:
            per = self.per_trial[trial]
            text = _nested(redact(json.dumps({"total": per.total, "per_role": per.per_role}, indent=2)))
            self._trial_texts[trial] = text
        return text

    def call_texts(self, calls: list[Call], redact) -> list[str]:
        """The JSON text of every call; a call's text is made once (calls are not changed after
        they are recorded, except by set_aside, which starts the sums afresh)."""
        del self._call_texts[len(calls):]
        for c in calls[len(self._call_texts):]:
            self._call_texts.append(_nested(redact(json.dumps(c.model_dump(), indent=2))))
        return self._call_texts


def _nested(text: str) -> str:
    """A value's indent=2 JSON text as it reads two levels down in the document."""
    return text.replace("\n", "\n    ")


def _set_aside(calls: list[Call], finished: int | list[int]) -> None:
    done = set(finished) if isinstance(finished, list) else None
    for c in calls:
        if c.trial.isdigit() and (int(c.trial) not in done if done is not None else int(c.trial) > finished):
            c.trial = f"{c.trial}-interrupted"


def read_journal(path: Path) -> list[Call]:
    """The calls of a usage journal, with its set-aside steps applied. A last line cut short (the
    process was killed while writing it) is left out; a bad line anywhere else is a LedgerError."""
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # what follows the last newline: b"" unless the last write was cut short
    calls: list[Call] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                _apply(calls, line)
            except (ValueError, TypeError) as exc:  # JSON and pydantic errors alike
                first = str(exc).strip().splitlines()[0]
                raise LedgerError(f"{path} line {number} is not a usage record ({first}); the run's spent calls "
                                  f"cannot be counted: repair or delete that line to resume") from None
    if tail.strip():
        try:  # cut just before its newline: the record is whole
            _apply(calls, tail)
        except (ValueError, TypeError):
            pass
    return calls


def _mend_tail(path: Path) -> None:
    """End the journal on a newline, so that the next line appended starts a line of its own: a
    whole record that lost only its newline gets it back, a torn one is cut off."""
    raw = path.read_bytes()
    tail = raw[raw.rfind(b"\n") + 1:]
    if not tail:
        return
    try:
        _apply([], tail)
        whole = True
    except (ValueError, TypeError):
        whole = False
    with open(path, "r+b") as f:
        if whole:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        else:
            f.truncate(len(raw) - len(tail))


def _apply(calls: list[Call], line: bytes) -> None:
    entry = json.loads(line)
    if isinstance(entry, dict) and set(entry) == {"set_aside"}:
        mark = entry["set_aside"]
        _set_aside(calls, [int(t) for t in mark] if isinstance(mark, list) else int(mark))
    else:
        calls.append(Call.model_validate(entry))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
