"""Ledger, replay cache, secret handling and provider configs of agents/llm, without a server."""
import asyncio
import json
import shlex

import pytest
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, RequestUsage, SystemMessage, UserMessage
from hydra import compose, initialize_config_dir

from agents.factory import RunSetupError, make_clients
from agents.llm import Caps, ManagedClient, ModelCallError, Redactor, ReplayCache, RetryPolicy, UsageLedger
from agents.llm.cache import request_key, request_record
from agents.llm.secrets import literal_secrets, masked_yaml
from agents.offline.client import OfflineDesignerClient
from conftest import ROOT
from fake_openai_server import FakeOpenAIServer

PROVIDERS = ["offline", "openai", "openai_compatible", "azure_openai", "anthropic", "ollama"]
AZURE_ENDPOINT = {"azure_openai": ["llm.endpoint=https://res.openai.azure.com"]}  # it has no default


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def proposer_messages(trial: int = 1):
    from agents.factory import DEFAULT_ROOTS

    return [SystemMessage(content="You are the Proposer of a team."),
            UserMessage(content=f"Trial {trial}. Improve the base block of node 0.\n\n```block\n"
                                f"{DEFAULT_ROOTS['nader']}```\n", source="user")]


# ---------------------------------------------------------------------------------------- ledger
def test_ledger_prices_calls_per_role_and_trial_and_skips_replays():
    ledger = UsageLedger({"m": {"input": 2.0, "output": 8.0}})
    with ledger.charging("1"):
        ledger.record("Proposer", "m", 1_000_000, 500_000)
        ledger.record("Modifier", "m", 1000, 0, cached=True)
    with ledger.charging("2"):
        ledger.record("Modifier", "other-model", 10, 10)  # no price: counted, at $0
    t = ledger.totals()
    assert t["usd"] == pytest.approx(2.0 + 4.0)
    assert t["list_usd"] == pytest.approx(2.0 + 4.0 + 1000 * 2.0 / 1e6)  # the replay at list price
    assert t["tokens"] == 1_500_000 + 1000 + 20 and t["spent_tokens"] == 1_500_000 + 20
    assert ledger.totals("1")["calls"] == 2 and ledger.totals("1")["cached_calls"] == 1
    assert ledger.by("role")["Modifier"]["tokens"] == 1020
    assert set(ledger.by("model")) == {"m", "other-model"}


def test_ledger_caps_name_the_cap_and_resume_keeps_totals(tmp_path):
    ledger = UsageLedger({"m": {"input": 1.0, "output": 1.0}}, Caps(max_tokens=100, max_usd=5.0))
    ledger.record("Proposer", "m", 60, 0)
    assert ledger.exceeded() is None
    ledger.record("Proposer", "m", 30, 20)
    assert ledger.exceeded().startswith("budget.max_tokens reached: 110 tokens used, cap 100")
    ledger.save(tmp_path / "usage.json")
    again = UsageLedger({}, Caps(max_tokens=1000))
    again.resume(tmp_path / "usage.json")
    assert again.totals()["tokens"] == 110 and again.elapsed_s() >= 0
    # Hours add up over resumes of the same run directory.
    (tmp_path / "long.json").write_text(json.dumps({"calls": [], "elapsed_s": 7300}))
    timed = UsageLedger({}, Caps(max_hours=2))
    timed.resume(tmp_path / "long.json")
    assert timed.exceeded().startswith("budget.max_hours reached: 2.03 h elapsed, cap 2 h")
    with pytest.raises(ValueError):
        Caps(max_tokens=-1)


