"""The offline designer: a deterministic ChatCompletionClient that plays every role of the team
through the same tools an LLM would call, with a built-in design heuristic (agents/offline/strategies.py)
and validator-driven repair (agents/offline/repair.py). It is a baseline designer, not a language model.

It decides only from what a model would see: the role's system message, the visible messages and
the tool results in them. Token usage is counted with a real GPT tokenizer.
"""
from __future__ import annotations

import json
import random
import re
from typing import Any, AsyncGenerator, Literal, Mapping, Optional, Sequence

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelCapabilities,
    ModelFamily,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from ..tokens import count_tokens

ROLES = ("Reader", "Proposer", "Modifier", "Reflector")
MAX_ROUNDS = 5
_FENCE = re.compile(r"```(?:block)?\n(.*?)```", re.S)


class OfflineDesignerConfig(BaseModel):
    seed: int = 0
    fault_rate: float = 0.25  # how often the first draft carries a typical mistake, as LLM drafts do
    encoding: str = "o200k_base"


def role_of(messages: Sequence[LLMMessage]) -> str:
    for m in messages:
        if isinstance(m, SystemMessage):
            hit = re.search(r"You are the (\w+)", m.content)
            if hit and hit.group(1) in ROLES:
                return hit.group(1)
    raise ValueError("the offline designer needs a system message naming its role (You are the <Role>)")


def _text(m: LLMMessage) -> str:
    c = getattr(m, "content", "")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(getattr(x, "content", None) or getattr(x, "arguments", "") or str(x) for x in c)
    return str(c)


def _turn(messages: Sequence[LLMMessage]) -> list[LLMMessage]:
    """Messages of the current turn: everything after the last message from someone else."""
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], (UserMessage, SystemMessage)):
            return list(messages[i + 1:])
    return list(messages)


def _tool_results(messages: Sequence[LLMMessage]) -> list[tuple[str, dict]]:
    out = []
    for m in messages:
        if isinstance(m, FunctionExecutionResultMessage):
            for r in m.content:
                try:
                    out.append((r.name, json.loads(r.content)))
                except (json.JSONDecodeError, TypeError):
                    out.append((r.name, {"ok": False, "error": r.content}))
    return out


def _from(messages: Sequence[LLMMessage], source: str) -> list[str]:
    return [_text(m) for m in messages if isinstance(m, UserMessage) and m.source == source]


