"""The offline designer through the real team and tools, without training."""
import asyncio
import json

import pytest
from autogen_core import FunctionCall
from autogen_core.models import (AssistantMessage, FunctionExecutionResult, FunctionExecutionResultMessage,
                                 SystemMessage, UserMessage)

from agents.factory import DEFAULT_ROOTS
from agents.offline.client import OfflineDesignerClient
from agents.protocol import DESIGN_ROLES, verdict
from agents.team import RoleTools, design_team
from agents.tokens import count_tokens
from agents.transcript import Transcript
from graphs.edits import apply_edits
from graphs.ir import parse_block
from graphs.tree import ModificationTree
from graphs.validate import validate
from tools.graph_tools import Draft, edit_tool, validate_tool
from tools.memory import MemoryConfig, open_memory
from tools.memory_tools import experience_tool, knowledge_tool
from tools.tree_tools import inspect_tree_tool
from agents.trial import task_message
from scripted_clients import ScriptedModifierClient


def chat(seed: int, trial: int = 1, fault_rate: float = 0.25, clients=None, max_rounds: int = 5):
    """One design chat on the default root; `clients` maps roles to clients (default: the offline
    designer for each role). Returns the transcript, the draft and the clients."""
    tree = ModificationTree()
    root = tree.root(DEFAULT_ROOTS["nader"], metrics={"valid_acc": 90.0, "test_acc": 89.0})
    clients = clients or {r: OfflineDesignerClient(r, seed=seed, fault_rate=fault_rate) for r in DESIGN_ROLES}
    draft = Draft.start(root.block)
    with open_memory(MemoryConfig(path=None, embedder="hashing")) as mem:
        mem.knowledge.ensure_starter()
        tools = RoleTools(proposer=[knowledge_tool(mem.knowledge), inspect_tree_tool(tree)],
                          reflector=[experience_tool(mem.experience), validate_tool(draft)],
                          modifier=[edit_tool(draft), validate_tool(draft)])
        log = Transcript()

        async def go():
            async for item in design_team(clients, tools, max_rounds).run_stream(task=task_message(trial, root, tree)):
                log.add(item)

        asyncio.run(go())
    return log, draft, clients


def strip_times(log: Transcript) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in log.records]


def test_same_seed_same_conversation_and_design():
    a, da, _ = chat(seed=3)
    b, db, _ = chat(seed=3)
    assert strip_times(a) == strip_times(b)
    assert str(da.block) == str(db.block)


def test_designs_vary_with_seed_and_trial_and_are_valid():
    blocks = set()
    for seed in range(4):
        for trial in (1, 2):
            log, draft, _ = chat(seed=seed, trial=trial)
            assert not validate(draft.block), (seed, trial)
            assert any(t.startswith("APPROVE") for t in log.texts("Reflector"))
            blocks.add(str(draft.block))
    assert len(blocks) >= 5


def test_roles_use_their_tools_and_report_tokens():
    log, _, clients = chat(seed=0)
    calls = {(r["role"], c["call"]) for r in log.records if r["type"] == "ToolCallRequestEvent" for c in r["content"]}
    assert {("Proposer", "search_knowledge"), ("Reflector", "search_experience"), ("Modifier", "edit_block"),
            ("Modifier", "validate_block"), ("Reflector", "validate_block")} <= calls
    plan = log.texts("Proposer")[-1]
    assert plan.startswith("STRATEGY:") and "INSPIRATION:" in plan and "PLAN:" in plan
    assert sum(c.total_usage().prompt_tokens for c in clients.values()) > 1000
    assert sum(c.total_usage().completion_tokens for c in clients.values()) > 50
    first_plan = next(r for r in log.records if r["role"] == "Proposer" and r["type"] == "TextMessage")
    assert first_plan["completion_tokens"] == count_tokens(first_plan["content"])


def test_faulty_first_draft_is_repaired_within_the_rounds():
    repaired = 0
    for seed in range(12):
        log, draft, _ = chat(seed=seed, fault_rate=1.0)
        revise = [t for t in log.texts("Reflector") if t.startswith("REVISE")]
        if revise:
            repaired += 1
            assert not validate(draft.block)
            assert any(t.startswith("APPROVE") for t in log.texts("Reflector"))
    assert repaired >= 6


# ------------------------------------------------------------------------------ role and round limit
def test_the_role_is_given_when_built_and_checked():
    with pytest.raises(ValueError, match=r"unknown role 'Critic': valid roles are Reader, Proposer, Modifier, Reflector"):
        OfflineDesignerClient("Critic")
    with pytest.raises(ValueError, match="max_rounds"):
        OfflineDesignerClient("Reflector", max_rounds=0)
    # No system message, or one naming another role: the client plays the role it was built for.
    task = UserMessage(content=TASK, source="user")
    for system in ([], [SystemMessage(content="You are the Modifier of a team.")]):
        result = asyncio.run(OfflineDesignerClient("Proposer").create([*system, task], tools=[SEARCH]))
        assert [c.name for c in result.content] == ["search_knowledge"]
    assert OfflineDesignerClient("Modifier").role == "Modifier"


