"""The agent protocol (markers, plan fields, task messages) and the prompts rendered from it."""
import asyncio
import re
from dataclasses import dataclass

import pytest
from autogen_agentchat.messages import TextMessage, ToolCallExecutionEvent
from autogen_core.models import FunctionExecutionResult

from agents import protocol as P
from agents.prompts import PROMPTS_DIR, load_prompt
from graphs.registry import op_catalog
from agents.team import termination
from conftest import ROOT


# ------------------------------------------------------------------------------ markers and plans
def test_verdicts_open_a_line_and_words_elsewhere_do_not_count():
    assert P.verdict("APPROVE: the draft is valid.") == "APPROVE"
    assert P.verdict("**REJECT**: still invalid") == "REJECT"
    assert P.verdict("The draft has one error.\nREVISE: connect node 20.") == "REVISE"
    assert P.verdict("REVISE: fix node 5, then I will APPROVE it.") == "REVISE"
    assert P.verdict("I cannot APPROVE this yet; REJECT would be premature.") is None
    assert P.verdict("ADVICE: keep C.") is None and P.marker("ADVICE: keep C.") == "ADVICE"
    assert P.verdict("APPROVED") is None and P.verdict("") is None
    assert P.is_final("APPROVE: ok") and not P.is_final("REVISE: no")
    assert P.revise_advice("REVISE: 1 error\n- [arity] x\nAdvice: add the edge 0->20\nExperience 3: y") == \
        "add the edge 0->20"


def test_plans_are_parsed_with_typed_fields_and_missing_ones_are_none():
    text = P.render_plan("se_attention", "se-net (Hu 2018)", "Gate the residual branch.")
    assert P.parse_plan(text) == P.Plan("se_attention", "se-net (Hu 2018)", "Gate the residual branch.")
    assert P.parse_plan(text).render() == text
    multi = ("Here is my plan.\n**STRATEGY:** bottleneck block\n- INSPIRATION: resnet-bottleneck\n"
             "PLAN: Replace node 2 by a 1x1 conv to C/4,\n  a 3x3 conv and a 1x1 conv back to C.\n")
    plan = P.parse_plan(multi)
    assert plan.strategy == "bottleneck block" and plan.inspiration == "resnet-bottleneck"
    assert plan.summary == "Replace node 2 by a 1x1 conv to C/4, a 3x3 conv and a 1x1 conv back to C."
    assert P.strategy_key(plan) == "bottleneck"
    assert P.parse_plan("STRATEGY: widen") == P.Plan("widen")
    for no_plan in ("", "no plan today", "STRATEGY:", "The STRATEGY: is inline, not a field", "PLAN: only a plan"):
        assert P.parse_plan(no_plan) is None, no_plan
    assert P.strategy_key(None) is None
    assert P.mentioned_strategies("- #1 trained | plan: STRATEGY: widen INSPIRATION: x\n- #2 plan: STRATEGY: se_attention") \
        == ["widen", "se_attention"]


def test_task_messages_round_trip():
    text = P.design_task(7, 3, "validation accuracy 90.00%", "##B##\n0:input\n1:output\n0->1", "none yet")
    task = P.parse_design_task(text)
    assert task.trial == 7 and task.block == "##B##\n0:input\n1:output\n0->1\n" and "none yet" in task.tried
    assert P.parse_design_task("no fence here") == P.DesignTask(trial=0, block=None, tried="no fence here")
    quoted = P.quote_excerpt("ends here EXCERPT>>>\n<<<EXCERPT again")
    reader = P.parse_reader_task(P.reader_task(2, "pages 1-2", "A Title", quoted, 3))
    assert reader == P.ReaderTask(excerpt=quoted, limit=3)
    assert P.parse_reader_task("nothing") == P.ReaderTask(excerpt=None, limit=None)


def test_roles_are_checked_and_read_back_from_an_introduction():
    assert [P.role_named(P.introduction(r) + " of a team.") for r in P.ROLES] == list(P.ROLES)
    assert P.role_named("You are the Critic.") is None and P.role_named("") is None
    with pytest.raises(ValueError, match="valid roles are Reader, Proposer, Modifier, Reflector"):
        P.introduction("modifier")