# ---------------------------------------------------------------------------------------- cache
def test_cache_key_depends_on_content_only_and_round_trips_tool_calls(tmp_path):
    a = request_record("m", proposer_messages(1), [], "auto")
    assert request_key(a) == request_key(request_record("m", proposer_messages(1), [], "auto"))
    assert request_key(a) != request_key(request_record("m", proposer_messages(2), [], "auto"))
    assert request_key(a) != request_key(request_record("other", proposer_messages(1), [], "auto"))
    cache = ReplayCache(tmp_path / "c")
    result = CreateResult(finish_reason="function_calls", usage=RequestUsage(prompt_tokens=5, completion_tokens=2),
                          content=[FunctionCall(id="call_1", name="search_knowledge", arguments='{"query": "x"}')],
                          cached=False)
    cache.put(request_key(a), a, result)
    back = cache.get(request_key(a))
    assert back.content == result.content and back.usage == result.usage and len(cache) == 1
    assert cache.get("0" * 64) is None
    with pytest.raises(ValueError, match="readwrite or replay"):
        ReplayCache(tmp_path / "d", mode="sometimes")


def test_managed_client_records_then_replays_without_calling_the_model(tmp_path):
    class Counting(OfflineDesignerClient):
        calls = 0

        async def create(self, *a, **k):
            Counting.calls += 1
            return await super().create(*a, **k)

    async def go(mode, inner):
        ledger = UsageLedger()
        client = ManagedClient(inner, role="Proposer", model="offline-designer", ledger=ledger,
                               cache=ReplayCache(tmp_path / "cache", mode))
        return await client.create(proposer_messages()), ledger

    first, l1 = asyncio.run(go("readwrite", Counting(role="Proposer")))
    second, l2 = asyncio.run(go("replay", Counting(role="Proposer")))
    assert Counting.calls == 1
    assert second.content == first.content and second.cached and not first.cached
    assert l2.totals()["cached_calls"] == 1 and l2.totals()["spent_tokens"] == 0
    assert l2.totals()["tokens"] == l1.totals()["tokens"] > 0

    async def miss():
        client = ManagedClient(Counting(role="Proposer"), role="Proposer", model="offline-designer", ledger=UsageLedger(),
                               cache=ReplayCache(tmp_path / "cache", "replay"))
        await client.create(proposer_messages(7))

    with pytest.raises(ModelCallError, match="not in the replay cache"):
        asyncio.run(miss())


# ---------------------------------------------------------------------------------------- secrets
def test_redactor_masks_known_values_and_key_shapes():
    r = Redactor(["my-secret-value"])
    assert r("key=my-secret-value!") == "key=***!"
    assert r("Bearer sk-abcdefghijklmnopqrstuv") == "Bearer ***"
    assert r("nothing secret here") == "nothing secret here"


def test_literal_keys_are_found_masked_in_dumps_and_refused(monkeypatch):
    cfg = config("llm=openai", "+llm.client.api_key=sk-literal-key-0123456789")
    assert literal_secrets(cfg) == [("llm.client.api_key", "sk-literal-key-0123456789")]
    dump = masked_yaml(cfg)
    assert "sk-literal" not in dump and "api_key: '***'" in dump
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-0123456789abc")
    with pytest.raises(RunSetupError, match="llm.client.api_key holds a literal secret"):
        make_clients(cfg, check=False)
    # An interpolation from the environment is not a literal secret.
    assert literal_secrets(config("llm=openai", "+llm.client.api_key=${oc.env:OPENAI_API_KEY}")) == []


@pytest.mark.parametrize("provider,var", [("openai", "OPENAI_API_KEY"), ("azure_openai", "AZURE_OPENAI_API_KEY"),
                                          ("anthropic", "ANTHROPIC_API_KEY")])
