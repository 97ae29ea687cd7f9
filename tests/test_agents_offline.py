"""The offline designer through the real team and tools, without training."""
import asyncio
import json

from agents.factory import DEFAULT_ROOTS
from agents.offline.client import OfflineDesignerClient
from agents.team import RoleTools, design_team
from agents.tokens import count_tokens
from agents.transcript import Transcript
from graphs.tree import ModificationTree
from graphs.validate import validate
from tools.graph_tools import Draft, edit_tool, validate_tool
from tools.memory import MemoryConfig, open_memory
from tools.memory_tools import experience_tool, knowledge_tool
from tools.tree_tools import inspect_tree_tool
from agents.trial import task_message


def chat(seed: int, trial: int = 1, fault_rate: float = 0.25):
    tree = ModificationTree()
    root = tree.root(DEFAULT_ROOTS["nader"], metrics={"valid_acc": 90.0, "test_acc": 89.0})
    client = OfflineDesignerClient(seed=seed, fault_rate=fault_rate)
    clients = {r: client for r in ("Proposer", "Reflector", "Modifier")}
    draft = Draft.start(root.block)
    with open_memory(MemoryConfig(path=None, embedder="hashing")) as mem:
        mem.knowledge.ensure_starter()
        tools = RoleTools(proposer=[knowledge_tool(mem.knowledge), inspect_tree_tool(tree)],
                          reflector=[experience_tool(mem.experience), validate_tool(draft)],
                          modifier=[edit_tool(draft), validate_tool(draft)])
        log = Transcript()

        async def go():
            async for item in design_team(clients, tools).run_stream(task=task_message(trial, root, tree)):
                log.add(item)

        asyncio.run(go())
    return log, draft, client


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
    log, _, client = chat(seed=0)
    calls = {(r["role"], c["call"]) for r in log.records if r["type"] == "ToolCallRequestEvent" for c in r["content"]}
    assert {("Proposer", "search_knowledge"), ("Reflector", "search_experience"), ("Modifier", "edit_block"),
            ("Modifier", "validate_block"), ("Reflector", "validate_block")} <= calls
    plan = log.texts("Proposer")[-1]
    assert plan.startswith("STRATEGY:") and "INSPIRATION:" in plan and "PLAN:" in plan
    usage = client.total_usage()
    assert usage.prompt_tokens > 1000 and usage.completion_tokens > 50
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
