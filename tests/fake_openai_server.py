"""A fake OpenAI-compatible chat-completions server for tests, answered by the offline designer.

It lets tests drive the real `OpenAIChatCompletionClient` (HTTP, JSON, auth, retries, errors) end to
end without a network or a model: requests are turned back into AutoGen messages, the deterministic
`OfflineDesignerClient` of the role the system message names decides, and the answer goes out as an OpenAI `chat.completion`.

    with FakeOpenAIServer(seed=0, api_key="sk-test", faults={2: "429"}) as server:
        client = OpenAIChatCompletionClient(model="test-model", base_url=server.base_url, api_key="sk-test", ...)

Faults (by 1-based index of POST /v1/chat/completions, counting refused ones too, or a callable
index -> fault | None):
"429" or ("429", seconds) -> rate limited with Retry-After; "500" -> server error; "drop" -> the
connection closes without a response; "malformed" -> tool-call arguments truncated to invalid JSON (on the next answer that has tool calls);
("slow", seconds) -> the answer comes after that long (a hung server, for timeouts); `latency_s` delays every
answer (a model's own latency, for bench/concurrency.py); "hang" -> no answer until
the server stops, then the connection closes (a test can act while the request is in flight); "echo-key" ->
HTTP 400 whose message quotes the request's Authorization header, as careless servers do.
A request is recorded in `.requests` before its answer is sent, so whoever got an answer finds it there.
Query strings are ignored, as real servers ignore unknown parameters.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from urllib.parse import urlsplit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping

from autogen_core import FunctionCall
from autogen_core.models import (AssistantMessage, FunctionExecutionResult, FunctionExecutionResultMessage,
                                 SystemMessage, UserMessage)

from agents import protocol
from agents.offline.client import OfflineDesignerClient

Fault = Any  # "429" | ("429", seconds) | "500" | "drop" | "malformed" | None


def _text(content: Any) -> str:
    """OpenAI content is a string, null, or a list of parts; the policy reads text only."""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def to_autogen(messages: list[dict]) -> list:
    """OpenAI messages -> AutoGen LLM messages, inverting autogen_ext's transforms. The wire format
    drops a tool result's function name, so it is recovered from the assistant call with that id."""
    out: list = []
    call_names: dict[str, str] = {}
    for m in messages:
        role = m.get("role")
        if role == "system":
            out.append(SystemMessage(content=_text(m.get("content"))))
        elif role == "user":
            out.append(UserMessage(content=_text(m.get("content")), source=m.get("name") or "user"))
        elif role == "assistant":
            source = m.get("name") or "assistant"  # autogen_ext never sends an assistant's name
            if m.get("tool_calls"):
                calls = [FunctionCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
                         for c in m["tool_calls"]]
                call_names.update((c.id, c.name) for c in calls)  # later calls win if an id repeats
                out.append(AssistantMessage(content=calls, thought=m.get("content") or None, source=source))
            else:
                out.append(AssistantMessage(content=_text(m.get("content")), source=source))
        elif role == "tool":
            result = FunctionExecutionResult(call_id=m["tool_call_id"], content=_text(m.get("content")),
                                             name=call_names.get(m["tool_call_id"], ""), is_error=False)
            if out and isinstance(out[-1], FunctionExecutionResultMessage):  # consecutive results: one message
                out[-1].content.append(result)
            else:
                out.append(FunctionExecutionResultMessage(content=[result]))
        else:
            raise ValueError(f"unsupported message role {role!r}")
    return out


def to_tool_schemas(tools: list[dict] | None) -> list[dict]:
    """OpenAI tools -> ToolSchema dicts, keeping key order and `strict` so the policy's prompt-token
    count matches the one it makes for the same Tool objects called directly."""
    schemas = []
    for f in (t["function"] for t in tools or []):
        schemas.append({"name": f["name"], "description": f.get("description", ""), "parameters": f.get("parameters", {})})
        if "strict" in f:
            schemas[-1]["strict"] = f["strict"]
    return schemas


