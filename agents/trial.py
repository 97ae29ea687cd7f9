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
from graphs.drawing import block_diff
from graphs.errors import Issue
from graphs.hashing import same_block
from graphs.ir import Block, parse_block
from graphs.space import Space, describe_arch, describe_space, make_space
from graphs.tree import ModificationTree, TreeNode
from graphs.validate import validate
from tools.graph_tools import Draft, cells_tool, edit_tool, validate_tool
from tools.memory import ExperienceRecord, Memory
from tools.memory_tools import experience_tool, knowledge_tool
from tools.tree_tools import inspect_tree_tool

from .llm import UsageLedger
from .llm.errors import server_message
from .protocol import MAX_ROUNDS, REVISE, design_task, parse_plan, revise_advice, verdict
from .team import RoleTools, TeamParts, design_team
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
    # Training-free scores of each candidate before it is trained (training.screening.ProxyScorer);
    # None: no scores. With screen_k > 1 a trial gathers that many valid designs and trains the best
    # by screen_proxy.
    scorer: Callable | None = None
    screen_k: int = 1
    screen_proxy: str = "synflow"
    # This trial's valid designs so far (screening): a repeat of one is a repeat like any other.
    drafted: list[tuple[Block, str]] = field(default_factory=list)
    # Candidates of trials in flight side by side (block, label, trial), shared by them all: one
    # design is not evaluated by two trials at once.
    reserved: list[tuple[Block, str, int]] = field(default_factory=list)
    seed: int = 0   # the run's seed (the digits split, and so its normalisation constants, depend on it)
    trial: int = 0  # the trial this env belongs to (its own reservations are not repeats for it)
    # The run's tree, live, when `tree` is this trial's fork of it: nodes that trials beside this one
    # added after it began are repeats too.
    run_tree: ModificationTree | None = None
    # Told what the trial is doing (a role's name, "training"), for progress lines while trials overlap.
    on_stage: Callable[[int, str], None] | None = None
    parts: TeamParts = field(default_factory=TeamParts)  # the team's parts (ablations switch them off)

    def stage(self, what: str) -> None:
        if self.on_stage is not None:
            self.on_stage(self.trial, what)

    def earlier(self, block: Block) -> str | None:
        """How an earlier candidate of this run with the same design is described to the agents;
        None when the design is new."""
        n = self.tree.find_candidate(block)
        if n is None and self.run_tree is not None and self.run_tree is not self.tree:
            n = self.run_tree.find_candidate(block)
        if n is not None:
            return f"node {n.id} ({'the root' if n.trial in (None, 0) else f'trial {n.trial}'}, {n.status})"
        mine = next((label for b, label in self.drafted if same_block(b, block)), None)
        return mine or next((label for b, label, t in self.reserved if t != self.trial and same_block(b, block)), None)

    def hold(self, block: Block) -> None:
        """Hold a design this trial's validator passed against trials running beside it."""
        self.reserved.append((block, f"{IN_FLIGHT} {self.trial}, in progress", self.trial))

    def is_new(self, block: Block) -> bool:
        return self.earlier(block) is None


# With screening, design sessions beyond k that a trial may run when some of its designs are not
# valid, new and within the budget; without, sessions a trial may add when a trial running beside
# it took its design first.
SCREEN_SPARE_SESSIONS = 2
IN_FLIGHT = "a design of trial"
TAKEN_BESIDE = "taken by a trial running beside this one"


@dataclass
class Candidate:
    """A valid, new design fitted to the budget and scored, waiting to be trained or screened out."""

    block: Block
    x: int | None
    widths: list
    params: int
    flops: int
    scores: object | None  # training.screening.ProxyScores
    common: dict           # trial, proposal, inspiration of the node it becomes

    def metrics(self) -> dict:
        return self.scores.as_metrics() if self.scores is not None else {}


