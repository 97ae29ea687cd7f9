"""Real models, end to end: `python main.py llm=openai_compatible ...` over real HTTP against a fake
OpenAI-compatible server on 127.0.0.1 whose answers come from the offline designer's policy."""
import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from autogen_core.models import SystemMessage, UserMessage
from autogen_ext.models.openai import OpenAIChatCompletionClient

from agents.factory import make_clients
from agents.llm import ManagedClient, ModelCallError, Redactor, RetryPolicy, UsageLedger
from conftest import ROOT
from fake_openai_server import FakeOpenAIServer
from graphs.tree import ModificationTree

# Not shaped like a provider key, so only the redaction of known values can keep it off disk.
KEY = "fake0123456789abcdef-never-on-disk"
KEY_VAR = "OPENAI_COMPATIBLE_API_KEY"
FAST = ["trainer.epochs=1", "trainer.subset=300", "memory.embedder=hashing", "export=false", "progress=false",
        "llm.retry.initial_s=0.05", "llm.retry.jitter_s=0.05"]
# What makes two trees the same design history (costs and times differ by nature).
SAME = ("id", "parent", "trial", "block", "hash", "status", "duplicate_of", "valid_acc", "test_acc", "params",
        "flops", "widths")


def main(run_dir: Path, *overrides: str, key: str | None = KEY, server: FakeOpenAIServer | None = None,
         port: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KEY_VAR}
    env.update({"PYTHONPATH": str(ROOT), "HOME": str(run_dir.parent), "HF_HUB_OFFLINE": "1"})
    if key is not None:
        env[KEY_VAR] = key
    llm = []
    if server is not None or port is not None:
        llm = ["llm=openai_compatible", f"llm.base_url=http://127.0.0.1:{port or server.port}/v1",
               "llm.model=test-model"]
    return subprocess.run([sys.executable, "main.py", *FAST, *llm, *overrides, f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


def history(run_dir: Path) -> list[dict]:
    tree = ModificationTree.load(run_dir / "tree.json")
    return [{k: getattr(n, k, None) for k in SAME} for n in tree.nodes]


def records(run_dir: Path, trial: int) -> list[dict]:
    path = run_dir / "trials" / f"{trial:04d}" / "transcript.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("offline") / "run"
    res = main(run_dir, "trials=3")
    assert res.returncode == 0, res.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A 3-trial run over HTTP that records every call in a cache; the server is stopped afterwards."""
    base = tmp_path_factory.mktemp("http")
    with FakeOpenAIServer(seed=0, api_key=KEY) as server:
        res = main(base / "run", "trials=3", f"llm.cache={base / 'cache'}", server=server)
        requests = server.requests
        port = server.port
    assert res.returncode == 0, res.stderr[-3000:]
    return {"run": base / "run", "cache": base / "cache", "requests": requests, "port": port, "stderr": res.stderr,
            "stdout": res.stdout}


@pytest.mark.slow
def test_http_run_is_as_complete_as_an_offline_run(recorded, offline):
    run_dir = recorded["run"]
    chats = [r for r in recorded["requests"] if r["path"] == "/v1/chat/completions"]
    assert chats and all(r["status"] == 200 for r in chats)
    assert any(r["body"].get("tools") for r in chats) and all(r["body"]["model"] == "test-model" for r in chats)
    # The same design history as the offline designer's own run: every tool call crossed HTTP intact.
    assert history(run_dir) == history(offline)
    assert len(history(run_dir)) == 4
    for trial in (1, 2, 3):
        log = records(run_dir, trial)
        calls = {c["call"] for r in log if r["type"] == "ToolCallRequestEvent" for c in r["content"]}
        assert {"search_knowledge", "search_experience", "edit_block", "validate_block"} <= calls
        assert {r["role"] for r in log if r["type"] == "TextMessage"} >= {"Proposer", "Reflector", "Modifier"}
        assert (run_dir / "trials" / f"{trial:04d}" / "transcript.md").exists()
    usage = json.loads((run_dir / "usage.json").read_text())
    ref = json.loads((offline / "usage.json").read_text())
    assert usage["total"]["calls"] == len(chats) and usage["total"]["tokens"] == ref["total"]["tokens"] > 0
    assert set(usage["per_role"]) == {"Proposer", "Reflector", "Modifier"}
    assert set(usage["per_trial"]) == {"1", "2", "3"} and usage["per_model"].keys() == {"test-model"}
    # the result on stdout, progress on stderr, both in main.log
    assert "model usage:" in recorded["stdout"] and "model usage:" not in recorded["stderr"]
    assert "trial 3/3" in recorded["stderr"] and "trial 3/3" not in recorded["stdout"]
    log = (run_dir / "main.log").read_text()
    assert "model usage:" in log and "trial 3/3" in log and "\x1b[" not in log


def test_the_key_never_reaches_a_file(recorded):
    files = [p for d in (recorded["run"], recorded["cache"]) for p in d.rglob("*") if p.is_file()]
    assert len(files) > 20 and any(p.name == "overrides.yaml" for p in files)
    leaks = [p for p in files if KEY.encode() in p.read_bytes()]
    assert leaks == []


@pytest.mark.slow
def test_replay_with_the_server_stopped_gives_the_same_tree(recorded, tmp_path):
    # No server, no key: what a machine without network has. Replay mode never calls a model.
    res = main(tmp_path / "replay", "trials=3", f"llm.cache={recorded['cache']}", "llm.cache_mode=replay",
               port=recorded["port"], key=None)
    assert res.returncode == 0, res.stderr[-3000:]
    assert history(tmp_path / "replay") == history(recorded["run"])
    total = json.loads((tmp_path / "replay" / "usage.json").read_text())["total"]
    assert total["cached_calls"] == total["calls"] > 0 and total["spent_tokens"] == 0 and total["usd"] == 0


@pytest.mark.slow
def test_injected_429_500_drop_and_malformed_calls_still_complete_every_trial(tmp_path, offline):
    faults = {2: ("429", 1), 5: "500", 9: "malformed", 14: "drop", 30: "malformed"}
    with FakeOpenAIServer(seed=0, api_key=KEY, faults=faults) as server:
        res = main(tmp_path / "run", "trials=3", server=server)
        requests, malformed = server.requests, server.malformed_sent
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = tmp_path / "run"
    tree = history(run_dir)
    assert [n["trial"] for n in tree] == [0, 1, 2, 3] and all(n["status"] != "failed" for n in tree)
    assert [r["fault"] for r in requests if r["fault"]] == [faults[i] for i in sorted(faults)]
    assert malformed == 2
    events = [r["content"] for t in (1, 2, 3) for r in records(run_dir, t) if r["type"] == "ModelCallEvent"]
    assert any("HTTP 429" in e and "Retry-After 1s" in e and "in 1.0" in e for e in events)
    assert any("HTTP 500" in e for e in events) and any("APIConnectionError" in e for e in events)
    log = (run_dir / "main.log").read_text()
    assert log.count("retry 2/6") == 3
    # A garbled tool call comes back to the model as an error result, and the model calls again.
    bad = [c for t in (1, 2, 3) for r in records(run_dir, t) if r["type"] == "ToolCallExecutionEvent"
           for c in r["content"] if c["is_error"]]
    assert len(bad) == 2 and all(str(c["content"]).startswith("Error:") for c in bad)
    usage = json.loads((run_dir / "usage.json").read_text())["total"]
    assert usage["retries"] == 3


@pytest.mark.slow
def test_a_model_that_keeps_failing_fails_its_trial_and_the_run_goes_on(tmp_path):
    # Requests 1-2 fail: with 2 attempts per call the first trial's first call gives up, ending that trial.
    with FakeOpenAIServer(seed=0, api_key=KEY, faults=lambda i: "500" if i <= 2 else None) as server:
        res = main(tmp_path / "run", "trials=2", "llm.retry.attempts=2", server=server)
    assert res.returncode == 0, res.stderr[-3000:]
    tree = ModificationTree.load(tmp_path / "run" / "tree.json")
    assert tree.get(1).status == "failed" and "HTTP 500" in tree.get(1).reason
    assert "gave up after 2 attempt(s)" in tree.get(1).reason
    assert tree.get(2).status in ("trained", "duplicate", "invalid")


@pytest.mark.slow
def test_a_token_cap_stops_after_the_trial_that_crosses_it(offline, tmp_path):
    per_trial = json.loads((offline / "usage.json").read_text())["per_trial"]
    cap = per_trial["1"]["total"]["tokens"] + per_trial["2"]["total"]["tokens"] - 1  # crossed during trial 2
    res = main(tmp_path / "run", "trials=5", f"budget.max_tokens={cap}")
    assert res.returncode == 0, res.stderr[-3000:]
    # the run's line (stderr) and its summary (stdout) say why it stopped
    assert "budget.max_tokens reached" in res.stderr and "stopped after trial 2" in res.stderr
    assert "budget.max_tokens reached" in res.stdout and "stopped after trial 2" in res.stdout
    assert history(tmp_path / "run") == history(offline)[:3]  # the tree up to trial 2 is saved
    usage = json.loads((tmp_path / "run" / "usage.json").read_text())
    assert usage["stopped"].startswith("budget.max_tokens reached") and set(usage["per_trial"]) == {"1", "2"}
    assert (tmp_path / "run" / "best" / "block.txt").exists()


@pytest.mark.slow
def test_a_rejected_or_missing_key_stops_before_any_trial_with_one_line(tmp_path):
    with FakeOpenAIServer(seed=0, api_key=KEY) as server:
        res = main(tmp_path / "run", "trials=1", key="sk-wrong-key-0123456789abcdef", server=server)
        chats = [r for r in server.requests if r["path"] == "/v1/chat/completions"]
    assert res.returncode == 2 and chats == []  # 2: a configuration or environment problem, found before work
    line = [x for x in res.stderr.splitlines() if KEY_VAR in x]
    assert len(line) == 1 and KEY_VAR in line[0] and "rejected" in line[0] and "Incorrect API key" in line[0]
    assert not (tmp_path / "run" / "tree.json").exists() and "Traceback" not in res.stderr
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    res = subprocess.run([sys.executable, "main.py", "llm=openai", f"hydra.run.dir={tmp_path / 'run2'}"], cwd=ROOT,
                         capture_output=True, text=True, env={**env, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert res.returncode == 2 and "environment variable OPENAI_API_KEY is not set" in res.stderr
    assert not (tmp_path / "run2" / "tree.json").exists()


# --------------------------------------------------------------------------- one client, over HTTP
def _client(server: FakeOpenAIServer, key: str = KEY, attempts: int = 4, max_wait_s: float = 300.0, **kw):
    """A managed client as the factory builds one; `kw`: ManagedClient's options (timeout_s, redact)."""
    ledger = UsageLedger()
    inner = OpenAIChatCompletionClient(model="test-model", base_url=server.base_url, api_key=key, max_retries=0,
                                       model_info={"vision": False, "function_calling": True, "json_output": True,
                                                   "family": "unknown", "structured_output": False})
    policy = RetryPolicy(attempts=attempts, max_wait_s=max_wait_s, initial_s=0.01, jitter_s=0.0, max_backoff_s=0.05)
    return ManagedClient(inner, role="Proposer", model="test-model", ledger=ledger, retry=policy, **kw), ledger


MESSAGES = [SystemMessage(content="You are the Proposer."),
            UserMessage(content="Trial 1. Improve the block.\n\n```block\n##B##\n0:input\n1:output\n0->1\n```\n",
                        source="user")]


def test_retry_after_is_honoured_and_permanent_errors_fail_at_once():
    with FakeOpenAIServer(seed=0, api_key=KEY, faults={1: ("429", 0.3)}) as server:
        client, ledger = _client(server)
        result = asyncio.run(client.create(MESSAGES))
        assert isinstance(result.content, str) and ledger.calls[0].attempts == 2
        assert ledger.calls[0].errors == ["HTTP 429: Rate limit reached (injected)"]
        assert "(Retry-After 0.3s); retry 2/4 in 0.30s" in ledger.take_events("setup")[0]["text"]
    with FakeOpenAIServer(seed=0, api_key=KEY) as server:
        client, ledger = _client(server, key="sk-wrong-key-0123456789abcdef")
        with pytest.raises(ModelCallError, match=r"HTTP 401: Incorrect API key provided \(permanent error after 1"):
            asyncio.run(client.create(MESSAGES))
        assert len(server.requests) == 1
    with FakeOpenAIServer(seed=0, api_key=KEY, faults=lambda i: "500") as server:
        client, ledger = _client(server, attempts=3)
        with pytest.raises(ModelCallError, match=r"HTTP 500: .* \(gave up after 3 attempt"):
            asyncio.run(client.create(MESSAGES))
        assert len(server.requests) == 3


def test_total_wait_bounds_retries_even_when_the_server_asks_for_more():
    with FakeOpenAIServer(seed=0, api_key=KEY, faults={1: ("429", 30)}) as server:
        client, ledger = _client(server, attempts=6, max_wait_s=2.0)
        with pytest.raises(ModelCallError, match=r"HTTP 429: .* \(gave up after 1 attempt\(s\): the server's "
                                                 r"Retry-After 30s is more than llm.retry.max_wait_s=2s allows\)"):
            asyncio.run(client.create(MESSAGES))
        assert len(server.requests) == 1


def test_a_retry_never_runs_past_the_total_wait_even_on_a_hung_server():
    # The first try fails fast; the retry meets a server that answers only after 20 s. With a 60 s
    # request timeout the retry would wait for that answer; llm.retry.max_wait_s=1.5 ends it first.
    with FakeOpenAIServer(seed=0, api_key=KEY, faults={1: "500", 2: ("slow", 20)}) as server:
        client, ledger = _client(server, attempts=6, max_wait_s=1.5, timeout_s=60)
        with pytest.raises(ModelCallError) as err:
            asyncio.run(client.create(MESSAGES))
    # The retry's own limit was what was left of the 1.5 s, not the 60 s request timeout.
    limit = float(re.search(r"TimeoutError: no answer within ([0-9.]+)s", str(err.value)).group(1))
    assert limit <= 1.5, str(err.value)
    assert "(gave up after 2 attempt(s): llm.retry.max_wait_s=1.5s used up)" in str(err.value)


def test_errors_that_quote_the_key_are_redacted_when_raised():
    # A server that echoes the Authorization header in its error text: the ModelCallError that the
    # trial and the Reader print must not carry the key.
    with FakeOpenAIServer(seed=0, api_key=KEY, faults={1: "echo-key"}) as server:
        client, ledger = _client(server, redact=Redactor([KEY]))
        with pytest.raises(ModelCallError) as err:
            asyncio.run(client.create(MESSAGES))
    assert "HTTP 400: Malformed header: Bearer ***" in str(err.value) and KEY not in str(err.value)
    assert KEY not in json.dumps([c.model_dump() for c in ledger.calls])


def test_a_key_with_a_trailing_newline_passes_the_key_check_and_calls(monkeypatch):
    monkeypatch.setenv(KEY_VAR, KEY + "\n")  # as pasted from a file
    with FakeOpenAIServer(seed=0, api_key=KEY) as server:
        cs = make_clients(config("llm=openai_compatible", "llm.model=test-model", f"llm.base_url={server.base_url}"))
        assert [w for w in cs.warnings if not w.startswith("no price")] == []
        assert isinstance(asyncio.run(cs.clients["Proposer"].create(MESSAGES)).content, str)
        asyncio.run(cs.close())
        assert [r["status"] for r in server.requests] == [200, 200]  # the model list, then the call


def test_secrets_from_the_environment_never_reach_the_cache(monkeypatch, tmp_path):
    gateway = "gw0123456789-gateway-secret"
    monkeypatch.setenv("GW_KEY", gateway)
    monkeypatch.setenv(KEY_VAR, KEY)
    with FakeOpenAIServer(seed=0, api_key=KEY) as server:
        cs = make_clients(config("llm=openai_compatible", "llm.model=test-model", f"llm.base_url={server.base_url}",
                                 "+llm.client.default_query={api-key:'${oc.env:GW_KEY}'}",
                                 f"llm.cache={tmp_path / 'cache'}"), check=False)
        asyncio.run(cs.clients["Proposer"].create(MESSAGES))
        asyncio.run(cs.close())
        assert len(server.requests) == 1
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 1 and not [p for p in files if gateway.encode() in p.read_bytes() or KEY.encode() in
                                    p.read_bytes()]


def test_a_role_on_another_server_sends_that_servers_key(monkeypatch):
    # The run is on OpenAI; the Proposer on a local server that wants its own key. Before, the
    # Proposer would have sent $OPENAI_API_KEY there and been refused.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-0123456789abcdefgh")
    monkeypatch.setenv(KEY_VAR, KEY)
    with FakeOpenAIServer(seed=0, api_key=KEY) as server:
        cs = make_clients(config("llm=openai", f"agents.proposer.llm={{provider:openai_compatible,model:test-model,"
                                               f"base_url:'{server.base_url}'}}"), check=False)
        assert isinstance(asyncio.run(cs.clients["Proposer"].create(MESSAGES)).content, str)
        asyncio.run(cs.close())
        assert [r["status"] for r in server.requests] == [200]


def config(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.slow
def test_a_key_typed_on_the_command_line_is_refused_and_masked_in_hydra_files(tmp_path):
    literal = "typed0123456789literal"
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "main.py", "llm=openai", f"+llm.client.api_key={literal}",
                          f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-env-0123456789abcdef"},
                         timeout=120)
    assert res.returncode == 2 and "llm.client.api_key holds a literal secret" in res.stderr
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "overrides.yaml" for p in files)
    assert [p for p in files if literal.encode() in p.read_bytes()] == []
    assert "api_key: '***'" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_a_key_pasted_into_api_key_env_is_refused_in_one_line_and_written_nowhere(tmp_path):
    pasted = "sk-proj-PASTEDpasted0123456789"
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "main.py", "llm=openai", f"llm.api_key_env={pasted}",
                          f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    line = [x for x in res.stderr.splitlines() if "llm.api_key_env" in x]
    assert res.returncode == 2 and len(line) == 1 and "llm.api_key_env must be the name of an environment" in line[0]
    assert pasted not in res.stderr + res.stdout and "PASTED" not in res.stderr
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "overrides.yaml" for p in files)
    assert [p for p in files if b"PASTEDpasted" in p.read_bytes()] == []
    assert "api_key_env: '***'" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_a_sweep_masks_typed_keys_in_its_multirun_yaml_too(tmp_path):
    literal, pasted = "typed0123456789literal", "sk-proj-PASTEDpasted0123456789"
    sweep = tmp_path / "sweep"
    res = subprocess.run([sys.executable, "main.py", "-m", "llm=openai", f"+llm.client.api_key={literal}",
                          f"llm.api_key_env={pasted}", f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert res.returncode == 2 and "llm.client.api_key holds a literal secret" in res.stderr
    files = [p for p in sweep.rglob("*") if p.is_file()]
    assert (sweep / "multirun.yaml") in files and any(p.name == "overrides.yaml" for p in files)
    assert [p for p in files if literal.encode() in p.read_bytes() or b"PASTEDpasted" in p.read_bytes()] == []


@pytest.mark.slow
def test_a_replay_with_the_same_cap_stops_where_the_capped_run_would(recorded, tmp_path):
    # Caps count replayed calls as made, so replaying with a cap crossed during trial 2 stops after
    # trial 2, as the run that recorded the cache would have; what was spent is still $0 and 0 tokens.
    per_trial = json.loads((recorded["run"] / "usage.json").read_text())["per_trial"]
    cap = per_trial["1"]["total"]["tokens"] + per_trial["2"]["total"]["tokens"] - 1
    res = main(tmp_path / "replay", "trials=3", f"llm.cache={recorded['cache']}", "llm.cache_mode=replay",
               f"budget.max_tokens={cap}", port=recorded["port"], key=None)
    assert res.returncode == 0, res.stderr[-3000:]
    # the run's line (stderr) and its summary (stdout) say why it stopped
    assert "budget.max_tokens reached" in res.stderr and "stopped after trial 2" in res.stderr
    assert "budget.max_tokens reached" in res.stdout and "stopped after trial 2" in res.stdout
    assert history(tmp_path / "replay") == history(recorded["run"])[:3]
    usage = json.loads((tmp_path / "replay" / "usage.json").read_text())
    assert set(usage["per_trial"]) == {"1", "2"} and usage["total"]["spent_tokens"] == 0
    assert usage["total"]["usd"] == 0 and usage["total"]["tokens"] > cap


# --------------------------------------------------------------------------- failures in the log
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.slow
def test_a_failed_model_call_is_one_log_line_with_its_trace_only_at_debug(tmp_path):
    # The real AutoGen team on a server that fails every call: AutoGen's runtime logs the failure
    # with a traceback, then once more for each other agent; with OneLineFailures on its logger the
    # client's own one line is all that is left above DEBUG.
    from rich.console import Console

    from agents.factory import build_run
    from agents.llm.errors import one_line_failures

    handler, debug_log = _Records(), logging.getLogger("nader.llm")
    logging.getLogger().addHandler(handler)
    level = debug_log.level
    debug_log.setLevel(logging.DEBUG)
    try:
        with FakeOpenAIServer(seed=0, faults=lambda i: "500") as server, one_line_failures():
            cfg = config(*FAST, "trials=1", "llm=openai_compatible", f"llm.base_url={server.base_url}",
                         "llm.model=test-model", "llm.retry.attempts=2")
            summary = asyncio.run(build_run(cfg, tmp_path / "run", Console(file=open(os.devnull, "w")))())
    finally:
        logging.getLogger().removeHandler(handler)
        debug_log.setLevel(level)
    assert summary.client_failures == 1
    shown = [r for r in handler.records if r.levelno >= logging.WARNING]
    assert [(r.levelname, r.name) for r in shown] == [("WARNING", "nader.llm"), ("ERROR", "nader.llm")]
    assert "retry 2/2" in shown[0].getMessage() and "(gave up after 2 attempt(s))" in shown[1].getMessage()
    text = logging.Formatter().format  # the message with its traceback, if it has one
    assert all("\n" not in text(r) for r in shown)
    traces = [text(r) for r in handler.records if r.levelno == logging.DEBUG and "Traceback" in text(r)]
    assert len(traces) == 1 and "agents.llm.errors.ModelCallError: Proposer (test-model): HTTP 500" in traces[0]


def test_main_log_holds_one_line_per_failed_model_call_and_no_traceback(tmp_path):
    with FakeOpenAIServer(seed=0, api_key=KEY, faults=lambda i: "500") as server:
        res = main(tmp_path / "run", "trials=2", "llm.retry.attempts=2", server=server)
    log = (tmp_path / "run" / "main.log").read_text()
    assert "Traceback" not in log + res.stdout + res.stderr, log
    failures = [line for line in log.splitlines() if "gave up after 2 attempt(s)" in line and "[ERROR]" in line]
    assert len(failures) == 2  # one per failed call: one per trial
    assert sum("[ERROR]" in line for line in log.splitlines()) == 2
    # the run's own lines are there too: each trial's outcome, and the summary
    assert sum(line.startswith("  -> trial ") and "failed" in line for line in log.splitlines()) == 2
    assert "2 trials (2 failed)" in log
