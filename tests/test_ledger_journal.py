"""The usage journal (usage.jsonl): every model call is on disk as soon as it is recorded, a killed
run loses none, and a resumed run counts them all; what calls are charged to is set through
`charging`, the stop through `stop`."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agents.llm import Caps, UsageLedger
from agents.protocol import role_named
from agents.llm.ledger import LedgerError, read_journal
from conftest import ROOT
from fake_openai_server import FakeOpenAIServer
from graphs.tree import ModificationTree


def _ledger(run_dir: Path, **kw) -> UsageLedger:
    ledger = UsageLedger({"m": {"input": 1.0, "output": 2.0}}, **kw)
    ledger.resume(run_dir / "usage.json")
    return ledger


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "usage.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------- the journal
def test_each_call_is_on_disk_as_soon_as_it_is_recorded(tmp_path: Path):
    run_dir = tmp_path / "run"  # not made yet: the first call makes it
    ledger = _ledger(run_dir)
    assert ledger.journal == run_dir / "usage.jsonl" and not ledger.journal.exists()
    with ledger.charging("1"):
        ledger.record("Proposer", "m", 100, 10)
        assert [c["trial"] for c in _lines(run_dir)] == ["1"]  # before anything is saved
        ledger.record("Modifier", "m", 50, 5, attempts=2, errors=["HTTP 429: slow down"])
    lines = _lines(run_dir)
    assert [(c["role"], c["prompt_tokens"], c["attempts"]) for c in lines] == [("Proposer", 100, 1), ("Modifier", 50, 2)]
    assert lines == [c.model_dump() for c in ledger.calls]
    assert not (run_dir / "usage.json").exists()  # the summary is save()'s, the journal is record()'s


def test_a_resumed_ledger_takes_its_calls_from_the_journal_and_the_caps_count_them(tmp_path: Path):
    first = _ledger(tmp_path)
    with first.charging("1"):
        for _ in range(3):
            first.record("Proposer", "m", 40, 0)
    first.save(tmp_path / "usage.json")
    with first.charging("2"):
        first.record("Proposer", "m", 40, 0)  # after the last save: only the journal has it
    assert len(json.loads((tmp_path / "usage.json").read_text())["calls"]) == 3
    again = _ledger(tmp_path, caps=Caps(max_tokens=150))
    assert again.totals()["calls"] == 4 and again.totals()["tokens"] == 160
    assert set(again.by("trial")) == {"1", "2"}
    assert again.exceeded() == "budget.max_tokens reached: 160 tokens used, cap 150"


def test_a_torn_last_line_is_dropped_and_the_next_call_starts_a_line_of_its_own(tmp_path: Path):
    ledger = _ledger(tmp_path)
    for _ in range(3):
        ledger.record("Proposer", "m", 10, 1)
    journal = tmp_path / "usage.jsonl"
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"time": "2025-01-01T00:00:00", "trial": "1", "ro')  # killed mid-write
    again = _ledger(tmp_path)
    assert len(again.calls) == 3 and journal.read_bytes() == whole
    again.record("Reflector", "m", 20, 2)
    assert [c.role for c in read_journal(journal)] == ["Proposer"] * 3 + ["Reflector"]


def test_a_whole_record_that_lost_only_its_newline_is_kept(tmp_path: Path):
    ledger = _ledger(tmp_path)
    ledger.record("Proposer", "m", 10, 1)
    ledger.record("Modifier", "m", 20, 2)
    journal = tmp_path / "usage.jsonl"
    journal.write_bytes(journal.read_bytes()[:-1])
    again = _ledger(tmp_path)
    assert [c.role for c in again.calls] == ["Proposer", "Modifier"]
    again.record("Reflector", "m", 30, 3)
    assert [c.role for c in read_journal(journal)] == ["Proposer", "Modifier", "Reflector"]


def test_a_bad_line_inside_the_journal_is_an_error_naming_it(tmp_path: Path):
    ledger = _ledger(tmp_path)
    ledger.record("Proposer", "m", 10, 1)
    journal = tmp_path / "usage.jsonl"
    journal.write_text(journal.read_text() + "{not json}\n" + journal.read_text())
    with pytest.raises(LedgerError, match=rf"^{journal} line 2 is not a usage record \(.*\); the run's spent calls "
                                          r"cannot be counted: repair or delete that line to resume$"):
        _ledger(tmp_path)
    journal.write_text('{"trial": "1"}\n')  # JSON, but not a call
    with pytest.raises(LedgerError, match="line 1 is not a usage record"):
        _ledger(tmp_path)


def test_setting_aside_an_interrupted_trial_is_journalled_so_each_resume_labels_alike(tmp_path: Path):
    ledger = _ledger(tmp_path)
    for trial in ("1", "2", "3"):
        with ledger.charging(trial):
            ledger.record("Proposer", "m", 10, 1)
    ledger.set_aside(finished=2)  # trial 3 was interrupted; it runs again
    with ledger.charging("3"):
        ledger.record("Proposer", "m", 10, 1)
    again = _ledger(tmp_path)
    assert [c.trial for c in again.calls] == ["1", "2", "3-interrupted", "3"]
    again.set_aside(finished=3)  # a later resume: the re-run trial 3 finished and stays trial 3
    assert [c.trial for c in _ledger(tmp_path).calls] == ["1", "2", "3-interrupted", "3"]


def test_an_older_run_without_a_journal_starts_one_with_its_saved_calls(tmp_path: Path):
    old = UsageLedger()
    with old.charging("1"):
        old.record("Proposer", "m", 10, 1)
        old.record("Modifier", "m", 20, 2)
    old.save(tmp_path / "usage.json")  # a ledger with no journal: what runs wrote before
    assert not (tmp_path / "usage.jsonl").exists()
    again = _ledger(tmp_path)
    again.record("Reflector", "m", 5, 0)
    assert [c["role"] for c in _lines(tmp_path)] == ["Proposer", "Modifier", "Reflector"]


def test_keys_in_error_texts_never_reach_the_journal(tmp_path: Path):
    secret = "sk-secret-0123456789abcdef"
    ledger = UsageLedger(redact=lambda s: s.replace(secret, "***"))
    ledger.resume(tmp_path / "usage.json")
    ledger.record("Proposer", "m", 0, 0, failed=True, errors=[f"HTTP 401: bad key {secret}"])
    text = (tmp_path / "usage.jsonl").read_text()
    assert secret not in text and "bad key ***" in text


# ---------------------------------------------------------------------------------------- charging and stop
def test_charging_sets_the_trial_and_restores_the_one_before():
    ledger = UsageLedger()
    ledger.record("Reader", "m", 1, 0)
    with ledger.charging("reader"):
        ledger.event("Reader", "retry 2/6")
        with ledger.charging("1"):
            ledger.record("Proposer", "m", 1, 0)
        ledger.record("Reader", "m", 1, 0)
    ledger.record("Reader", "m", 1, 0)
    assert [c.trial for c in ledger.calls] == ["setup", "1", "reader", "setup"]
    assert [e["text"] for e in ledger.take_events("reader")] == ["retry 2/6"]


def test_trials_running_side_by_side_charge_their_own_calls():
    ledger = UsageLedger()

    async def trial(n: int) -> None:
        with ledger.charging(str(n)):
            for _ in range(n):
                await asyncio.sleep(0)  # the other trials run in between
                ledger.record("Proposer", "m", 1, 0)

    async def both() -> None:
        await asyncio.gather(trial(1), trial(2), trial(3))

    asyncio.run(both())
    assert {t: v["calls"] for t, v in ledger.by("trial").items()} == {"1": 1, "2": 2, "3": 3}


def test_stop_records_why_the_run_stopped():
    ledger = UsageLedger()
    assert ledger.stopped is None and ledger.to_json()["stopped"] is None
    ledger.stop("budget.max_usd reached: $1.2 spent, cap $1; stopped after trial 3")
    assert ledger.stopped.startswith("budget.max_usd reached") and ledger.to_json()["stopped"] == ledger.stopped
    ledger.stop(None)
    assert ledger.stopped is None
    for name in ("stopped", "trial"):  # read-only: set through stop() and charging()
        with pytest.raises(AttributeError):
            setattr(ledger, name, "3")


# ---------------------------------------------------------------------------------------- kill -9, then resume
FAST = ["trainer.epochs=1", "trainer.subset=300", "memory.embedder=hashing", "export=false", "progress=false"]
HANG_AT = 18  # chat request 18: trial 1 of this run takes 15 calls, so the 3rd call of trial 2


def _command(run_dir: Path, server: FakeOpenAIServer) -> list[str]:
    return [sys.executable, "main.py", *FAST, "trials=2", "llm=openai_compatible", f"llm.base_url={server.base_url}",
            "llm.model=test-model", f"hydra.run.dir={run_dir}"]


def _role(body: dict) -> str | None:
    return role_named("\n".join(m["content"] for m in body["messages"] if m["role"] == "system"))


def _env(run_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_COMPATIBLE_API_KEY"}
    return {**env, "PYTHONPATH": str(ROOT), "HOME": str(run_dir.parent), "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_a_run_killed_during_a_trial_keeps_every_answered_call_and_its_resume_counts_them(tmp_path: Path):
    run_dir = tmp_path / "run"
    with FakeOpenAIServer(seed=0, faults=lambda i: "hang" if i == HANG_AT else None) as server:
        proc = subprocess.Popen(_command(run_dir, server), cwd=ROOT, env=_env(run_dir), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            # The run's model calls are one at a time: when request HANG_AT arrives, every call before it
            # has been answered and recorded, and the run now waits on an answer that never comes.
            server.wait_for(lambda s: s.chat_requests >= HANG_AT or proc.poll() is not None, timeout_s=300)
            assert proc.poll() is None, proc.stderr.read()[-3000:]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        answered = [r for r in server.requests if r["path"] == "/v1/chat/completions" and r["status"] == 200]
        journal = read_journal(run_dir / "usage.jsonl")
        assert len(answered) == HANG_AT - 1 and len(journal) == len(answered)
        assert [c.role for c in journal] == [_role(r["body"]) for r in answered]  # the same calls, in order
        assert {c.trial for c in journal} == {"1", "2"} and not any(c.failed for c in journal)
        saved = json.loads((run_dir / "usage.json").read_text())["calls"]
        assert len(saved) < len(journal)  # the summary, saved after trial 1, misses trial 2's calls

        res = subprocess.run(_command(run_dir, server), cwd=ROOT, env=_env(run_dir), capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        answered = [r for r in server.requests if r["path"] == "/v1/chat/completions" and r["status"] == 200]
    usage = json.loads((run_dir / "usage.json").read_text())
    assert usage["total"]["calls"] == len(answered) == len(read_journal(run_dir / "usage.jsonl"))
    assert usage["total"]["tokens"] == sum(c["prompt_tokens"] + c["completion_tokens"] for c in usage["calls"])
    interrupted = usage["per_trial"]["2-interrupted"]["total"]["calls"]
    assert interrupted == HANG_AT - 1 - usage["per_trial"]["1"]["total"]["calls"] > 0
    tree = ModificationTree.load(run_dir / "tree.json")
    assert [n.trial for n in tree.nodes] == [0, 1, 2]


# ---------------------------------------------------------------------------------------- running totals
def _rescan(calls, trial=None, role=None) -> dict:
    """The totals by a plain pass over every call (what the ledger did before it kept running totals)."""
    mine = [c for c in calls if (trial is None or c.trial == trial) and (role is None or c.role == role)]
    return {"calls": len(mine), "cached_calls": sum(c.cached for c in mine),
            "prompt_tokens": sum(c.prompt_tokens for c in mine),
            "tokens": sum(c.prompt_tokens + c.completion_tokens for c in mine),
            "spent_tokens": sum(c.prompt_tokens + c.completion_tokens for c in mine if not c.cached),
            "usd": pytest.approx(sum(c.usd for c in mine)), "retries": sum(c.attempts - 1 for c in mine)}


def test_running_totals_after_saves_equal_a_full_rescan(tmp_path: Path):
    ledger = _ledger(tmp_path, clock=lambda: 100.0)  # time held still: elapsed_s is the same in both documents
    for trial in range(1, 13):
        with ledger.charging(str(trial)):
            for i, role in enumerate(("Proposer", "Reflector", "Modifier", "Modifier")):
                ledger.record(role, "m", 100 * trial + i, 7 * i, cached=(trial + i) % 5 == 0, attempts=1 + i % 2)
        ledger.save(tmp_path / "usage.json")
        if trial == 8:
            ledger.set_aside(6)  # calls change trial: the totals follow
        if trial == 10:
            ledger.calls.append(ledger.calls[0].model_copy(update={"trial": "10"}))  # appended from outside
    saved = json.loads((tmp_path / "usage.json").read_text())
    assert saved == json.loads(json.dumps(ledger.to_json()))  # the spliced text is the whole document
    assert (tmp_path / "usage.json").read_text() == json.dumps(ledger.to_json(), indent=2)
    for trial in {c.trial for c in ledger.calls} | {None}:
        for role in ("Proposer", "Reflector", "Modifier", None):
            got = ledger.totals(trial, role)
            assert {k: got[k] for k in _rescan([])} == _rescan(ledger.calls, trial, role), (trial, role)
    assert saved["total"]["calls"] == len(saved["calls"]) == 12 * 4 + 1
    assert {t: v["total"]["tokens"] for t, v in saved["per_trial"].items()} == \
           {t: _rescan(ledger.calls, t)["tokens"] for t in dict.fromkeys(c.trial for c in ledger.calls)}
    again = _ledger(tmp_path)  # read back from the journal: the same totals (the outside append is not in it)
    assert again.totals("7-interrupted") == ledger.totals("7-interrupted") and again.totals("9") == ledger.totals("9")