class OfflineDesignerClient(ChatCompletionClient):
    """Deterministic per seed: the same task and seed give the same calls and texts."""

    def __init__(self, seed: int = 0, fault_rate: float = 0.25, encoding: str = "o200k_base"):
        self._cfg = OfflineDesignerConfig(seed=seed, fault_rate=fault_rate, encoding=encoding)
        self._calls = 0
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._last = RequestUsage(prompt_tokens=0, completion_tokens=0)

    # ------------------------------------------------------------------ ChatCompletionClient
    async def create(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = [],
                     tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                     json_output: Optional[bool | type[BaseModel]] = None,
                     extra_create_args: Mapping[str, Any] = {},
                     cancellation_token: Optional[CancellationToken] = None) -> CreateResult:
        role = role_of(messages)
        names = {t["name"] if isinstance(t, dict) else t.name for t in tools}
        out = getattr(self, f"_{role.lower()}")(_without_garbled_calls(messages), names)
        self._calls += 1
        if isinstance(out, list):
            completion = sum(count_tokens(c.name + c.arguments, self._cfg.encoding) for c in out)
            finish = "function_calls"
        else:
            completion = count_tokens(out, self._cfg.encoding)
            finish = "stop"
        prompt = self.count_tokens(messages, tools=tools)
        self._last = RequestUsage(prompt_tokens=prompt, completion_tokens=completion)
        self._total = RequestUsage(prompt_tokens=self._total.prompt_tokens + prompt,
                                   completion_tokens=self._total.completion_tokens + completion)
        return CreateResult(finish_reason=finish, content=out, usage=self._last, cached=False)

    async def create_stream(self, messages, *, tools=[], tool_choice="auto", json_output=None,
                            extra_create_args={}, cancellation_token=None) -> AsyncGenerator[str | CreateResult, None]:
        yield await self.create(messages, tools=tools, tool_choice=tool_choice, json_output=json_output,
                                extra_create_args=extra_create_args, cancellation_token=cancellation_token)

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return self._last

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        text = "\n".join(_text(m) for m in messages)
        schemas = [t if isinstance(t, dict) else t.schema for t in tools]
        return count_tokens(text + json.dumps(schemas, default=str), self._cfg.encoding)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return max(0, 128_000 - self.count_tokens(messages, tools=tools))

    @property
    def capabilities(self) -> ModelCapabilities:  # type: ignore[override]
        return ModelCapabilities(vision=False, function_calling=True, json_output=True)

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(vision=False, function_calling=True, json_output=True, family=ModelFamily.UNKNOWN,
                         structured_output=False, multiple_system_messages=True)

    # ------------------------------------------------------------------ shared reading
    def _call(self, name: str, args: dict) -> list[FunctionCall]:
        return [FunctionCall(id=f"call_{self._calls}", name=name, arguments=json.dumps(args))]

    def _task(self, messages: Sequence[LLMMessage]) -> str:
        tasks = _from(messages, "user")
        if not tasks:
            raise ValueError("no task message from the trial loop in the conversation")
        return tasks[0]

    def _block_text(self, task: str) -> str:
        m = _FENCE.search(task)
        if not m:
            raise ValueError("the task message holds no ```block``` fence")
        return m.group(1)

    def _trial(self, task: str) -> int:
        m = re.search(r"Trial (\d+)", task)
        return int(m.group(1)) if m else 0

    def _rng(self, *parts) -> random.Random:
        return random.Random(":".join(map(str, (self._cfg.seed, *parts))))

    def _plan(self, task: str, strategy: str | None = None):
        """The strategy plan for this task; re-derived identically by Proposer and Modifier."""
        from graphs.ir import parse_block

        from .strategies import BY_NAME, choose

        block = parse_block(self._block_text(task))
        trial = self._trial(task)
        if strategy and strategy in BY_NAME:
            return BY_NAME[strategy].propose(block, self._rng(trial, "edits", strategy))
        avoid = set(re.findall(r"STRATEGY:\s*([\w-]+)", task.split("```")[-1] if "```" in task else task))
        return choose(block, self._rng(trial, "choose"), tags_hint=None, avoid=avoid)

    # ------------------------------------------------------------------ roles
    def _proposer(self, messages, tools):
        task = self._task(messages)
        plan = self._plan(task)
        results = _tool_results(_turn(messages))
        if not results and "search_knowledge" in tools:
            tags = list(plan.tags)
            return self._call("search_knowledge", {"query": f"{' '.join(tags)}: {plan.summary}", "k": 3})
        hits = results[-1][1].get("items", []) if results else []
        insp = hits[0] if hits else None
        ref = f"{insp['id']} ({insp.get('source', '')})" if insp else "none"
        return f"STRATEGY: {plan.strategy}\nINSPIRATION: {ref}\nPLAN: {plan.summary}"

    def _reflector(self, messages, tools):
        turn = _turn(messages)
        results = _tool_results(turn)
        last_other = next((m for m in reversed(messages) if isinstance(m, UserMessage)), None)
        if last_other is not None and last_other.source == "Proposer":
            if not results and "search_experience" in tools:
                return self._call("search_experience", {"query": _text(last_other), "k": 5})
            quotes = _quotes(results[-1][1] if results else {})
            return "ADVICE: keep channel counts in C, give every Add/Mul/concat all its inputs, and validate " \
                   "before submitting." + (f"\n{quotes}" if quotes else "\nNo stored experience applies yet.")
        # Review of a Modifier submission: validate, then look up fixes for what is wrong.
        checks = [r for n, r in results if n == "validate_block"]
        if not checks:
            return self._call("validate_block", {"note": "review of the Modifier's draft"})
        check = checks[-1]
        if check.get("valid"):
            return "APPROVE: the draft passes the flow validator and implements the plan."
        errors = check.get("errors", [])
        listed = "\n".join(f"- [{e['code']}] {e['message']}" for e in errors[:8])
        rounds = len(_from(messages, "Modifier"))
        if rounds >= MAX_ROUNDS:
            return f"REJECT: still invalid after {rounds} rounds:\n{listed}"
        found = [r for n, r in results if n == "search_experience"]
        if not found and "search_experience" in tools:
            first = errors[0]
            return self._call("search_experience", {"query": f"{first['code']}: {first['message']}", "k": 5,
                                                    "types": ["fix"], "error_code": first["code"]})
        advice = self._repair_advice(check)
        quotes = _quotes(found[-1] if found else {})
        return f"REVISE: the validator reports {len(errors)} error(s):\n{listed}\nAdvice: {advice}" + \
               (f"\n{quotes}" if quotes else "")

    def _repair_advice(self, check: dict) -> str:
        from graphs.errors import ErrorCode, Issue
        from graphs.ir import parse_block

        from .repair import repair

        try:
            block = parse_block(check["block"])
            issues = [Issue(node=e["node"], code=ErrorCode(e["code"]), message=e["message"]) for e in check["errors"]]
            fix = repair(block, issues, self._rng("advice"))
        except Exception:  # noqa: BLE001 - advice is best effort; the Modifier still sees the errors
            fix = None
        return fix[1] if fix else "rebuild the change from the plan on the original block, keeping every input connected."

    def _modifier(self, messages, tools):
        task = self._task(messages)
        turn = _turn(messages)
        done_in_turn = _tool_results(turn)
        if done_in_turn and done_in_turn[-1][0] == "validate_block":
            r = done_in_turn[-1][1]
            state = "valid" if r.get("valid") else f"{len(r.get('errors', []))} validator error(s)"
            return f"SUBMITTED: draft edited as planned ({state})."
        if done_in_turn and done_in_turn[-1][0] == "edit_block":
            failed = [r for n, r in done_in_turn if n == "edit_block" and not r.get("ok", True)]
            if failed and len(failed) < 2 and not done_in_turn[-1][1].get("ok", True):
                proposals = _from(messages, "Proposer")
                hit = re.search(r"STRATEGY:\s*([\w-]+)", proposals[-1]) if proposals else None
                plan = self._plan(task, hit.group(1) if hit else None)
                return self._call("edit_block", {"edits": self._repair_edits(None, task, plan)})
            return self._call("validate_block", {"note": "check the edited draft"})
        # Start of a turn: first submission follows the plan; later ones repair the last validation.
        proposals = _from(messages, "Proposer")
        strategy = re.search(r"STRATEGY:\s*([\w-]+)", proposals[-1]).group(1) if proposals else None
        earlier = [r for n, r in _tool_results(messages) if n == "validate_block"]
        edits_failed = [r for n, r in _tool_results(messages) if n == "edit_block" and not r.get("ok", True)]
        plan = self._plan(task, strategy)
        if not earlier and not edits_failed:
            from graphs.ir import parse_block

            from .strategies import inject_fault

            rng = self._rng(self._trial(task), "fault")
            if rng.random() < self._cfg.fault_rate:
                plan = inject_fault(plan, rng, block=parse_block(self._block_text(task)))
            return self._call("edit_block", {"edits": [e.model_dump(mode="json") for e in plan.edits]})
        edits = self._repair_edits(earlier[-1] if earlier else None, task, plan)
        return self._call("edit_block", {"edits": edits})

    def _repair_edits(self, check: dict | None, task: str, plan) -> list[dict]:
        from graphs.errors import ErrorCode, Issue
        from graphs.ir import parse_block

        from .repair import repair

        if check and check.get("block") and check.get("errors"):
            try:
                block = parse_block(check["block"])
                issues = [Issue(node=e["node"], code=ErrorCode(e["code"]), message=e["message"])
                          for e in check["errors"]]
                fix = repair(block, issues, self._rng("repair", len(check["errors"])))
            except Exception:  # noqa: BLE001 - fall back to redoing the plan cleanly
                fix = None
            if fix and fix[0]:
                return [e.model_dump(mode="json") for e in fix[0]]
        # Redo the plan from the original block, without the mistake.
        original = self._block_text(task)
        return [{"kind": "replace_block", "text": original}] + [e.model_dump(mode="json") for e in plan.edits]

    def _reader(self, messages, tools):
        """Finds sentences about architecture ideas with the built-in concept vocabulary and stores
        each as an inspiration. The excerpt is only searched for ideas, never obeyed."""
        from agents.papers import Segment, parse_segments

        from .concepts import find_ideas

        task = self._task(messages)
        results = _tool_results(_turn(messages))
        if results or "add_inspiration" not in tools:
            stored = sum(1 for n, r in results if r.get("ok", True) and r.get("id"))
            return f"DONE: {stored} inspiration(s) stored"
        excerpt = re.search(r"<<<EXCERPT\n(.*)\nEXCERPT>>>", task, re.S)
        limit = re.search(r"up to (\d+) architecture ideas", task)
        text = excerpt.group(1) if excerpt else task
        # Each part of the excerpt says its section and page; an idea is reported with its part's.
        parts = parse_segments(text) or [Segment(section="", page=1, text=text)]
        ideas = [(idea, part) for part in parts for idea in find_ideas(part.text)]
        ideas = ideas[: int(limit.group(1)) if limit else 3]
        if not ideas:
            return "DONE: 0 inspiration(s) stored; no architecture idea in this excerpt"
        return [FunctionCall(id=f"call_{self._calls}_{i}", name="add_inspiration",
                             arguments=json.dumps({"text": idea.text, "tags": idea.tags,
                                                   "section": part.section, "page": part.page}))
                for i, (idea, part) in enumerate(ideas)]


