"""The offline designer: a deterministic ChatCompletionClient that plays every role of the team
through the same tools an LLM would call, with a built-in design heuristic (agents/offline/strategies.py)
and validator-driven repair (agents/offline/repair.py); in the NB201 cell space (a task that names it)
the Proposer and Modifier instead rank edge moves of the cell (agents/offline/cell.py). A draft that
repeats an earlier candidate (the validator's `duplicate_candidate`) is replaced by another design
within the trial. It is a baseline designer, not a language model.

It is built for one role (as each role's model client is) and decides only from what a model of
that role would see: the visible messages and the tool results in them. Markers, plan fields and
task messages are read and written through agents.protocol. Token usage is counted with a real GPT
tokenizer.
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
from pydantic import BaseModel, Field

from graphs.blind import SPACE_NAME

from .. import protocol as P
from ..tokens import count_tokens


class OfflineDesignerConfig(BaseModel):
    role: str
    seed: int = 0
    fault_rate: float = Field(0.25, ge=0.0, le=1.0)  # how often a first draft carries a typical mistake, as LLM drafts do
    max_rounds: int = Field(P.MAX_ROUNDS, ge=1)  # the Reflector rejects after this many Modifier submissions
    encoding: str = "o200k_base"


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
                    body = json.loads(r.content)
                except (json.JSONDecodeError, TypeError):
                    body = None
                # A result that is not a JSON object is a tool error as far as the designer can tell.
                out.append((r.name, body if isinstance(body, dict) else {"ok": False, "error": str(r.content)}))
    return out


SET_CELL_EDGE = "set_cell_edge"
_CELL_EDIT = "edit_block:set_cell_edge"  # capability marker: no tool has this name
_SPACE_CODES = ("duplicate_candidate", "out_of_space")  # validate-tool codes that ask for another design
_CELL_QUERY = "NB201 cell operations: 3x3 convolution, 1x1 convolution, skip connection shortcut, pooling"
_CELL_EXPERIENCE = "set edge cell op change validation accuracy"
_EXPERIENCE_K = 20  # experience records the cell Proposer reads per trial: every result it learns from costs prompt
_CHECKED_CELLS = 16  # candidate cells the Proposer asks check_cells about (tools.graph_tools.MAX_CHECKED_CELLS)
_CHECK_CALLS = 6     # check_cells calls per plan at most, 16 cells each
_FALLBACKS = 3      # further moves a cell plan names, in order, for a first cell that repeats a candidate


def _from(messages: Sequence[LLMMessage], source: str) -> list[str]:
    return [_text(m) for m in messages if isinstance(m, UserMessage) and m.source == source]


class OfflineDesignerClient(ChatCompletionClient):
    """One role's designer, deterministic per seed: the same task and seed give the same calls and
    texts. ValueError for a role outside agents.protocol.ROLES or settings out of range."""

    def __init__(self, role: str, seed: int = 0, fault_rate: float = 0.25, max_rounds: int = P.MAX_ROUNDS,
                 encoding: str = "o200k_base"):
        P.check_role(role)
        self._cfg = OfflineDesignerConfig(role=role, seed=seed, fault_rate=fault_rate, max_rounds=max_rounds,
                                          encoding=encoding)
        self._calls = 0
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._last = RequestUsage(prompt_tokens=0, completion_tokens=0)

    # ------------------------------------------------------------------ ChatCompletionClient
    async def create(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = [],
                     tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                     json_output: Optional[bool | type[BaseModel]] = None,
                     extra_create_args: Mapping[str, Any] = {},
                     cancellation_token: Optional[CancellationToken] = None) -> CreateResult:
        names = {t["name"] if isinstance(t, dict) else t.name for t in tools}
        schemas = json.dumps([t if isinstance(t, dict) else t.schema for t in tools], default=str)
        if SET_CELL_EDGE in schemas:  # the edit tool takes the typed cell edit
            names.add(_CELL_EDIT)
        messages = _without_garbled_calls(messages)
        role = self._cfg.role.lower()
        if role in ("proposer", "modifier") and self._in_cell_space(messages):
            out = getattr(self, f"_cell_{role}")(messages, names)
        else:
            out = getattr(self, f"_{role}")(messages, names)
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

    @property
    def role(self) -> str:
        return self._cfg.role

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
        block = P.parse_design_task(task).block
        if block is None:
            raise ValueError(f"the task message holds no ```{P.BLOCK_FENCE} fence")
        return block

    def _trial(self, task: str) -> int:
        return P.parse_design_task(task).trial

    def _rng(self, *parts) -> random.Random:
        return random.Random(":".join(map(str, (self._cfg.seed, *parts))))

    def _plan(self, task: str, strategy: str | None = None):
        """The strategy plan for this task, re-derived identically by Proposer and Modifier: the
        named strategy when it has a site in the block, else the one chosen as if nothing had been
        planned. None when no strategy applies to the block at all."""
        from graphs.ir import parse_block

        from .strategies import BY_NAME, NotApplicable, choose

        block = parse_block(self._block_text(task))
        parsed = P.parse_design_task(task)
        if strategy in BY_NAME:
            plan = BY_NAME[strategy].try_propose(block, self._rng(parsed.trial, "edits", strategy))
            if plan is not None:
                return plan
        try:
            return choose(block, self._rng(parsed.trial, "choose"), tags_hint=None,
                          avoid=set(P.mentioned_strategies(parsed.tried)))
        except NotApplicable:
            return None

    def _planned_strategy(self, messages) -> str | None:
        """The strategy the Proposer's last reply names; None when it wrote no plan."""
        proposals = _from(messages, "Proposer")
        return P.strategy_key(P.parse_plan(proposals[-1])) if proposals else None

    # ------------------------------------------------------------------ roles
    def _proposer(self, messages, tools):
        task = self._task(messages)
        plan = self._plan(task)
        if plan is None:
            return P.render_plan("none", "none", "no built-in strategy finds a site in this block; keep it unchanged.")
        results = _tool_results(_turn(messages))
        if not results and "search_knowledge" in tools:
            tags = list(plan.tags)
            return self._call("search_knowledge", {"query": f"{' '.join(tags)}: {plan.summary}", "k": 3})
        hits = [h for h in (results[-1][1].get("items") or [] if results else []) if isinstance(h, dict) and "id" in h]
        insp = hits[0] if hits else None
        ref = f"{insp['id']} ({insp.get('source', '')})" if insp else "none"
        return P.render_plan(plan.strategy, ref, plan.summary)

    def _reflector(self, messages, tools):
        turn = _turn(messages)
        results = _tool_results(turn)
        last_other = next((m for m in reversed(messages) if isinstance(m, UserMessage)), None)
        if last_other is not None and last_other.source == "Proposer":
            if self._in_cell_space(messages):
                # A cell move has nothing to wire by hand: the plan's edges are all there is to check.
                return f"{P.ADVICE}: set exactly the planned edges with set_cell_edge on the original cell, and " \
                       "validate before submitting; if the cell repeats an earlier candidate, take another move."
            if not results and "search_experience" in tools:
                return self._call("search_experience", {"query": _text(last_other), "k": 5})
            quotes = _quotes(results[-1][1] if results else {})
            return f"{P.ADVICE}: keep channel counts in C, give every Add/Mul/concat all its inputs, and validate " \
                   "before submitting." + (f"\n{quotes}" if quotes else "\nNo stored experience applies yet.")
        # Review of a Modifier submission: validate, then look up fixes for what is wrong.
        checks = [r for n, r in results if n == "validate_block"]
        if not checks:
            return self._call("validate_block", {"note": "review of the Modifier's draft"})
        check = checks[-1]
        if check.get("valid"):
            return f"{P.APPROVE}: the draft passes the flow validator and implements the plan."
        errors = _errors(check)
        listed = "\n".join(f"- [{e['code']}] {e['message']}" for e in errors[:8]) or \
            f"- the validator could not check the draft: {check.get('error') or 'no errors were reported'}"
        rounds = len(_from(messages, "Modifier"))
        if rounds >= self._cfg.max_rounds:
            return f"{P.REJECT}: still invalid after {rounds} rounds:\n{listed}"
        found = [r for n, r in results if n == "search_experience"]
        # A repeat or a step out of the space is no wiring error: stored fixes do not apply.
        if errors and not found and "search_experience" in tools and \
                not all(e["code"] in _SPACE_CODES for e in errors):
            first = errors[0]
            return self._call("search_experience", {"query": f"{first['code']}: {first['message']}", "k": 5,
                                                    "types": ["fix"], "error_code": first["code"]})
        advice = self._repair_advice(check)
        quotes = _quotes(found[-1] if found else {})
        return f"{P.REVISE}: the validator reports {len(errors)} error(s):\n{listed}\n{P.ADVICE_LABEL}: {advice}" + \
               (f"\n{quotes}" if quotes else "")

    def _repair_advice(self, check: dict) -> str:
        from graphs.errors import ErrorCode, Issue

        codes = {e["code"] for e in _errors(check)}
        if "duplicate_candidate" in codes:
            return ("the draft is the same design as an earlier candidate; start again from the original block "
                    "with the next-best change not tried in this trial.")
        if "out_of_space" in codes:
            return "the draft leaves the design space; make only changes the space allows to the original block."
        from graphs.ir import parse_block

        from .repair import repair

        try:
            block = parse_block(check["block"])
            issues = [Issue(node=e["node"], code=ErrorCode(e["code"]), message=e["message"]) for e in _errors(check)]
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
            # A repeat found by our own check is redrafted at once while the turn has room for one
            # more edit and check (2 drafts per turn), instead of spending a review round on it.
            repeat = any(e["code"] == "duplicate_candidate" for e in _errors(r))
            if repeat and sum(1 for m in turn if isinstance(m, FunctionExecutionResultMessage)) < 3:
                redo = self._duplicate_repair(task, self._plan(task, self._planned_strategy(messages)), messages)
                if redo:
                    return self._call("edit_block", {"edits": redo})
            state = "valid" if r.get("valid") else f"{len(_errors(r))} validator error(s)"
            return f"{P.SUBMITTED}: draft edited as planned ({state})."
        # A Proposer reply without a plan (after failed tool calls, empty, garbled) is no reason to
        # fail: _plan then chooses the strategy as if nothing had been planned.
        strategy = self._planned_strategy(messages)
        if done_in_turn and done_in_turn[-1][0] == "edit_block":
            failed = [r for n, r in done_in_turn if n == "edit_block" and not r.get("ok", True)]
            if failed and len(failed) < 2 and not done_in_turn[-1][1].get("ok", True):
                return self._call("edit_block", {"edits": self._repair_edits(None, task, self._plan(task, strategy))})
            if "validate_block" not in tools:  # no validator in this team (no-lif): submit as it stands
                return f"{P.SUBMITTED}: draft edited as planned (not validated: no validator in this team)."
            return self._call("validate_block", {"note": "check the edited draft"})
        # Start of a turn: first submission follows the plan; later ones repair the last validation.
        plan = self._plan(task, strategy)
        earlier = [r for n, r in _tool_results(messages) if n == "validate_block"]
        edits_failed = [r for n, r in _tool_results(messages) if n == "edit_block" and not r.get("ok", True)]
        if plan is None and not earlier:
            return f"{P.SUBMITTED}: no change; no built-in strategy finds a site in this block."
        if not earlier and not edits_failed:
            from graphs.ir import parse_block

            from .strategies import inject_fault

            rng = self._rng(self._trial(task), "fault")
            if rng.random() < self._cfg.fault_rate:
                plan = inject_fault(plan, rng, block=parse_block(self._block_text(task)))
            return self._call("edit_block", {"edits": [e.model_dump(mode="json") for e in plan.edits]})
        edits = self._repair_edits(earlier[-1] if earlier else None, task, plan, messages)
        return self._call("edit_block", {"edits": edits})

    def _repair_edits(self, check: dict | None, task: str, plan, messages: Sequence[LLMMessage] = ()) -> list[dict]:
        from graphs.errors import ErrorCode, Issue
        from graphs.ir import parse_block

        from .repair import repair

        if check and any(e["code"] == "duplicate_candidate" for e in _errors(check)):
            redo = self._duplicate_repair(task, plan, messages)
            if redo:
                return redo
        if check and check.get("block") and _errors(check):
            try:
                block = parse_block(check["block"])
                issues = [Issue(node=e["node"], code=ErrorCode(e["code"]), message=e["message"])
                          for e in _errors(check)]
                fix = repair(block, issues, self._rng("repair", len(check["errors"])))
            except Exception:  # noqa: BLE001 - fall back to redoing the plan cleanly
                fix = None
            if fix and fix[0]:
                return [e.model_dump(mode="json") for e in fix[0]]
        # Redo the plan from the original block, without the mistake.
        original = self._block_text(task)
        redo = [e.model_dump(mode="json") for e in plan.edits] if plan is not None else []
        return [{"kind": "replace_block", "text": original}] + redo

    def _duplicate_repair(self, task: str, plan, messages: Sequence[LLMMessage]) -> list[dict] | None:
        """Edits for a draft of this trial that repeated an earlier candidate. The first repeat:
        another strategy on the original block. A later one (single changes of this block are then
        likely all tried): the repeated draft plus another strategy's change on top. Re-derived from
        the conversation, so each retry moves on from the ones before; designs drafted in this trial
        are not drafted again."""
        from graphs.hashing import canonical_hash
        from graphs.ir import parse_block

        from .repair import DUPLICATE_CODE, repair_duplicate

        original = parse_block(self._block_text(task))
        parsed = P.parse_design_task(task)
        checks = [r for n, r in _tool_results(messages) if n == "validate_block" and isinstance(r.get("block"), str)]
        repeats = [r for r in checks if any(e["code"] == DUPLICATE_CODE for e in _errors(r))]
        taken = set()
        for r in checks:
            try:
                taken.add(canonical_hash(parse_block(r["block"])))
            except Exception:  # noqa: BLE001 - an unreadable draft text names no design
                continue
        avoid = set(P.mentioned_strategies(parsed.tried)) | ({plan.strategy} if plan is not None else set())
        draft = None
        if len(repeats) >= 2:
            try:
                draft = parse_block(repeats[-1]["block"])
            except Exception:  # noqa: BLE001 - fall back to a fresh strategy on the original
                draft = None
        rng = self._rng(parsed.trial, "duplicate", len(repeats))
        fix = repair_duplicate(original, avoid, rng, draft=draft, taken=frozenset(taken))
        if fix is None and draft is not None:
            fix = repair_duplicate(original, avoid, rng, taken=frozenset(taken))
        return [e.model_dump(mode="json") for e in fix[0]] if fix else None

    # ------------------------------------------------------------------ the NB201 cell space
    def _in_cell_space(self, messages) -> bool:
        tasks = _from(messages, "user")
        # A blind view calls the space by a neutral name (graphs.blind.SPACE_NAME).
        return bool(tasks) and P.parse_design_task(tasks[0]).space in ("nb201", SPACE_NAME)

    def _vocab(self, task: str):
        """The cell's op names as the task's space description lists them: NB201's own (with the
        prior over them), or a blind space's neutral names (a flat prior, `none` unknown)."""
        from graphs.nb201 import NB201_OPS
        from graphs.space import OPS_LINE

        from .cell import REAL, blind_vocab

        hit = re.search(rf"^{re.escape(OPS_LINE)}[^:\n]*:\s*([^.\n]+)", task, re.M)
        names = tuple(n.strip() for n in hit.group(1).split(",")) if hit else NB201_OPS
        if len(set(names)) != len(NB201_OPS) or not all(re.fullmatch(r"\w+", n) for n in names):
            raise ValueError(f"the task's {OPS_LINE} line names {names!r}: a cell space has "
                             f"{len(NB201_OPS)} distinct ops")
        return REAL if set(names) == set(NB201_OPS) else blind_vocab(names)

    def _cell(self, task: str) -> str:
        """The parent's cell as an arch string; ValueError when the task's block is no NB201 cell."""
        from graphs.ir import parse_block

        from .cell import cell_of, find_archs

        vocab = self._vocab(task)
        if not vocab.real:  # a blind space shows the cell as its arch string
            found = find_archs(self._block_text(task), vocab)
            if not found:
                raise ValueError("the task is in a blind cell space but its block is no arch string of its ops")
            return found[0]
        arch = cell_of(parse_block(self._block_text(task)), task)
        if arch is None:
            raise ValueError("the task is in the nb201 space but its block is not an NB201 cell")
        return arch

    def _cell_ranking(self, task: str, items: Sequence[dict] = (), knowledge: Sequence[str] = (),
                      drafted: Sequence[str] = (), want: int | None = None, skip_hidden: bool = True):
        """The parent's best untried moves (agents.offline.cell.Candidate), best first, by one draw
        from the posterior of the cell model: the op prior with the knowledge nudge, refitted on the
        deltas the experience items and the task's tried children report. The draw is seeded by the
        run's seed and the trial, so a seed is one sample of the search. Cells named by the tried
        children, the items and `drafted` (cells drafted in this trial) are not proposed again."""
        from .cell import CellModel, canonical, knowledge_bias, observations_from_experience, \
            observations_from_tried, rank_moves

        parsed = P.parse_design_task(task)
        vocab = self._vocab(task)
        parent = self._cell(task)
        known, seen = observations_from_tried(parsed.tried, parent, vocab)
        known_e, learned = observations_from_experience(items, vocab)
        # A child's line and its experience record report the same event: count it once.
        counted = {(canonical(o.after, vocab) if o.after else o.move, round(o.delta, 2)) for o in learned}
        learned += [o for o in seen
                    if (canonical(o.after, vocab) if o.after else o.move, round(o.delta, 2)) not in counted]
        model = CellModel.fit(learned, knowledge_bias(knowledge) if vocab.real else None, vocab)
        rng = self._rng(parsed.trial, "cell")
        # Children the task only counts (a long list is cut to the best and latest few) were most
        # likely this designer's own best picks of earlier trials: pass over as many of the best
        # candidates, rather than propose them again one by one.
        hidden = sum(int(n) for n in _HIDDEN_RE.findall(parsed.tried)) if skip_hidden else 0
        want = want or 2 * self._cfg.max_rounds
        ranking = rank_moves(parent, model.draw(rng), rng, known=[*known, *known_e, *drafted], want=want + hidden)
        return ranking[hidden:] or ranking[-want:]

    def _cell_proposer(self, messages, tools):
        """One round of look-ups (knowledge, and experience of changes near this cell), then ONE
        move: the best expected one not known to be tried, written with the cell it gives. (Looking
        candidate cells up one by one finds nothing reliable: similarity search does not tell arch
        strings apart, so a repeat it misses is left to the validator and the Modifier.)"""
        from .cell import FALLBACK_LABEL, move_text

        task = self._task(messages)
        results = _tool_results(_turn(messages))
        if not results:
            calls = []
            if "search_knowledge" in tools:
                calls.append(("search_knowledge", {"query": _CELL_QUERY, "k": 2}))
            if "search_experience" in tools:
                calls.append(("search_experience", {"query": f"{_CELL_EXPERIENCE} {self._cell(task)}",
                                                    "k": _EXPERIENCE_K, "types": ["success", "regression"]}))
            if calls:
                return self._calls_of(calls)
        items = [it for n, r in results if n == "search_experience" for it in r.get("items") or []
                 if isinstance(it, dict)]
        hits = [it for n, r in results if n == "search_knowledge" for it in r.get("items") or []
                if isinstance(it, dict) and "id" in it]
        knowledge = [str(h.get("text", "")) for h in hits]
        checked = [r for n, r in results if n == "check_cells"]
        ranking = None
        if "check_cells" in tools:
            # Ask the run which of the best candidates it has tried, in one call, and plan only new
            # cells: cheaper than learning of each repeat from the validator one draft at a time.
            # Near a well-explored cell the best candidates are all tried: the next call asks about
            # the next ones down the ranking, up to _CHECK_CALLS calls.
            wide = self._cell_ranking(task, items, knowledge, want=_CHECKED_CELLS * (len(checked) + 1),
                                      skip_hidden=False)
            answers = [st for r in checked for st in r.get("cells") or [] if isinstance(st, dict)]
            new = {st.get("cell") for st in answers if not st.get("tried") and not st.get("error")}
            asked = {st.get("cell") for st in answers}
            ranking = [c for c in wide if c.cell in new][:1 + _FALLBACKS] or None
            unasked = [c.cell for c in wide if c.cell not in asked][:_CHECKED_CELLS]
            if ranking is None and unasked and len(checked) < _CHECK_CALLS:
                return self._calls_of([("check_cells", {"cells": unasked})])
        if ranking is None:  # no check, or every checked cell was tried: skip as many as the task hides
            ranking = self._cell_ranking(task, items, knowledge, want=1 + _FALLBACKS)
        if not ranking:
            return P.render_plan("none", "none", "every change of this cell within reach was tried; keep it.")
        best = ranking[0]
        summary = f"{move_text(best.move)} => {best.cell}; expected {best.gain:+.2f} points"
        if len(ranking) > 1:  # for the Modifier, should the first cell repeat a candidate the look-ups missed
            summary += f"; {FALLBACK_LABEL} " + "; ".join(move_text(c.move) for c in ranking[1:])
        return P.render_plan(SET_CELL_EDGE, _supporting_hit(hits, best.move[0].new), summary)

    def _calls_of(self, calls: Sequence[tuple[str, dict]]) -> list[FunctionCall]:
        return [FunctionCall(id=f"call_{self._calls}_{i}", name=name, arguments=json.dumps(args))
                for i, (name, args) in enumerate(calls)]

    def _cell_modifier(self, messages, tools):
        """Applies the planned move; after a validation that says the draft repeats an earlier
        candidate (or leaves the space), the designer's next-best move not drafted in this trial."""
        from graphs.ir import parse_block, print_block
        from graphs.nb201 import arch_to_block

        from .cell import apply_change, canonical, cell_of, find_archs, parse_moves

        task = self._task(messages)
        vocab = self._vocab(task)
        turn = _turn(messages)
        done_in_turn = _tool_results(turn)
        if done_in_turn and done_in_turn[-1][0] == "validate_block":
            r = done_in_turn[-1][1]
            # A repeat found by our own check is redrafted at once while the turn has room for one more
            # edit and check (2 drafts per turn), instead of spending a review round on it.
            again = any(e["code"] in _SPACE_CODES for e in _errors(r)) and \
                sum(1 for m in turn if isinstance(m, FunctionExecutionResultMessage)) < 3
            if not again:
                state = "valid" if r.get("valid") else f"{len(_errors(r))} validator error(s)"
                return f"{P.SUBMITTED}: the planned cell edges are set ({state})."
        if done_in_turn and done_in_turn[-1][0] == "edit_block" and done_in_turn[-1][1].get("ok", True):
            if "validate_block" in tools:
                return self._call("validate_block", {"note": "check the edited cell"})
            return f"{P.SUBMITTED}: the planned cell edges are set (not validated: no validator in this team)."
        original = self._block_text(task)
        arch = self._cell(task)

        def cell_in(text: str) -> str | None:
            if not vocab.real:
                found = find_archs(text, vocab)
                return found[0] if found else None
            try:
                return cell_of(parse_block(text))
            except Exception:  # noqa: BLE001 - an unreadable draft text names no design
                return None

        # Cells drafted in this trial (and the parent itself) are not drafted again: as the validator
        # showed them, and (a blind view shows the canonical cell, not the one written) as written.
        drafted = [arch] + [found for name, r in _tool_results(messages)
                            if name == "validate_block" and isinstance(r.get("block"), str)
                            for found in [cell_in(r["block"])] if found]
        if not vocab.real:
            drafted += _written_cells(messages, arch, vocab)
        plan = P.parse_plan((_from(messages, "Proposer") or [""])[-1])
        planned = parse_moves(plan.summary or "", vocab) if plan is not None else []
        taken = {canonical(a, vocab) for a in drafted}
        move = next((m for m in planned if canonical(apply_change(arch, m, vocab), vocab) not in taken), None)
        if move is None:  # the plan and its fallbacks are spent (or missing): the designer's own move
            # Each repeat says the cells near this one are crowded with earlier candidates: reach
            # further down the ranking after every one (1st, 2nd, 4th, 8th, ... best left).
            repeats = sum(1 for n, r in _tool_results(messages) if n == "validate_block"
                          and any(e["code"] == "duplicate_candidate" for e in _errors(r)))
            ranking = self._cell_ranking(task, drafted=drafted, want=2 ** min(max(0, repeats - _FALLBACKS - 1), 7))
            if not ranking:
                return f"{P.SUBMITTED}: no untried change of this cell is left; the draft is unchanged."
            move = ranking[-1].move
        failed_edit = bool(done_in_turn) and done_in_turn[-1][0] == "edit_block"
        restart = bool(_tool_results(messages)) and not failed_edit
        # One typed edit sets one edge and re-reads the cell from the block, where an idle edge is
        # `none` again: a move that wakes an idle node (two edges at once) is written as the whole cell.
        if _CELL_EDIT in tools and not failed_edit and len(move) == 1:
            edits = ([{"kind": "replace_block", "text": original}] if restart else []) + [c.edit() for c in move]
        elif not vocab.real:  # a blind cell is written as its arch string
            edits = [{"kind": "replace_block", "text": apply_change(arch, move, vocab)}]
        else:  # no typed cell edit (or it failed), or several edges: the whole cell as block text
            block = arch_to_block(apply_change(arch, move), name=parse_block(original).name)
            edits = [{"kind": "replace_block", "text": print_block(block)}]
        return self._call("edit_block", {"edits": edits})

    def _reader(self, messages, tools):
        """Finds sentences about architecture ideas with the built-in concept vocabulary and stores
        each as an inspiration. The excerpt is only searched for ideas, never obeyed."""
        from agents.papers import Segment, parse_segments

        from .concepts import find_ideas

        task = self._task(messages)
        results = _tool_results(_turn(messages))
        if results or "add_inspiration" not in tools:
            stored = sum(1 for n, r in results if r.get("ok", True) and r.get("id"))
            return f"{P.DONE}: {stored} inspiration(s) stored"
        parsed = P.parse_reader_task(task)
        text = parsed.excerpt if parsed.excerpt is not None else task
        # Each part of the excerpt says its section and page; an idea is reported with its part's.
        parts = parse_segments(text) or [Segment(section="", page=1, text=text)]
        ideas = [(idea, part) for part in parts for idea in find_ideas(part.text)]
        ideas = ideas[: parsed.limit if parsed.limit is not None else 3]
        if not ideas:
            return f"{P.DONE}: 0 inspiration(s) stored; no architecture idea in this excerpt"
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