def task_message(trial: int, node: TreeNode, tree: ModificationTree, space: Space | None = None,
                 drafted: list[tuple[Block, str]] | None = None) -> str:
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
        where = describe_space(blind=space.blind) + cell
    if drafted:  # screening: this trial's earlier designs, so that the next one differs
        shown = "\n".join(f"- {label}: {space.arch_of(b) or _one_line_block(b)}" for b, label in drafted)
        children += f"\nDesigns already drafted in this trial or by trials in progress (draft a different one):\n{shown}"
    # A blind space shows no size: parameters and FLOPs would tell the convolutions from the rest.
    sizes = "" if space.blind is not None else f", {node.params or 0:,} params, {node.flops or 0:,} FLOPs"
    return design_task(trial, node.id, f"validation accuracy {acc}{sizes}", node.block, children, space=space.name,
                       space_text=where)


def _one_line_block(block: Block) -> str:
    return " ".join(str(block).split())[:300]


@dataclass
class Staged:
    """A finished trial whose nodes are still on its own fork of the tree (`env.tree`); `commit_trial`
    brings them into the run's tree."""

    trial: int
    node: TreeNode  # the node the trial ends with (trained, or why not), in the fork
    parent: TreeNode
    log: Transcript
    team: bool      # designed by the agents (their outcome is written to the experience base)


def commit_trial(env: TrialEnv, fork: ModificationTree, since: int, staged: Staged) -> TreeNode:
    """The driver's step after a trial: the fork's nodes (from id `since`) join the run's tree
    (`env.tree`) with the next ids, the outcome goes to the experience base and the trial's files are
    written. The trial's node, as it now is in the run's tree."""
    moved = env.tree.adopt(fork, since)
    node = env.tree.get(moved[staged.node.id])
    if staged.team and node.status == "trained":
        _write_outcome_experience(env, staged.trial, staged.parent, node, node.proposal or "")
    _write_trial_files(env, staged.trial, node, staged.log)
    env.reserved[:] = [r for r in env.reserved if r[2] != staged.trial]
    return node


async def run_trial(env: TrialEnv, trial: int, parent: TreeNode) -> Staged:
    """The team designs on `parent`: once, or with screening until `screen_k` valid new designs
    are in hand (at most SCREEN_SPARE_SESSIONS more sessions). Nodes are added to `env.tree`, which
    is the trial's own fork of the run's tree (ModificationTree.fork)."""
    start = time.perf_counter()
    log = Transcript()

    async def design(session: int, have: int) -> Candidate | TreeNode:
        if env.screen_k > 1:
            log.note("trial", f"design session {session}: {have} of {env.screen_k} candidates so far")
        return await _team_session(env, trial, parent, log)

    candidates, ended = await gather_candidates(env, design)

    usage = env.ledger.totals(str(trial)) if env.ledger is not None else None
    if usage and usage["calls"]:
        tokens, dollars = usage["tokens"], usage["usd"]
    else:
        tokens, dollars = sum(r["prompt_tokens"] + r["completion_tokens"] for r in log.records), 0.0
    node = await settle(env, trial, candidates, log) if candidates else ended[-1]
    cost = {"tokens": tokens, "dollars": dollars, "seconds": round(time.perf_counter() - start, 2)}
    return Staged(trial, env.tree.update(node.id, cost=cost), parent, log, team=True)


