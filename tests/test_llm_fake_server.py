"""The real OpenAIChatCompletionClient against the fake OpenAI server (tests/fake_openai_server.py):
the HTTP round trip gives what the offline designer gives directly, and HTTP failures surface as
the openai exceptions a real service would raise."""
from __future__ import annotations

import asyncio
import json
import urllib.request

import openai
import pytest
from autogen_core import FunctionCall
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    SystemMessage,
    UserMessage,
)
from autogen_ext.models.openai import OpenAIChatCompletionClient
from fake_openai_server import FakeOpenAIServer, to_autogen

from agents.factory import DEFAULT_ROOTS
from agents.offline.client import OfflineDesignerClient
from tools.memory_tools import knowledge_tool

MODEL_INFO = {"vision": False, "function_calling": True, "json_output": True, "family": "unknown",
              "structured_output": False}
TASK = ("Trial 1. Improve the base block of modification-tree node 0 (validation accuracy 91.20%, "
        f"75,000 params, 11,000,000 FLOPs).\n\n```block\n{DEFAULT_ROOTS['nader']}```\n\n"
        "Children already tried at this node:\nnone yet\n")
MESSAGES = [SystemMessage(content="You are the Proposer of a neural-architecture design team."),
            UserMessage(content=TASK, source="user")]
TOOLS = [knowledge_tool(None)]  # only the schema is used: the store is never searched


def client(server: FakeOpenAIServer, api_key: str = "sk-test") -> OpenAIChatCompletionClient:
    return OpenAIChatCompletionClient(model="test-model", base_url=server.base_url, api_key=api_key,
                                      max_retries=0, model_info=MODEL_INFO)


async def ask(server: FakeOpenAIServer, messages=MESSAGES, api_key: str = "sk-test"):
    c = client(server, api_key)
    try:
        return await c.create(messages, tools=TOOLS)
    finally:
        await c.close()


def test_proposer_call_matches_the_offline_designer():
    direct = asyncio.run(OfflineDesignerClient(role="Proposer", seed=0).create(MESSAGES, tools=TOOLS))
    with FakeOpenAIServer(seed=0) as server:
        got = asyncio.run(ask(server))
        sent = server.requests[-1]["body"]
    assert isinstance(got.content, list) and len(got.content) == 1
    call = got.content[0]
    assert isinstance(call, FunctionCall) and call.name == "search_knowledge"
    assert json.loads(call.arguments) == json.loads(direct.content[0].arguments)
    assert call.id == direct.content[0].id
    # What AutoGen put on the wire: the user's source as `name`, the tool schema with `strict`.
    assert sent["model"] == "test-model"
    assert sent["messages"][1]["name"] == "user"
    assert sent["tools"][0]["function"]["name"] == "search_knowledge"


def test_usage_comes_back_and_equals_the_direct_count():
    direct = asyncio.run(OfflineDesignerClient(role="Proposer", seed=0).create(MESSAGES, tools=TOOLS))
    with FakeOpenAIServer() as server:
        got = asyncio.run(ask(server))
    assert got.usage.prompt_tokens > 0 and got.usage.completion_tokens > 0
    assert got.usage == direct.usage


def test_tool_results_round_trip_with_their_names():
    with FakeOpenAIServer() as server:
        first = asyncio.run(ask(server))
        hits = json.dumps({"items": [{"id": "se-net", "text": "squeeze and excite", "source": "Hu 2018"}]})
        follow = MESSAGES + [
            AssistantMessage(content=first.content, source="Proposer"),
            FunctionExecutionResultMessage(content=[FunctionExecutionResult(
                call_id=first.content[0].id, content=hits, name="search_knowledge", is_error=False)])]
        second = asyncio.run(ask(server, follow))
        sent = server.requests[-1]["body"]["messages"]
    assert second.content.startswith("STRATEGY:") and "INSPIRATION: se-net (Hu 2018)" in second.content
    # The wire drops the assistant's source and the result's function name; the server restores the name.
    assert "name" not in sent[2] and "name" not in sent[3]
    back = to_autogen(sent)
    assert back[:2] == MESSAGES and back[3] == follow[3]
    assert back[2].content == follow[2].content and back[2].source == "assistant"


def test_wrong_key_is_an_authentication_error():
    with FakeOpenAIServer(api_key="sk-right") as server:
        with pytest.raises(openai.AuthenticationError) as err:
            asyncio.run(ask(server, api_key="sk-wrong"))
        assert asyncio.run(ask(server, api_key="sk-right")).content[0].name == "search_knowledge"
        statuses = [r["status"] for r in server.requests]
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert statuses == [401, 200]


def test_rate_limit_carries_retry_after_and_leaves_the_policy_untouched():
    with FakeOpenAIServer(faults={1: ("429", 0.2)}) as server:
        with pytest.raises(openai.RateLimitError) as err:
            asyncio.run(ask(server))
        got = asyncio.run(ask(server))
        log = server.requests
    assert err.value.status_code == 429 and err.value.response.headers["retry-after"] == "0.2"
    assert got.content[0].id == "call_0"  # the refused request consumed none of the policy's calls
    assert [(r["status"], r["fault"]) for r in log] == [(429, ("429", 0.2)), (200, None)]


def test_server_error_and_dropped_connection():
    faults = lambda i: {1: "500", 2: "drop"}.get(i)  # noqa: E731 - the callable form
    with FakeOpenAIServer(faults=faults) as server:
        with pytest.raises(openai.InternalServerError):
            asyncio.run(ask(server))
        with pytest.raises(openai.APIConnectionError):
            asyncio.run(ask(server))
        assert asyncio.run(ask(server)).content[0].id == "call_0"
        assert [r["status"] for r in server.requests] == [500, None, 200]


def test_malformed_arguments_are_not_json():
    with FakeOpenAIServer(faults={1: "malformed"}) as server:
        got = asyncio.run(ask(server))
    call = got.content[0]
    assert call.name == "search_knowledge"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.arguments)


def test_models_endpoint_requires_the_key():
    with FakeOpenAIServer(api_key="sk-test") as server:
        req = urllib.request.Request(server.base_url + "/models", headers={"Authorization": "Bearer sk-test"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            models = json.load(resp)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.base_url + "/models", timeout=5)
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    assert err.value.code == 401 and json.load(err.value)["error"]["code"] == "invalid_api_key"


def test_client_retries_honour_retry_after():
    # The openai SDK waits Retry-After (0.05 s here) instead of its ~0.5 s backoff, so this stays fast.
    with FakeOpenAIServer(faults={1: ("429", 0.05), 2: ("429", 0.05)}) as server:
        c = OpenAIChatCompletionClient(model="test-model", base_url=server.base_url, api_key="sk-test",
                                       max_retries=2, model_info=MODEL_INFO)
        got = asyncio.run(c.create(MESSAGES, tools=TOOLS))
        asyncio.run(c.close())
        assert got.content[0].id == "call_0"
        assert [r["status"] for r in server.requests] == [429, 429, 200]