def test_a_missing_key_names_its_variable(provider, var, monkeypatch):
    monkeypatch.delenv(var, raising=False)
    with pytest.raises(RunSetupError, match=f"environment variable {var} is not set"):
        make_clients(config(f"llm={provider}", *AZURE_ENDPOINT.get(provider, [])), check=False)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_provider_builds_its_autogen_client(provider, monkeypatch):
    for var in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(var, "test-key-value")
    extra = ["llm.model=test-model"] if provider == "openai_compatible" else AZURE_ENDPOINT.get(provider, [])
    clients = make_clients(config(f"llm={provider}", *extra), check=False)
    inner = clients.clients["Proposer"].inner
    expected = {"offline": "OfflineDesignerClient", "openai": "OpenAIChatCompletionClient",
                "openai_compatible": "OpenAIChatCompletionClient", "azure_openai": "AzureOpenAIChatCompletionClient",
                "anthropic": "AnthropicChatCompletionClient", "ollama": "OllamaChatCompletionClient"}[provider]
    assert type(inner).__name__ == expected
    if provider == "offline":  # the offline designer plays one role per client
        assert {r: c.inner.role for r, c in clients.clients.items()} == {r: r for r in clients.clients}
    else:
        assert {c.inner for c in clients.clients.values()} == {inner}  # one provider client shared by the roles
    asyncio.run(clients.close())


def test_openai_compatible_needs_a_model_name():
    with pytest.raises(RunSetupError, match="llm.model must be set"):
        make_clients(config("llm=openai_compatible"), check=False)