async def gather_candidates(env: TrialEnv, design) -> tuple[list[Candidate], list[TreeNode]]:
    """Run `design(session, candidates_so_far)` once, or with screening until `screen_k` candidates
    are in hand (at most SCREEN_SPARE_SESSIONS more sessions). The candidates, and the nodes of
    designs that were not (invalid, duplicate, failed); a model-client failure ends the gathering."""
    env.drafted = []
    candidates: list[Candidate] = []
    ended: list[TreeNode] = []
    sessions = 1 if env.screen_k == 1 else env.screen_k + SCREEN_SPARE_SESSIONS
    session, spare = 0, SCREEN_SPARE_SESSIONS
    while session < sessions and len(candidates) < env.screen_k:
        session += 1
        outcome = await design(session, len(candidates))
        if isinstance(outcome, Candidate):
            candidates.append(outcome)
            env.drafted.append((outcome.block, f"design {session} of this trial"))
            env.hold(outcome.block)
            continue
        ended.append(outcome)
        if outcome.status == "failed":  # the model client failed: more sessions would fail the same way
            break
        if (outcome.reason or "").endswith(TAKEN_BESIDE) and spare > 0 and env.screen_k == 1:
            # Another trial in flight took this design while this one was drafting: design again,
            # now that the other's design is known (it is in the task and the tools' repeat checks).
            sessions, spare = sessions + 1, spare - 1
    return candidates, ended


async def _team_session(env: TrialEnv, trial: int, parent: TreeNode, log: Transcript) -> Candidate | TreeNode:
    """One conversation of the team on `parent`: a candidate, or the node of a design that is not
    one (added to the tree)."""
    draft = Draft.start(parent.block)
    check = validate_tool(draft, space=env.space, seen=env.earlier, on_valid=env.hold)
    in_cells = [cells_tool(env.earlier)] if env.space.name != "open" else []  # repeats ruled out before drafting
    parts = env.parts
    # The knowledge base describes real ops: a blind space withholds it (its texts would name them).
    knowledge = [knowledge_tool(env.memory.knowledge)] if parts.knowledge and not env.space.blind else []
    experience = [experience_tool(env.memory.experience)] if parts.experience else []
    tools = RoleTools(
        proposer=[*knowledge, inspect_tree_tool(env.tree, sizes=env.space.blind is None), *experience, *in_cells],
        reflector=[*experience, check],
        modifier=[edit_tool(draft, cells_only=env.space.blind is not None), *([check] if parts.feedback else [])],
    )
    rounds = env.max_rounds if parts.feedback else 1
    team = design_team(env.clients, tools, rounds, space=env.space)
    own = Transcript(models={role: str(getattr(client, "model", "") or "") for role, client in env.clients.items()})
    error = None
    try:
        shown = env.drafted + [(b, label) for b, label, t in env.reserved if t != trial]
        speaker = None
        async for item in team.run_stream(task=task_message(trial, parent, env.tree, env.space, shown)):
            own.add(item)
            if getattr(item, "source", None) not in (None, speaker, "user"):
                speaker = item.source
                env.stage(speaker)
            if type(item).__name__ == "ToolCallExecutionEvent" and any(
                    getattr(r, "name", "") == "validate_block" for r in item.content):
                env.stage(f"{speaker}: validator round {len(draft.validations)}")
    except Exception as exc:  # noqa: BLE001 - a failing model client ends this trial, not the run
        own.note("trial", env.redact(f"model client error: {type(exc).__name__}: {exc}"))  # with traceback
        # AutoGen re-raises with the inner traceback in the text: the tree keeps the first line.
        error = env.redact(f"model client error: {server_message(exc)}")

    if env.ledger is not None:  # retries and errors inside model calls, in time order with the chat
        own.merge_events(env.ledger.take_events(str(trial)))
    log.extend(own)
    plan = (own.texts("Proposer") or [""])[-1]
    common = dict(trial=trial, proposal=plan or None, inspiration=_field(plan, "inspiration"))

    if error is None and _model_errors(own):
        error = env.redact("model client error: " + _model_errors(own)[0])
    if error is not None:
        return env.tree.add(parent.id, parent.block, status="failed", reason=error, **common)

    issues = _design_issues(env, draft.block)  # the loop's own check: approval by text is not trusted
    _write_experience(env, trial, parent, draft, own, issues, plan)
    if issues:
        log.note("trial", f"invalid after {len(_submissions(own))} round(s): {len(issues)} error(s)")
        return env.tree.add(parent.id, str(draft.block), status="invalid", errors=issues,
                            reason=f"{len(issues)} validator error(s) after {rounds} rounds", **common)
    return prepare_design(env, parent, draft.block, log, common)


