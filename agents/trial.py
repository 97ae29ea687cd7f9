"""One trial of the design loop: select → propose → advise → modify ⇄ review → deduplicate →
fit → train → record in the tree → write experience back."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from autogen_core.models import ChatCompletionClient

from graphs.cost import Budget, BudgetError, fit_design
from graphs.errors import Issue
from graphs.ir import Block
from graphs.space import Space, describe_arch, describe_space, make_space
from graphs.tree import ModificationTree, TreeNode
from graphs.validate import validate
from tools.graph_tools import Draft, cells_tool, edit_tool, validate_tool
from tools.memory import ExperienceRecord, Memory
from tools.memory_tools import experience_tool, knowledge_tool
from tools.training_tools import TrainArgs
from tools.tree_tools import inspect_tree_tool

from .llm import UsageLedger
from .llm.errors import server_message
from .protocol import MAX_ROUNDS, REVISE, design_task, parse_plan, revise_advice, verdict
from .team import RoleTools, design_team
from .transcript import Transcript


@dataclass
class TrialEnv:
    """Everything a trial needs, passed in: no globals."""

    tree: ModificationTree
    memory: Memory
    clients: Mapping[str, ChatCompletionClient]
    train: object  # the launch_training TypedTool
    dataset: str
    macro: str = "nader"
    budget: Budget = field(default_factory=Budget)
    max_rounds: int = MAX_ROUNDS
    run_dir: Path = Path(".")
    export: bool = True
    ledger: UsageLedger | None = None  # per-call usage and retry events
    redact: Callable[[str], str] = lambda s: s
    space: Space = field(default_factory=lambda: make_space("open"))

    def earlier(self, block: Block) -> str | None:
        """How an earlier candidate of this run with the same design is described to the agents;
        None when the design is new."""
        n = self.tree.find_candidate(block)
        return None if n is None else f"node {n.id} ({'the root' if n.trial in (None, 0) else f'trial {n.trial}'}, {n.status})"


def task_message(trial: int, node: TreeNode, tree: ModificationTree, space: Space | None = None) -> str:
    """The trial's task, re-sent with every model call of the trial (so its size is paid ~10 times a
    trial): the node's block and figures, the space (outside the open one) with the node's own cell
    (not the root's: the team edits this node), and the bounded summary of the node's children."""
    acc = f"{node.valid_acc:.2f}%" if node.valid_acc is not None else "unknown"
    children = tree.children_summary(node.id) or "none yet"
    space = space or make_space("open")
    where = ""
    if space.name != "open":
        arch = space.arch_of(tree.block_of(node.id))
        cell = f"\nThe cell of node {node.id} ({arch}):\n{describe_arch(arch)}" if arch else ""
        where = describe_space() + cell
    return design_task(trial, node.id, f"validation accuracy {acc}, {node.params or 0:,} params, "
                       f"{node.flops or 0:,} FLOPs", node.block, children, space=space.name, space_text=where)


async def run_trial(env: TrialEnv, trial: int, parent: TreeNode) -> TreeNode:
    start = time.perf_counter()
    draft = Draft.start(parent.block)
    check = validate_tool(draft, space=env.space, seen=env.earlier)
    in_cells = [cells_tool(env.earlier)] if env.space.name != "open" else []  # repeats ruled out before drafting
    tools = RoleTools(
        proposer=[knowledge_tool(env.memory.knowledge), inspect_tree_tool(env.tree),
                  experience_tool(env.memory.experience), *in_cells],
        reflector=[experience_tool(env.memory.experience), check],
        modifier=[edit_tool(draft), check],
    )
    team = design_team(env.clients, tools, env.max_rounds, space=env.space)
    log = Transcript()
    error = None
    try:
        async for item in team.run_stream(task=task_message(trial, parent, env.tree, env.space)):
            log.add(item)
    except Exception as exc:  # noqa: BLE001 - a failing model client ends this trial, not the run
        log.note("trial", env.redact(f"model client error: {type(exc).__name__}: {exc}"))  # with traceback
        # AutoGen re-raises with the inner traceback in the text: the tree keeps the first line.
        error = env.redact(f"model client error: {server_message(exc)}")

    if env.ledger is not None:  # retries and errors inside model calls, in time order with the chat
        log.merge_events(env.ledger.take_events(str(trial)))
    plan = (log.texts("Proposer") or [""])[-1]
    inspiration = _field(plan, "inspiration")
    usage = env.ledger.totals(str(trial)) if env.ledger is not None else None
    if usage and usage["calls"]:
        tokens, dollars = usage["tokens"], usage["usd"]
    else:
        tokens, dollars = sum(r["prompt_tokens"] + r["completion_tokens"] for r in log.records), 0.0
    common = dict(trial=trial, proposal=plan or None, inspiration=inspiration)

    def finish(node: TreeNode) -> TreeNode:
        cost = {"tokens": tokens, "dollars": dollars, "seconds": round(time.perf_counter() - start, 2)}
        node = env.tree.update(node.id, cost=cost)
        _write_trial_files(env, trial, node, log)
        return node

    if error is None and _model_errors(log):
        error = env.redact("model client error: " + _model_errors(log)[0])
    if error is not None:
        return finish(env.tree.add(parent.id, parent.block, status="failed", reason=error, **common))

    issues = _design_issues(env, draft.block)  # the loop's own check: approval by text is not trusted
    _write_experience(env, trial, parent, draft, log, issues, plan)
    if issues:
        log.note("trial", f"invalid after {len(_submissions(log))} round(s): {len(issues)} error(s)")
        return finish(env.tree.add(parent.id, str(draft.block), status="invalid", errors=issues,
                                   reason=f"{len(issues)} validator error(s) after {env.max_rounds} rounds", **common))
    node = await evaluate_design(env, trial, parent, draft.block, log, common)
    if node.status == "trained":
        _write_outcome_experience(env, trial, parent, node, plan)
    return finish(node)


async def run_designer_trial(env: TrialEnv, trial: int, proposal) -> TreeNode:
    """A trial of a baseline designer (agents.designers): no model, no team; its proposal goes
    through the same checks, deduplication, budget fit and evaluation as the team's."""
    start = time.perf_counter()
    parent = env.tree.get(proposal.parent)
    log = Transcript()
    log.note("designer", proposal.plan)
    common = dict(trial=trial, proposal=proposal.plan, inspiration=None)
    issues = _design_issues(env, proposal.block)
    if issues:
        node = env.tree.add(parent.id, str(proposal.block), status="invalid", errors=issues,
                            reason=f"{len(issues)} validator error(s)", **common)
    else:
        node = await evaluate_design(env, trial, parent, proposal.block, log, common)
    node = env.tree.update(node.id, cost={"tokens": 0, "dollars": 0.0,
                                          "seconds": round(time.perf_counter() - start, 2)})
    _write_trial_files(env, trial, node, log)
    return node


def _design_issues(env: TrialEnv, block: Block) -> list[Issue]:
    issues = validate(block, "base")
    return issues or env.space.issues(block)


async def evaluate_design(env: TrialEnv, trial: int, parent: TreeNode, block: Block, log: Transcript,
                          common: dict) -> TreeNode:
    """Deduplicate, fit to the budget and evaluate a valid design; its node, added to the tree. A
    design the run has already seen (trained or not) is not evaluated again."""
    earlier = env.tree.find_candidate(block)
    if earlier is not None and earlier.is_original:
        log.note("trial", f"isomorphic to node {earlier.id}: reusing its result, not training")
        return env.tree.add(parent.id, str(block), status="duplicate", duplicate_of=earlier.id, **common)
    if earlier is not None:
        original = earlier.duplicate_of if earlier.status == "duplicate" else None
        if original is not None:
            log.note("trial", f"isomorphic to node {original}: reusing its result, not training")
            return env.tree.add(parent.id, str(block), status="duplicate", duplicate_of=original, **common)
        log.note("trial", f"the same design as node {earlier.id} ({earlier.status}): not evaluated again")
        return env.tree.add(parent.id, str(block), status="invalid",
                            reason=f"repeat of node {earlier.id} ({earlier.status}); not evaluated again", **common)

    try:
        x, widths, params, flops = fit_design(block, env.macro, env.dataset, env.budget)
    except BudgetError as exc:
        log.note("trial", f"rejected by the budget: {exc}")
        return env.tree.add(parent.id, str(block), status="invalid", reason=f"budget: {exc}", **common)
    log.note("trial", f"fitted: widths {widths}, {params:,} params, {flops:,} FLOPs; training")

    outcome = await env.train.run_json({"block": str(block), "x": x, "trial": trial}, _token())
    log.note("launch_training", env.train.return_value_as_string(outcome))
    if outcome.status != "ok":
        return env.tree.add(parent.id, str(block), status="failed", reason=outcome.error,
                            widths=widths, params=params, flops=flops, metrics=_metrics(outcome), **common)
    return env.tree.add(parent.id, str(block), status="trained", widths=widths, params=params, flops=flops,
                        metrics=_metrics(outcome), **common)


def _token():
    from autogen_core import CancellationToken

    return CancellationToken()


def _metrics(outcome) -> dict:
    m = dict(outcome.metrics)
    m["valid_acc"] = outcome.valid_acc
    m["test_acc"] = outcome.test_acc
    return m


def _field(text: str, name: str) -> str | None:
    """A field (strategy, inspiration, summary) of the plan in the Proposer's reply; None without a plan."""
    plan = parse_plan(text)
    return getattr(plan, name) if plan is not None else None


def _submissions(log: Transcript) -> list[str]:
    return log.texts("Modifier")


def _model_errors(log: Transcript) -> list[str]:
    """AutoGen reports some agent failures as messages rather than exceptions."""
    return [str(r["content"]) for r in log.records if r["type"] in ("ModelClientErrorEvent",)]


def _revise_advice(log: Transcript) -> list[str]:
    out = []
    for t in log.texts("Reflector"):
        if verdict(t) == REVISE:
            out.append(revise_advice(t) or t[:300])
    return out


def _write_experience(env: TrialEnv, trial: int, parent: TreeNode, draft: Draft, log: Transcript,
                      final: list[Issue], plan: str) -> None:
    """A failure record per distinct validator error seen; a fix record for each one that a later
    round repaired, with what changed and the Reflector's advice."""
    store = env.memory.experience
    advice = _revise_advice(log)
    strategy = _field(plan, "strategy") or "unknown"
    final_keys = {(i.code.value, i.node) for i in final}
    seen: set[tuple[str, str]] = set()
    for round_no, issues in enumerate(draft.validations):
        for i in issues:
            key = (i.code.value, i.message)
            if key in seen:
                continue
            seen.add(key)
            hint = advice[min(len(advice) - 1, round_no)] if advice else ""
            store.add(ExperienceRecord(type="failure", error_code=i.code.value, error_message=i.message,
                                       change=f"strategy {strategy}", advice=hint, trial=trial,
                                       parent_node=parent.id, inspiration=_field(plan, "inspiration")))
            if (i.code.value, i.node) not in final_keys:
                later = draft.edits[-1]["edits"] if draft.edits else []
                store.add(ExperienceRecord(
                    type="fix", error_code=i.code.value, error_message=i.message,
                    change="; ".join(_describe(e) for e in later)[:500], advice=hint or "re-check inputs and channels",
                    trial=trial, parent_node=parent.id, inspiration=_field(plan, "inspiration")))


def _describe(edit: dict) -> str:
    kind = edit.get("kind", "?")
    detail = edit.get("op") or (f"{edit.get('src')}->{edit.get('dst')}" if "src" in edit else edit.get("id", ""))
    return f"{kind} {detail}".strip()


def _write_outcome_experience(env: TrialEnv, trial: int, parent: TreeNode, node: TreeNode, plan: str) -> None:
    delta = (node.valid_acc or 0.0) - (parent.valid_acc or 0.0)
    change = _cell_change(env, parent, node) or _field(plan, "summary") or plan[:300]
    env.memory.experience.add(ExperienceRecord(
        type="success" if delta > 0 else "regression", change=change,
        advice=f"strategy {_field(plan, 'strategy')} changed validation accuracy by {delta:+.2f} points",
        trial=trial, node=node.id, parent_node=parent.id, metrics={"valid_acc": node.valid_acc},
        metrics_delta={"valid_acc": round(delta, 4)}, inspiration=_field(plan, "inspiration")))


def _cell_change(env: TrialEnv, parent: TreeNode, node: TreeNode) -> str | None:
    """In a cell space, the change the trial actually made ("set edge 2<-0: none -> nor_conv_3x3
    => ARCH"): the plan may name a move the Modifier left for another when it repeated a design."""
    if env.space.name == "open":
        return None
    from .offline.cell import change_record  # the one written form of a cell change, which designers read back

    before, after = (env.space.arch_of(env.tree.block_of(n.id)) for n in (parent, node))
    return change_record(before, after) if before and after else None


def _write_trial_files(env: TrialEnv, trial: int, node: TreeNode, log: Transcript) -> None:
    d = env.run_dir / "trials" / f"{trial:04d}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "block.txt").write_text(node.block)
    (d / "metrics.json").write_text(json.dumps({"node": node.id, "parent": node.parent, "status": node.status,
                                                "duplicate_of": node.duplicate_of, "reason": node.reason,
                                                "widths": node.widths, "params": node.params, "flops": node.flops,
                                                "metrics": node.metrics, "cost": node.cost,
                                                "errors": [e.model_dump() for e in node.errors]}, indent=2))
    if env.export and node.status == "trained":
        from graphs.compile import build_model
        from graphs.export import export_source
        from graphs.ir import parse_block

        x = node.widths[0] if env.macro == "nader" and node.widths else None
        (d / "model.py").write_text(export_source(build_model(parse_block(node.block), env.macro, env.dataset, x)))
    log.write(d, f"Trial {trial}: node {node.id} ({node.status})", redact=env.redact)