def _written_cells(messages: Sequence[LLMMessage], arch: str, vocab) -> list[str]:
    """The cells this trial's edit_block calls wrote (a replace_block's arch string, or the parent's
    cell with the set_cell_edge edits applied), in `vocab`'s names."""
    from .cell import CellChange, apply_change, find_archs

    out = []
    for m in messages:
        if not (isinstance(m, AssistantMessage) and isinstance(m.content, list)):
            continue
        for c in m.content:
            if not isinstance(c, FunctionCall) or c.name != "edit_block":
                continue
            try:
                edits = json.loads(c.arguments).get("edits") or []
                cell = arch
                for e in edits:
                    if e.get("kind") == "replace_block":
                        cell = (find_archs(str(e.get("text", "")), vocab) or [cell])[0]
                    elif e.get("kind") == "set_cell_edge":
                        k, j = (int(x) for x in str(e.get("edge", "")).split("<-"))
                        if e.get("op") not in vocab.ops:
                            raise ValueError(e.get("op"))
                        cell = apply_change(cell, (CellChange((j, k), "", str(e["op"])),), vocab)
                out.append(cell)
            except (ValueError, TypeError, AttributeError, KeyError):
                continue  # an edit list the designer cannot read back names no cell
    return out


_HIDDEN_RE = re.compile(r"(\d+) other\(s\) not listed")  # graphs.tree children_summary's count of unlisted children


def _supporting_hit(hits: Sequence[dict], op: str) -> str:
    """The id of the first inspiration that speaks for `op`, else of the first one, else "none"."""
    from .cell import knowledge_bias

    for h in hits:
        if knowledge_bias([str(h.get("text", ""))]).get(op):
            return str(h["id"])
    return str(hits[0]["id"]) if hits else "none"


def _quotes(result: dict) -> str:
    # Fixes first: they carry advice that repaired a real error.
    rank = {"fix": 0, "failure": 1, "regression": 2, "success": 3}
    items = [it for it in result.get("items") or [] if isinstance(it, dict) and "id" in it]
    items = sorted(items, key=lambda it: rank.get(it.get("type"), 4))[:3]
    return "\n".join(f"{P.EXPERIENCE_LABEL} {it['id']}: {it.get('advice') or it.get('text', '')}" for it in items)


def _errors(check: dict) -> list[dict]:
    """The well-formed error records of a validation result; anything else a tool returned is skipped."""
    errors = check.get("errors")
    # A whole-block error (node None) may come without its "node" key: tool results drop nulls.
    return [{**e, "node": e.get("node")} for e in errors if isinstance(e, dict) and {"code", "message"} <= e.keys()] \
        if isinstance(errors, list) else []