async def run_designer_trial(env: TrialEnv, trial: int, parent: TreeNode, designer, rng) -> Staged:
    """A trial of a baseline designer (agents.designers): no model, no team; its proposals go
    through the same checks, deduplication, budget fit, screening and evaluation as the team's."""
    start = time.perf_counter()
    log = Transcript()

    async def design(session: int, have: int) -> Candidate | TreeNode:
        env.stage(f"designer {designer.name}")
        proposal = designer.propose(env.tree, parent, rng, env.space, env.is_new)
        origin = env.tree.get(proposal.parent)
        log.note("designer", proposal.plan)
        common = dict(trial=trial, proposal=proposal.plan, inspiration=None)
        issues = _design_issues(env, proposal.block)
        if issues:
            return env.tree.add(origin.id, str(proposal.block), status="invalid", errors=issues,
                                reason=f"{len(issues)} validator error(s)", **common)
        return prepare_design(env, origin, proposal.block, log, common)

    candidates, ended = await gather_candidates(env, design)
    node = await settle(env, trial, candidates, log) if candidates else ended[-1]
    node = env.tree.update(node.id, cost={"tokens": 0, "dollars": 0.0,
                                          "seconds": round(time.perf_counter() - start, 2)})
    return Staged(trial, node, parent, log, team=False)


def _design_issues(env: TrialEnv, block: Block) -> list[Issue]:
    issues = validate(block, "base")
    return issues or env.space.issues(block)


def prepare_design(env: TrialEnv, parent: TreeNode, block: Block, log: Transcript,
                   common: dict) -> Candidate | TreeNode:
    """A valid design, deduplicated, fitted to the budget and scored by the run's proxies: a
    Candidate, or the node it ends as (duplicate, or invalid: a repeat or over the budget). A design
    the run has already seen (trained or not) is not evaluated again."""
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
    again = next((label for b, label in env.drafted if same_block(b, block)), None)
    if again is not None:  # screening: a design this trial already has
        log.note("trial", f"the same design as {again}: not evaluated again")
        return env.tree.add(parent.id, str(block), status="invalid", reason=f"repeat of {again}", **common)
    beside = env.earlier(block)  # taken by a trial running beside this one (in flight, or finished since it began)
    if beside is not None:
        log.note("trial", f"the same design as {beside}: not evaluated again")
        return env.tree.add(parent.id, str(block), status="invalid", reason=f"repeat of {beside}; {TAKEN_BESIDE}",
                            **common)

    diff = block_diff(parse_block(parent.block), block)
    log.note("diff", f"from node {parent.id}: {diff.summary()}" + "".join(
        f"; {what} {sorted(ids)}" for what, ids in (("added nodes", diff.added_nodes), ("changed nodes", diff.changed_nodes),
                                                    ("removed nodes", diff.removed_nodes), ("added edges", diff.added_edges),
                                                    ("removed edges", diff.removed_edges)) if ids))
    try:
        x, widths, params, flops = fit_design(block, env.macro, env.dataset, env.budget)
    except BudgetError as exc:
        log.note("trial", f"rejected by the budget: {exc}")
        return env.tree.add(parent.id, str(block), status="invalid", reason=f"budget: {exc}", **common)
    log.note("trial", f"fitted: widths {widths}, {params:,} params, {flops:,} FLOPs")
    scores = None
    if env.scorer is not None:
        scores = env.scorer(block, x)
        shown = ", ".join(f"{k} {v:.4g}" if v is not None else f"{k} n/a" for k, v in scores.scores.items())
        log.note("proxies", f"{shown} ({scores.seconds:.2f} s; data: {scores.data})"
                 + (f"; error: {scores.error}" if scores.error else ""))
    return Candidate(block, x, widths, params, flops, scores, dict(common, parent=parent.id))