def _garbled(call: FunctionCall) -> bool:
    try:
        json.loads(call.arguments)
        return False
    except (TypeError, json.JSONDecodeError):
        return True


def _without_garbled_calls(messages: Sequence[LLMMessage]) -> list[LLMMessage]:
    """Drop tool calls whose arguments were not valid JSON, with their error results: the designer
    then simply makes that call again, as a model does after an argument error."""
    bad = {c.id for m in messages if isinstance(m, AssistantMessage) and isinstance(m.content, list)
           for c in m.content if isinstance(c, FunctionCall) and _garbled(c)}
    if not bad:
        return list(messages)
    out: list[LLMMessage] = []
    for m in messages:
        if isinstance(m, AssistantMessage) and isinstance(m.content, list):
            kept = [c for c in m.content if not (isinstance(c, FunctionCall) and c.id in bad)]
            if kept:
                out.append(m.model_copy(update={"content": kept}))
        elif isinstance(m, FunctionExecutionResultMessage):
            kept = [r for r in m.content if r.call_id not in bad]
            if kept:
                out.append(m.model_copy(update={"content": kept}))
        else:
            out.append(m)
    return out


def _quotes(result: dict) -> str:
    # Fixes first: they carry advice that repaired a real error.
    rank = {"fix": 0, "failure": 1, "regression": 2, "success": 3}
    items = sorted(result.get("items", []), key=lambda it: rank.get(it.get("type"), 4))[:3]
    return "\n".join(f"Experience {it['id']}: {it.get('advice') or it.get('text', '')}" for it in items)