def test_offline_reflector_rejects_after_max_rounds_and_the_chat_ends_there():
    """A Modifier that never fixes its draft: with max_rounds=2 the Reflector rejects at its second
    review, and its REJECT ends the chat although the team's message cap would allow 5 rounds."""
    clients = {r: ScriptedModifierClient(r, "always_invalid", max_rounds=2) for r in DESIGN_ROLES}
    log, draft, _ = chat(seed=0, clients=clients, max_rounds=5)
    submissions = log.texts("Modifier")
    reviews = log.texts("Reflector")[1:]  # the first Reflector reply is its advice on the plan
    assert len(submissions) == 2 and [verdict(t) for t in reviews] == ["REVISE", "REJECT"]
    assert "still invalid after 2 rounds" in reviews[-1] and validate(draft.block)


# ------------------------------------------------------------------------------ hardening
DEFAULT = DEFAULT_ROOTS["nader"]
TASK = (f"Trial 1. Improve the base block of modification-tree node 0 (validation accuracy 90.00%).\n\n"
        f"```block\n{DEFAULT}```\n\nChildren already tried at this node:\nnone yet\n")
SEARCH = {"name": "search_knowledge", "description": "", "parameters": {"type": "object", "properties": {}}}
MODIFIER_TOOLS = [{"name": n, "description": "", "parameters": {"type": "object", "properties": {}}}
                  for n in ("edit_block", "validate_block")]


def modifier_answer(proposer_text: str | None):
    messages = [SystemMessage(content="You are the Modifier."), UserMessage(content=TASK, source="user")]
    if proposer_text is not None:
        messages.append(UserMessage(content=proposer_text, source="Proposer"))
    messages.append(UserMessage(content="ADVICE: validate before submitting.", source="Reflector"))
    client = OfflineDesignerClient("Modifier", seed=0, fault_rate=0.0)
    return asyncio.run(client.create(messages, tools=MODIFIER_TOOLS)).content


@pytest.mark.parametrize("proposer_text", [
    None,  # the Proposer never spoke
    "",  # an empty reply
    "I will call search_knowledge again once the tool works.",  # a reply after malformed tool calls
    "STRATEGY:\nINSPIRATION: none\nPLAN:",  # the fields, empty
    "STRATEGY: teleport the tensors\nPLAN: \x00\ufffd }{ ```",  # garbage, and a strategy nobody knows
    '[{"id": "call_1", "name": "search_knowledge", "arguments": "{\\"query\\": "}]',  # a tool-call dump
])
def test_offline_modifier_without_a_plan_edits_as_if_nothing_was_planned(proposer_text):
    """No exception and no refusal: the Modifier carries out the strategy it would choose had the
    Proposer never spoken, and the edits give a valid block."""
    answer = modifier_answer(proposer_text)
    assert isinstance(answer, list) and [c.name for c in answer] == ["edit_block"]
    edits = json.loads(answer[0].arguments)["edits"]
    assert edits == json.loads(modifier_answer(None)[0].arguments)["edits"]
    assert not validate(apply_edits(parse_block(DEFAULT), edits))


def test_team_with_a_proposer_that_writes_no_plan_still_designs_a_valid_block():
    class Planless(OfflineDesignerClient):
        def _proposer(self, messages, tools):
            return "Sorry, the knowledge tool failed; no plan this time."

    clients = {r: OfflineDesignerClient(r, seed=1, fault_rate=0.0) for r in DESIGN_ROLES}
    clients["Proposer"] = Planless("Proposer", seed=1)
    log, draft, _ = chat(seed=1, clients=clients)
    assert not validate(draft.block) and str(draft.block) != str(parse_block(DEFAULT))
    assert verdict(log.texts("Reflector")[-1]) == "APPROVE"


@pytest.mark.parametrize("result", ['{"ok": false, "error": "arguments were not valid JSON"}', '"just a string"',
                                    '[1, 2]', "not json at all", '{"valid": false, "errors": [{"code": "x"}]}'])
def test_offline_reflector_reviews_any_validation_result_without_raising(result):
    call = FunctionCall(id="call_9", name="validate_block", arguments="{}")
    messages = [UserMessage(content=TASK, source="user"), UserMessage(content="SUBMITTED: done.", source="Modifier"),
                AssistantMessage(content=[call], source="Reflector"),
                FunctionExecutionResultMessage(content=[FunctionExecutionResult(call_id="call_9", name="validate_block",
                                                                                content=result)])]
    answer = asyncio.run(OfflineDesignerClient("Reflector").create(messages, tools=[])).content
    assert isinstance(answer, str) and verdict(answer) == "REVISE"