def test_per_role_override_by_provider_name_or_fields(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-value")
    with FakeOpenAIServer(api_key="test-key-value") as server:  # stands in for api.openai.com
        cs = make_clients(config("llm=openai", f"llm.base_url={server.base_url}", "agents.proposer.llm=offline",
                                 "agents.modifier.llm={model:gpt-4o}", f"llm.cache={tmp_path / 'cache'}"), check=False)
        assert type(cs.clients["Proposer"].inner).__name__ == "OfflineDesignerClient"
        assert cs.clients["Modifier"].model == "gpt-4o" and cs.clients["Reflector"].model == "gpt-4o-mini"
        assert cs.clients["Modifier"].inner is not cs.clients["Reflector"].inner
        for role in ("Modifier", "Reflector"):
            asyncio.run(cs.clients[role].create(proposer_messages()))
        # ${llm.model} in the client config saw the role's model: that is the model each one asks for.
        assert [r["body"]["model"] for r in server.requests] == ["gpt-4o", "gpt-4o-mini"]
        # Shared settings carry over to a named provider: the offline Proposer records and replays too.
        first, again = (asyncio.run(cs.clients["Proposer"].create(proposer_messages())) for _ in range(2))
        assert not first.cached and again.cached and again.content == first.content
        asyncio.run(cs.close())
    with pytest.raises(RunSetupError, match="no such provider; valid: anthropic, azure_openai"):
        make_clients(config("agents.reader.llm=gpt5"), check=False)


def test_a_dollar_cap_needs_prices_for_the_models_in_use(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-value")
    with pytest.raises(RunSetupError, match="needs a price for model"):
        make_clients(config("llm=openai", "llm.model=unpriced-model", "budget.max_usd=1"), check=False)
    ok = make_clients(config("llm=openai", "budget.max_usd=1"), check=False)
    assert ok.ledger.price("gpt-4o-mini").input == 0.15
    asyncio.run(ok.close())


def test_cache_keys_carry_the_client_settings_so_runs_of_other_seeds_never_mix(tmp_path):
    a = make_clients(config("seed=0", f"llm.cache={tmp_path}"), check=False).clients["Proposer"]
    b = make_clients(config("seed=1", f"llm.cache={tmp_path}"), check=False).clients["Proposer"]
    first = asyncio.run(a.create(proposer_messages()))
    second = asyncio.run(b.create(proposer_messages()))
    assert not first.cached and not second.cached  # seed 1 did not get seed 0's answer
    assert asyncio.run(a.create(proposer_messages())).cached


def test_replay_mode_needs_a_recorded_cache_but_no_key(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RunSetupError, match="holds no recorded calls"):
        make_clients(config("llm=openai", f"llm.cache={tmp_path / 'typo'}", "llm.cache_mode=replay"), check=False)
    with pytest.raises(RunSetupError, match="environment variable OPENAI_API_KEY is not set"):
        make_clients(config("llm=openai", f"llm.cache={tmp_path / 'c'}"), check=False)


def test_a_failure_recorded_in_the_cache_replays_as_the_same_failure(tmp_path):
    class Down(OfflineDesignerClient):
        async def create(self, *a, **k):
            raise ConnectionError("service down")

    async def go(mode, inner):
        client = ManagedClient(inner, role="Proposer", model="m", ledger=UsageLedger(),
                               retry=RetryPolicy(attempts=2, initial_s=0.0, jitter_s=0.0),
                               cache=ReplayCache(tmp_path, mode))
        await client.create(proposer_messages())

    with pytest.raises(ModelCallError) as recorded:
        asyncio.run(go("readwrite", Down(role="Proposer")))
    with pytest.raises(ModelCallError) as replayed:
        asyncio.run(go("replay", OfflineDesignerClient(role="Proposer")))  # would answer, but the recording failed
    assert str(replayed.value) == str(recorded.value) and "gave up after 2 attempt(s)" in str(recorded.value)
    asyncio.run(go("readwrite", OfflineDesignerClient(role="Proposer")))  # read-write mode calls again, and records it


def test_calls_of_an_interrupted_trial_are_set_aside_on_resume():
    ledger = UsageLedger()
    for trial in ("1", "2", "3"):
        with ledger.charging(trial):
            ledger.record("Proposer", "m", 10, 1)
    ledger.set_aside(finished=2)
    assert set(ledger.by("trial")) == {"1", "2", "3-interrupted"} and ledger.totals()["tokens"] == 33


def test_bad_settings_are_one_line_errors(monkeypatch):
    with pytest.raises(RunSetupError, match=r"RetryPolicy attempts: Input should be greater than or equal to 1"):
        make_clients(config("llm.retry.attempts=0"), check=False)
    with pytest.raises(RunSetupError, match=r"budget.max_tokens: Input should be greater than 0 \(got -5\)"):
        make_clients(config("budget.max_tokens=-5"), check=False)
    with pytest.raises(RunSetupError, match=r"Price input: Input should be greater than or equal to 0"):
        make_clients(config("+llm.prices.x={input:-1,output:1}"), check=False)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-value")
    with pytest.raises(RunSetupError) as err:
        make_clients(config("llm=openai", "llm.model=brand-new-model"), check=False)
    hint = "+llm.client.model_info={vision:false,function_calling:true,json_output:true,family:unknown,"
    assert "model_info is required" in str(err.value) and hint in str(err.value)
    # The hint, pasted into a shell as it says (quoted, so that bash leaves the braces alone), is enough.
    given = shlex.split(str(err.value).split("give its capabilities with ", 1)[1])[0]
    ok = make_clients(config("llm=openai", "llm.model=brand-new-model", given), check=False)
    assert ok.clients["Proposer"].model_info["family"] == "unknown"
    asyncio.run(ok.close())


def test_hyphenated_secret_names_are_masked_and_refused():
    cfg = config("llm=openai", "+llm.client.default_headers={x-api-key:literal123456}")
    assert literal_secrets(cfg) == [("llm.client.default_headers.x-api-key", "literal123456")]
    assert "literal123456" not in masked_yaml(cfg)


def test_log_records_with_tracebacks_are_redacted():
    import logging

    from agents.factory import _RedactingFilter

    try:
        raise RuntimeError("server said: bad key secret-value-123")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", ("secret-value-123",),
                                   sys.exc_info())
    assert _RedactingFilter(Redactor(["secret-value-123"])).filter(record)
    text = logging.Formatter().format(record)
    assert "secret-value-123" not in text and "failed with ***" in text and "bad key ***" in text


# ---------------------------------------------------------------------------------------- keys and secrets
def test_a_key_pasted_with_a_newline_is_stripped_and_one_with_inner_whitespace_is_refused(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "  pasted-key-0123456789\r\n")
    with FakeOpenAIServer(api_key="pasted-key-0123456789") as server:  # it accepts the key without whitespace only
        cs = make_clients(config("llm=openai", f"llm.base_url={server.base_url}"), check=False)
        asyncio.run(cs.clients["Proposer"].create(proposer_messages()))
        assert [(r["status"], r["authorization"]) for r in server.requests] == [(200, "Bearer pasted-key-0123456789")]
    assert cs.redact("x pasted-key-0123456789 y") == "x *** y"
    asyncio.run(cs.close())
    for bad in ("pasted-key\n0123456789", "pasted key 0123456789", "pasted-key\x1b0123456789"):
        monkeypatch.setenv("OPENAI_API_KEY", bad)
        with pytest.raises(RunSetupError) as err:
            make_clients(config("llm=openai"), check=False)
        line = str(err.value)
        assert "OPENAI_API_KEY" in line and "whitespace or control characters" in line and "\n" not in line
        assert "0123456789" not in line  # never the key itself
    monkeypatch.setenv("OPENAI_API_KEY", " \n")  # only whitespace: as good as unset
    with pytest.raises(RunSetupError, match="environment variable OPENAI_API_KEY is not set"):
        make_clients(config("llm=openai"), check=False)


def test_the_key_check_turns_any_failure_into_a_redacted_warning():
    from agents.llm.providers import check_key

    # A key that read_key would have refused: the HTTP library raises ValueError on its header.
    llm = config("llm=openai_compatible", "llm.model=m", "llm.base_url=http://127.0.0.1:9/v1").llm
    warning = check_key(llm, "secret-value-123\n", "", redact=Redactor(["secret-value-123"]))
    assert warning.startswith("cannot check the key at http://127.0.0.1:9/v1/models (ValueError")
    assert "secret-value-123" not in warning and "***" in warning


def test_a_key_pasted_into_api_key_env_is_refused_without_echo_and_masked(monkeypatch):
    pasted = "sk-proj-pasted0123456789abcdef"
    cfg = config("llm=openai", f"llm.api_key_env={pasted}")
    with pytest.raises(RunSetupError) as err:
        make_clients(cfg, check=False)
    assert str(err.value).startswith("llm.api_key_env must be the name of an environment variable")
    assert pasted not in str(err.value) and "pasted0123" not in str(err.value)
    assert pasted not in masked_yaml(cfg) and "api_key_env: '***'" in masked_yaml(cfg)
    from agents.llm.secrets import config_secrets

    assert pasted in config_secrets(cfg)  # what main.py scrubs from Hydra's files
    # The same for a role's own variable, and a proper name is left alone.
    with pytest.raises(RunSetupError, match=r"agents.proposer.llm.api_key_env must be the name"):
        make_clients(config("llm=openai", "agents.proposer.llm={api_key_env:'not a name'}"), check=False)
    assert config_secrets(config("llm=openai", "llm.api_key_env=MY_KEY_2")) == []


def test_secrets_from_the_environment_stay_out_of_cache_settings_and_are_redacted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-value")
    monkeypatch.setenv("GW_KEY", "gw-secret-0123456789")
    cs = make_clients(config("llm=openai", "+llm.client.default_query={api-key:'${oc.env:GW_KEY}',region:eu}",
                             "+llm.client.default_headers={X-Auth-Token:'${oc.env:GW_KEY}'}"), check=False)
    settings = cs.clients["Proposer"].settings
    assert "gw-secret" not in json.dumps(settings) and settings["client"]["default_query"] == {"region": "eu"}
    assert cs.redact("echo gw-secret-0123456789") == "echo ***"
    asyncio.run(cs.close())


# ---------------------------------------------------------------------------------------- per-role models
def test_a_role_may_name_a_provider_and_change_its_fields(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key-value")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-key-value")
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    with FakeOpenAIServer() as openai_site, FakeOpenAIServer() as local:
        cs = make_clients(config("llm=openai", f"llm.base_url={openai_site.base_url}", "llm.retry.attempts=3",
                                 "agents.proposer.llm={provider:anthropic}",
                                 "agents.reflector.llm={provider:openai_compatible,model:local-m,"
                                 f"base_url:'{local.base_url}'}}"), check=False)
        proposer, reflector, modifier = (cs.clients[r] for r in ("Proposer", "Reflector", "Modifier"))
        assert type(proposer.inner).__name__ == "AnthropicChatCompletionClient"
        assert proposer.model == "claude-sonnet-4-20250514" and proposer.retry.attempts == 3  # shared settings kept
        for client in (reflector, modifier):
            asyncio.run(client.create(proposer_messages()))
        asyncio.run(cs.close())
    # Another server gets that provider's key variable (unset: no key), never the run's OpenAI key.
    assert [(r["body"]["model"], r["authorization"]) for r in local.requests] == [("local-m", "Bearer not-needed")]
    assert [r["authorization"] for r in openai_site.requests] == ["Bearer openai-key-value"]


def test_role_override_errors_name_the_role_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key-value")
    with pytest.raises(RunSetupError, match=r"^agents.proposer.llm.model must be set for openai_compatible \(e.g. "
                                            r"\"agents.proposer.llm=\{provider:openai_compatible,model:NAME\}\"\)"):
        make_clients(config("llm=openai", "agents.proposer.llm=openai_compatible"), check=False)
    with pytest.raises(RunSetupError, match=r"^agents.modifier.llm.provider=gpt5: no such provider; valid: anthropic"):
        make_clients(config("llm=openai", "agents.modifier.llm={provider:gpt5,model:x}"), check=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(RunSetupError, match=r"environment variable ANTHROPIC_API_KEY is not set: llm=anthropic "
                                            r"\(for the Reader\)"):
        make_clients(config("llm=openai", "agents.reader.llm={provider:anthropic}"), check=False)
    with pytest.raises(RunSetupError, match=r"\+agents.modifier.llm.client.model_info=\{vision:false"):
        make_clients(config("llm=openai", "agents.modifier.llm={model:gpt-9}"), check=False)


# ---------------------------------------------------------------------------------------- addresses
def test_addresses_must_be_urls_and_azure_needs_its_endpoint(monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key-value")
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    with pytest.raises(RunSetupError, match=r"^llm.endpoint must be set for llm=azure_openai \(e.g. "
                                            r"llm.endpoint=https://RESOURCE.openai.azure.com\)$"):
        make_clients(config("llm=azure_openai"), check=False)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    asyncio.run(make_clients(config("llm=azure_openai"), check=False).close())
    for url in ("127.0.0.1:8000/v1", "ftp://host/v1", "http:///v1"):
        with pytest.raises(RunSetupError, match=r"^llm.base_url=.* is not an http:// or https:// URL with a host"):
            make_clients(config("llm=openai_compatible", "llm.model=m", f"llm.base_url={url}"), check=False)


def test_a_host_that_does_not_resolve_or_a_server_that_does_not_answer_is_a_setup_error(monkeypatch):
    import socket

    # The resolver's answers are given here, so that the test sends no DNS query and means the same
    # on every machine: "no such name" for .invalid hosts, "try again" for .flaky ones.
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if str(host).endswith(".flaky"):
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(RunSetupError, match=r"^cannot reach the openai_compatible server at "
                                            r"http://model.flaky/v1/models within 5s \(.*Temporary failure"):
        make_clients(config("llm=openai_compatible", "llm.model=m", "llm.base_url=http://model.flaky/v1",
                            "llm.timeout_s=5"))
    with pytest.raises(RunSetupError, match=r"^cannot resolve the host no-such-host.invalid of llm.base_url"):
        make_clients(config("llm=openai_compatible", "llm.model=m", "llm.base_url=http://no-such-host.invalid/v1"))
    with pytest.raises(RunSetupError, match=r"; to run from llm.cache alone, use llm.cache_mode=replay$"):
        make_clients(config("llm=openai_compatible", "llm.model=m", "llm.base_url=http://no-such-host.invalid/v1",
                            "llm.cache=/tmp/unused-cache"))
    with pytest.raises(RunSetupError, match=r"^cannot reach the openai_compatible server at http://127.0.0.1:9/v1/models "
                                            r"within 120s \(.*\): start it or fix llm.base_url$"):
        make_clients(config("llm=openai_compatible", "llm.model=m", "llm.base_url=http://127.0.0.1:9/v1"))


# ---------------------------------------------------------------------------------------- prices and caps
def test_unpriced_models_are_named_in_a_warning_and_the_offline_designer_is_free(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-value")
    cs = make_clients(config("llm=openai", "llm.model=gpt-4o-2024-11-20", f"+llm.client.model_info={MODEL_INFO}"),
                      check=False)
    assert ("no price for model(s) gpt-4o-2024-11-20: their calls count as $0; add "
            "'+llm.prices.gpt-4o-2024-11-20={input:USD_per_1M,output:USD_per_1M}'") in cs.warnings
    asyncio.run(cs.close())
    priced = make_clients(config("llm=openai", "llm.model=gpt-4o-2024-11-20", f"+llm.client.model_info={MODEL_INFO}",
                                 "+llm.prices.gpt-4o-2024-11-20={input:2.5,output:10}"), check=False)
    assert priced.warnings == []
    asyncio.run(priced.close())
    # A model name given to the offline designer changes nothing it costs: it is not a paid model.
    offline = make_clients(config("agents.modifier.llm={model:gpt-4o}", "budget.max_usd=1"), check=False)
    assert offline.warnings == [] and offline.clients["Modifier"].model == "gpt-4o"
    asyncio.run(offline.clients["Modifier"].create(proposer_messages()))
    assert offline.ledger.totals()["tokens"] > 0 and offline.ledger.totals()["list_usd"] == 0.0


def test_caps_count_replayed_calls_so_a_replay_stops_where_the_recording_did(tmp_path):
    prices = {"m": {"input": 1000.0, "output": 1000.0}}

    async def calls(mode: str, caps: Caps) -> UsageLedger:
        ledger = UsageLedger(prices, caps)
        client = ManagedClient(OfflineDesignerClient(role="Proposer"), role="Proposer", model="m", ledger=ledger,
                               cache=ReplayCache(tmp_path, mode))
        for trial in (1, 2, 3):
            with ledger.charging(str(trial)):
                await client.create(proposer_messages(trial))
        return ledger

    recorded = asyncio.run(calls("readwrite", Caps()))
    per_call = [c.prompt_tokens + c.completion_tokens for c in recorded.calls]
    cap_tokens, cap_usd = per_call[0] + per_call[1] - 1, recorded.calls[0].usd + recorded.calls[1].usd * 0.5
    for caps, name in ((Caps(max_tokens=cap_tokens), "budget.max_tokens"), (Caps(max_usd=cap_usd), "budget.max_usd")):
        replayed = asyncio.run(calls("replay", caps))
        assert replayed.totals()["cached_calls"] == 3
        spent = UsageLedger(prices, caps)
        for c in replayed.calls[:1]:  # after trial 1 no cap is reached, replayed or not
            spent.calls.append(c)
        assert spent.exceeded() is None
        spent.calls.append(replayed.calls[1])  # after trial 2, as in the recorded run
        assert spent.exceeded().startswith(f"{name} reached") and "replayed calls included" in spent.exceeded()
        # What was actually spent is still told apart.
        t = replayed.totals()
        assert t["spent_tokens"] == 0 and t["usd"] == 0.0 and t["list_usd"] == pytest.approx(recorded.totals()["usd"])
        assert "at list price with the replayed calls" in replayed.summary_lines()[0]


MODEL_INFO = "{vision:false,function_calling:true,json_output:true,family:unknown,structured_output:false}"