def _error(message: str, type_: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class FakeOpenAIServer:
    """`.requests`: one dict per answered HTTP request (method, path, status or None if dropped, fault,
    authorization header, body); `.chat_requests`: chat requests received so far, in flight included."""

    def __init__(self, seed: int = 0, api_key: str | None = None,
                 faults: Mapping[int, Fault] | Callable[[int], Fault] | None = None, latency_s: float = 0.0):
        self.api_key, self.faults = api_key, faults or {}
        self.latency_s = latency_s  # every chat answer takes this long (a real model's latency); calls overlap
        self.seed = seed
        self._policies: dict[str, OfflineDesignerClient] = {}  # one designer per role, as a run has
        self._policy_lock = threading.Lock()  # one decision at a time: the policies count their calls
        self._lock = threading.Lock()
        self._requests: list[dict] = []
        self._chat_calls = self._completions = 0
        self.malformed_sent = 0
        self._malformed_pending = False  # a "malformed" that met a text answer waits for the next tool call
        self._httpd: ThreadingHTTPServer | None = None
        self._stopping = threading.Event()  # releases "hang" requests

    def start(self) -> "FakeOpenAIServer":
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: the OS picks a free one
        self._httpd.daemon_threads = True
        # A short poll interval so stop() returns in ~50 ms rather than the default 0.5 s.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    __enter__ = start

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._requests]

    @property
    def chat_requests(self) -> int:
        with self._lock:
            return self._chat_calls

    def wait_for(self, condition: Callable[["FakeOpenAIServer"], bool], timeout_s: float = 60.0) -> None:
        """Poll until `condition(self)` holds; TimeoutError naming what was seen if it does not."""
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout_s}s: {self.chat_requests} chat requests, "
                                   f"{len(self.requests)} answered")
            time.sleep(0.02)

    def _record(self, **entry) -> None:
        with self._lock:
            self._requests.append(entry)

    def _next_fault(self) -> Fault:
        with self._lock:
            self._chat_calls += 1
            index = self._chat_calls
        return self.faults(index) if callable(self.faults) else self.faults.get(index)

    def complete(self, body: dict, malformed: bool = False) -> dict:
        messages = to_autogen(body.get("messages", []))
        tools = to_tool_schemas(body.get("tools"))
        system = "\n".join(m.content for m in messages if isinstance(m, SystemMessage))
        role = protocol.role_named(system)
        if role is None:
            raise ValueError("no system message names a role (You are the <Role>)")
        with self._policy_lock:
            policy = self._policies.setdefault(role, OfflineDesignerClient(role=role, seed=self.seed))
            result = asyncio.run(policy.create(messages, tools=tools))
            self._completions += 1
            index = self._completions  # ids count answers, never time or randomness
        calls = result.content if isinstance(result.content, list) else []
        malformed = malformed or self._malformed_pending
        self._malformed_pending = malformed and not calls
        self.malformed_sent += bool(malformed and calls)
        message = {"role": "assistant", "content": None if calls else result.content}
        if calls:  # "malformed" cuts the arguments mid-object: never valid JSON, like a reply cut off by max_tokens
            message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": c.arguments[: len(c.arguments) // 2] if malformed else c.arguments}}
                for c in calls]
        u = result.usage
        return {"id": f"chatcmpl-fake-{index}", "object": "chat.completion", "created": 0,
                "model": body.get("model", "offline-designer"),
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop",
                             "logprobs": None}],
                "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                          "total_tokens": u.prompt_tokens + u.completion_tokens}}


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeOpenAIServer
    body: Any = None  # the parsed JSON request, kept in .requests so tests can check the wire format

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int | None, payload: dict, headers: Mapping[str, str] = {}, fault: Fault = None):
        # Recorded before the answer goes out: a client that has its answer finds the request here.
        self.server_state._record(method=self.command, path=self._path(), status=status, fault=fault,
                                  authorization=self.headers.get("Authorization"), body=self.body)
        if status is None:  # "drop": close the connection without a word, as a crashed proxy would
            self.close_connection = True
        else:
            data = json.dumps(payload).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                self.send_header(k, v)
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client stopped waiting ("slow")
                pass

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _authorized(self) -> bool:
        key = self.server_state.api_key
        return key is None or self.headers.get("Authorization") == f"Bearer {key}"

    def do_GET(self) -> None:
        if not self._authorized():
            self._send(*UNAUTHORIZED)
        elif self._path().rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": "offline-designer", "object": "model", "created": 0, "owned_by": "tests"}]})
        else:
            self._send(404, _error(f"Unknown path {self.path}", "invalid_request_error", "not_found"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self.body = json.loads(raw)
        except ValueError:
            self.body = raw.decode(errors="replace")
        if self._path().rstrip("/") != "/v1/chat/completions":
            return self._send(404, _error(f"Unknown path {self.path}", "invalid_request_error", "not_found"))
        fault = self.server_state._next_fault()  # every chat request takes an index, even one refused
        if not self._authorized():
            return self._send(*UNAUTHORIZED)
        if self.server_state.latency_s > 0:
            time.sleep(self.server_state.latency_s)  # in this request's own thread: concurrent calls overlap
        self._send(*self._answer(fault), fault=fault)

    def _answer(self, fault: Fault) -> tuple[int | None, dict, dict]:
        # Faults that stand for a failed service come before the policy, so they consume none of its state.
        kind = fault[0] if isinstance(fault, tuple) else fault
        if kind == "drop":
            return None, {}, {}
        if kind == "hang":
            self.server_state._stopping.wait()
            return None, {}, {}
        if kind == "echo-key":
            return 400, _error(f"Malformed header: {self.headers.get('Authorization')}", "invalid_request_error"), {}
        if kind == "slow":
            time.sleep(fault[1])  # the client has usually given up by now; answering then is harmless
            fault = kind = None
        if kind == "429":
            wait = fault[1] if isinstance(fault, tuple) else 1
            return 429, _error("Rate limit reached (injected)", "requests", "rate_limit_exceeded"), \
                {"Retry-After": str(wait)}
        if kind not in (None, "malformed"):  # "500", or a fault this server does not know
            return 500, _error(f"The server had an error (injected {fault!r})", "server_error"), {}
        try:
            if not isinstance(self.body, dict):
                raise ValueError("the request body is not a JSON object")
            return 200, self.server_state.complete(self.body, malformed=kind == "malformed"), {}
        except Exception as exc:  # noqa: BLE001 - an answer tells the test more than a dropped socket
            # A conversation the policy cannot read (no role, no task) is the caller's error: 400.
            status = 400 if isinstance(exc, (ValueError, KeyError, TypeError)) else 500
            return status, _error(f"{type(exc).__name__}: {exc}", "invalid_request_error"), {}


UNAUTHORIZED = (401, _error("Incorrect API key provided", "invalid_request_error", "invalid_api_key"))