def test_only_a_reflector_text_reply_with_a_final_verdict_ends_the_chat():
    async def ends(*messages) -> bool:
        cond = termination(max_rounds=5)
        return await cond(list(messages)) is not None

    result = FunctionExecutionResult(call_id="1", name="search_experience", content="APPROVE: stored advice",
                                     is_error=False)
    assert not asyncio.run(ends(ToolCallExecutionEvent(source="Reflector", content=[result])))
    assert not asyncio.run(ends(TextMessage(source="Modifier", content="APPROVE: I approve my own draft")))
    assert not asyncio.run(ends(TextMessage(source="Reflector", content="REVISE: don't APPROVE yet")))
    assert asyncio.run(ends(TextMessage(source="Reflector", content="APPROVE: valid")))
    assert asyncio.run(ends(TextMessage(source="Reflector", content="REJECT: still invalid")))


# ------------------------------------------------------------------------------ prompts
def test_modifier_prompt_lists_every_registry_op_and_reflector_states_max_rounds():
    catalog = op_catalog()
    assert len(catalog) >= 20
    modifier = load_prompt("Modifier")
    for op in catalog:
        assert f"- `{op.signature}`, {op.inputs}: {op.doc}\n" in modifier, op.name
    for kind in ("add_node", "insert_on_edge", "replace_block"):
        assert kind in modifier
    reflector = load_prompt("Reflector", max_rounds=2)
    assert "already had 2 rounds" in reflector and "5" not in reflector
    assert "already had 7 rounds" in load_prompt("Reflector", max_rounds=7)
    assert "after 3 submissions" in load_prompt("Modifier", max_rounds=3)


def test_prompts_render_markers_fields_and_tags_from_their_sources():
    from tools.memory.records import DESIGN_TAGS

    proposer = load_prompt("Proposer")
    assert [line.split(":")[0] for line in proposer.splitlines() if re.match(r"[A-Z]+: <", line)] == \
        list(P.PLAN_FIELDS)
    reflector = load_prompt("Reflector")
    for m in (P.ADVICE, P.REVISE, P.APPROVE, P.REJECT, P.ADVICE_LABEL, P.EXPERIENCE_LABEL):
        assert f'"{m}' in reflector, m
    assert f'"{P.SUBMITTED}: ' in load_prompt("Modifier")
    reader = load_prompt("Reader")
    assert all(tag in reader for tag in DESIGN_TAGS) and P.EXCERPT_OPEN in reader and f'"{P.DONE}: ' in reader
    for role in P.ROLES:  # each prompt introduces its role as servers and tests read it back
        text = load_prompt(role)
        assert P.role_named(text) == role and "{{" not in text and "{%" not in text


def test_a_given_op_catalog_is_listed_instead_of_the_registry():
    @dataclass
    class Op:
        name: str
        signature: str
        doc: str

    toy = [Op("Swish", "Swish(beta=1)", "x * sigmoid(beta * x)")]
    text = load_prompt("Modifier", ops=toy)
    assert "- `Swish(beta=1)`: x * sigmoid(beta * x)" in text
    assert not any(f"`{op.signature}`" in text for op in op_catalog())


def test_hand_written_prompt_files_name_no_registry_op():
    """The op list reaches the prompts only through the registry: no template spells an op name.
    `input` and `output` are the block's two ends, words no prompt can do without."""
    names = {op.name for op in op_catalog()} - {"input", "output"}
    for path in sorted((ROOT / "prompts").glob("*.md")):
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", path.read_text()))
        lower = {w.lower() for w in words}
        assert not {n for n in names if n.lower() in lower}, path.name


def test_template_errors_name_the_file_and_bad_settings_are_refused(tmp_path):
    (tmp_path / "proposer.md").write_text("{{ intro }}: plan with {{ NO_SUCH_FIELD }}\n")
    with pytest.raises(ValueError, match=r"proposer\.md names a variable the context lacks: 'NO_SUCH_FIELD'"):
        load_prompt("Proposer", directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="no system prompt for role 'Reader'"):
        load_prompt("Reader", directory=tmp_path)
    with pytest.raises(ValueError, match="max_rounds must be a whole number >= 1, got 0"):
        load_prompt("Reflector", max_rounds=0)
    with pytest.raises(ValueError, match="unknown role 'Judge'"):
        load_prompt("Judge")
    assert PROMPTS_DIR == ROOT / "prompts"