async def settle(env: TrialEnv, trial: int, candidates: list[Candidate], log: Transcript) -> TreeNode:
    """Train the best candidate by the screening proxy (the only one without screening); the others
    become `screened` nodes with their scores. The trained (or failed) node."""
    from training.screening import best_by

    pick = 0
    if len(candidates) > 1:
        pick = best_by([c.scores.scores if c.scores is not None else {} for c in candidates], env.screen_proxy)
        shown = "; ".join(f"design {i + 1}: {_score_text(c, env.screen_proxy)}" for i, c in enumerate(candidates))
        log.note("screen", f"{len(candidates)} candidates by {env.screen_proxy}: {shown}; training design {pick + 1}")
    chosen = candidates[pick]
    node = await train_candidate(env, trial, env.tree.get(chosen.common["parent"]), chosen, log)
    for i, c in enumerate(candidates):
        if i == pick:
            continue
        reason = (f"screened out by {env.screen_proxy}: {_score_text(c, env.screen_proxy)} against "
                  f"{_score_text(chosen, env.screen_proxy)} of the design trial {trial} trained")
        extra = {k: v for k, v in c.common.items() if k != "parent"}
        env.tree.add(c.common["parent"], str(c.block), status="screened", reason=reason, widths=c.widths,
                     params=c.params, flops=c.flops, metrics=c.metrics(), **extra)
    return node


def _score_text(c: Candidate, proxy: str) -> str:
    v = c.scores.scores.get(proxy) if c.scores is not None else None
    return "n/a" if v is None else f"{v:.4g}"


async def train_candidate(env: TrialEnv, trial: int, parent: TreeNode, cand: Candidate, log: Transcript) -> TreeNode:
    log.note("trial", f"training: widths {cand.widths}")
    env.stage("training")
    common = {k: v for k, v in cand.common.items() if k != "parent"}
    outcome = await env.train.run_json({"block": str(cand.block), "x": cand.x, "trial": trial}, _token())
    log.note("launch_training", env.train.return_value_as_string(outcome))
    status = "trained" if outcome.status == "ok" else "failed"
    return env.tree.add(parent.id, str(cand.block), status=status, reason=None if status == "trained" else outcome.error,
                        widths=cand.widths, params=cand.params, flops=cand.flops,
                        metrics={**_metrics(outcome), **cand.metrics()}, **common)


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


def _other_nodes(env: TrialEnv, trial: int, node: TreeNode) -> list[dict]:
    """The trial's other nodes (screened-out candidates, designs that were not candidates)."""
    return [{"node": n.id, "status": n.status, "reason": n.reason, "proxies": (n.metrics or {}).get("proxies")}
            for n in env.tree.nodes if n.trial == trial and n.id != node.id]


def _write_trial_files(env: TrialEnv, trial: int, node: TreeNode, log: Transcript) -> None:
    d = env.run_dir / "trials" / f"{trial:04d}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "block.txt").write_text(node.block)
    (d / "metrics.json").write_text(json.dumps({"node": node.id, "parent": node.parent, "status": node.status,
                                                "duplicate_of": node.duplicate_of, "reason": node.reason,
                                                "widths": node.widths, "params": node.params, "flops": node.flops,
                                                "metrics": node.metrics, "cost": node.cost,
                                                "errors": [e.model_dump() for e in node.errors],
                                                "other_nodes": _other_nodes(env, trial, node)}, indent=2))
    if env.export and node.status == "trained":
        from graphs.compile import build_model
        from graphs.export import export_source

        x = node.widths[0] if env.macro == "nader" and node.widths else None
        from training.datasets import input_normalization

        (d / "model.py").write_text(export_source(build_model(parse_block(node.block), env.macro, env.dataset, x),
                                                  normalization=input_normalization(env.dataset, env.seed)))
    if env.space.blind is not None:  # the transcript is what the designers saw: the blind view
        log = log.mapped(env.space.blind.encode_value)
    log.write(d, f"Trial {trial}: node {node.id} ({node.status})", redact=env.redact)
