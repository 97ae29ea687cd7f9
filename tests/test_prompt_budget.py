"""Prompt tokens that do not grow with the tree (issue 11, item 8): the children summary, which
every model call of a trial carries in the task message, has the same bound with 500 children as
with 20, and keeps what the designers need: the best and the latest attempts, and counts of the rest."""
from __future__ import annotations

from agents.protocol import design_task, mentioned_strategies
from agents.tokens import count_tokens
from graphs.macro import DEFAULT_ROOTS
from graphs.ir import print_block
from graphs.tree import SUMMARY_BEST, SUMMARY_RECENT, SUMMARY_SHOWN, ModificationTree

BASE = DEFAULT_ROOTS["nader"]
STRATEGIES = [f"strategy-{i}" for i in range(14)]
BOUND = 1500  # tokens of a children summary, however many children


def plan(i: int) -> str:
    return (f"STRATEGY: {STRATEGIES[i % len(STRATEGIES)]}\nINSPIRATION: insp-{i % 7}\nPLAN: insert a gated "
            f"depthwise branch after node {i % 5} and widen the shortcut with a 1x1 projection so that the "
            f"added capacity raises validation accuracy within the parameter budget (attempt {i}).")


def tree_with(children: int) -> ModificationTree:
    t = ModificationTree()
    t.root(BASE, {"valid_acc": 60.0})
    for i in range(children):
        kind = i % 4
        if kind == 3:
            t.add(0, BASE, status="invalid", reason="2 validator error(s) after 5 rounds", proposal=plan(i),
                  errors=[{"node": 7, "code": "arity", "message": f"node 7: Add needs 2 inputs, got 1 ({i})"}])
        elif kind == 2:
            t.add(0, BASE, status="duplicate", duplicate_of=0, proposal=plan(i), inspiration=f"insp-{i % 7}")
        else:  # trained, accuracies spread so that the best are scattered over the ids
            t.add(0, BASE, metrics={"valid_acc": 55.0 + (i * 37 % 100) / 10}, proposal=plan(i),
                  inspiration=f"insp-{i % 7}: squeeze-and-excitation gates the channels")
    return t


def task(t: ModificationTree) -> str:
    return design_task(12, 0, "validation accuracy 60.00%", BASE, t.children_summary(0))


def test_the_summary_of_500_children_has_the_bound_of_20():
    small, large = tree_with(20), tree_with(500)
    s20, s500 = count_tokens(small.children_summary(0)), count_tokens(large.children_summary(0))
    assert s20 <= BOUND and s500 <= BOUND
    assert abs(s500 - s20) <= 60, (s20, s500)  # the same lines, only other numbers in them
    assert abs(count_tokens(task(large)) - count_tokens(task(small))) <= 60


def test_a_large_summary_keeps_the_best_the_latest_and_counts_the_rest():
    t = tree_with(500)
    kids = t.children(0)
    lines = t.children_summary(0).splitlines()
    assert lines[0].startswith("Node #0 (valid_acc 60): 500 modification(s) already tried")
    shown = [int(line.split()[1][1:]) for line in lines[1:] if line.startswith("- #")]
    trained = sorted((c for c in kids if c.status == "trained"), key=lambda c: (-c.valid_acc, c.id))
    best = [c.id for c in trained[:SUMMARY_BEST]]
    assert set(best) <= set(shown)
    latest = [c.id for c in kids if c.id not in best][-SUMMARY_RECENT:]
    assert set(latest) <= set(shown) and len(shown) == SUMMARY_BEST + SUMMARY_RECENT
    assert shown == sorted(shown)  # in id order: no line is repeated
    rest = 500 - len(shown)
    counts = {s: sum(1 for c in kids if c.status == s and c.id not in shown) for s in ("trained", "duplicate", "invalid")}
    assert f"- {rest} other(s) not listed: {counts['trained']} trained, {counts['duplicate']} duplicate, " \
           f"{counts['invalid']} invalid" in lines
    # the plans of the children not listed are still named, so a designer can avoid repeating them
    assert set(mentioned_strategies(t.children_summary(0))) >= set(STRATEGIES[:10])


def test_a_small_summary_lists_every_child():
    t = tree_with(SUMMARY_SHOWN)
    lines = t.children_summary(0).splitlines()
    assert [line.split()[1] for line in lines[1:]] == [f"#{i}" for i in range(1, SUMMARY_SHOWN + 1)]


# ---------------------------------------------------------------- what every model call re-sends (issue 11)
NB201_ROOT = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def nb201_task(children: int) -> str:
    from agents.trial import task_message
    from graphs.nb201 import arch_to_block
    from graphs.space import make_space

    t = ModificationTree()
    root = print_block(arch_to_block(NB201_ROOT))
    t.root(root, {"valid_acc": 70.0})
    for i in range(children):
        t.add(0, root, metrics={"valid_acc": 60.0 + (i * 37 % 100) / 10}, proposal=plan(i))
    return task_message(children + 1, t.get(0), t, make_space("nb201"))


def test_the_nb201_task_is_bounded_and_names_the_node_cell_not_the_root_list_twice():
    from agents.protocol import parse_design_task

    small, large = nb201_task(20), nb201_task(500)
    assert abs(count_tokens(large) - count_tokens(small)) <= 60
    assert count_tokens(large) <= 1200  # 288 of them describe the space
    parsed = parse_design_task(large)
    assert parsed.space == "nb201" and parsed.block is not None and parsed.trial == 501
    assert large.count("1<-0:") == 1  # the node's cell once; the root's cell is not listed besides
    from graphs.nb201 import arch_to_block
    from graphs.space import make_space

    # the node's own arch string (the canonical member of its class), which the agents can quote
    assert make_space("nb201").arch_of(arch_to_block(NB201_ROOT)) in large


def test_the_reviewer_sees_the_task_without_the_tried_list_and_the_space_description():
    from agents.protocol import parse_design_task
    from agents.team import review_task

    task = nb201_task(30)
    seen = review_task(task)
    full, short = parse_design_task(task), parse_design_task(seen)
    assert (short.trial, short.block, short.space) == (full.trial, full.block, full.space)
    assert "already tried" not in seen and "The ops, as blocks" not in seen
    assert seen.splitlines()[0] == task.splitlines()[0]
    assert count_tokens(seen) < count_tokens(task) / 2
    assert review_task("no fence here") == "no fence here"  # not a design task: unchanged
    open_task = design_task(3, 0, "validation accuracy 60.00%", BASE, "none yet")
    assert parse_design_task(review_task(open_task)).block == parse_design_task(open_task).block


def test_the_reflector_reads_the_short_task_and_the_others_the_full_one(tmp_path):
    """A real team run (offline designer, real tools and memory): every Reflector call gets the
    task as review_task makes it; the Proposer and the Modifier get it whole."""
    import asyncio

    from agents.offline.client import OfflineDesignerClient
    from agents.team import RoleTools, design_team, review_task
    from autogen_core.models import UserMessage
    from tools.graph_tools import Draft, edit_tool, validate_tool
    from tools.memory import MemoryConfig, open_memory
    from tools.memory_tools import experience_tool, knowledge_tool
    from tools.tree_tools import inspect_tree_tool

    class Recording(OfflineDesignerClient):
        def __init__(self, role: str):
            super().__init__(role, seed=0, fault_rate=0.0)
            self.tasks: list[str] = []

        async def create(self, messages, **kwargs):
            self.tasks.append(next(m.content for m in messages if isinstance(m, UserMessage) and m.source == "user"))
            return await super().create(messages, **kwargs)

    tree = tree_with(12)
    text = task(tree)
    clients = {r: Recording(r) for r in ("Proposer", "Reflector", "Modifier")}
    memory = open_memory(MemoryConfig(embedder="hashing", path=str(tmp_path / "mem"), cache_dir=str(tmp_path / "c")))
    try:
        draft = Draft.start(BASE)
        check = validate_tool(draft)
        tools = RoleTools(proposer=[knowledge_tool(memory.knowledge), inspect_tree_tool(tree),
                                    experience_tool(memory.experience)],
                          reflector=[experience_tool(memory.experience), check], modifier=[edit_tool(draft), check])
        asyncio.run(design_team(clients, tools).run(task=text))
    finally:
        memory.close()
    assert clients["Reflector"].tasks and set(clients["Reflector"].tasks) == {review_task(text)}
    for role in ("Proposer", "Modifier"):
        assert clients[role].tasks and set(clients[role].tasks) == {text}


def test_the_nb201_modifier_prompt_lists_only_the_ops_cells_are_made_of():
    from agents.prompts import load_prompt
    from agents.team import space_ops
    from graphs.ir import parse_block
    from graphs.nb201 import arch_to_block
    from graphs.space import make_space

    ops = space_ops(make_space("nb201"))
    names = {op.name for op in ops}
    # every op of a cell using all five NB201 ops on live edges is listed
    cell = arch_to_block("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    assert {n.op for n in parse_block(print_block(cell)).nodes} - {"input", "output"} <= names
    assert names == {"Conv2d", "AvgPool2d", "ReLU", "BN", "Add"}
    assert space_ops(make_space("open")) is None and space_ops(None) is None
    small, full = load_prompt("Modifier", ops=ops), load_prompt("Modifier")
    assert "Linear(" in full and "Linear(" not in small and "AvgPool2d(" in small
    assert count_tokens(small) < count_tokens(full) / 2


def test_experience_texts_are_bounded_so_a_search_result_is():
    from tools.memory import ExperienceRecord, MemoryConfig, open_memory
    from tools.memory.records import RECORD_TEXT_MAX

    long_plan = "set edge 3<-0: skip_connect -> nor_conv_3x3; " * 60
    rec = ExperienceRecord(type="regression", change=long_plan, advice=long_plan, error_message=long_plan)
    assert len(rec.change) == len(rec.advice) == len(rec.error_message) == RECORD_TEXT_MAX
    assert rec.change.startswith("set edge 3<-0: skip_connect -> nor_conv_3x3;") and rec.change.endswith("…")
    assert ExperienceRecord(type="fix", change="short").change == "short"
    with open_memory(MemoryConfig(embedder="hashing", load_starter=False)) as memory:
        for i in range(12):
            memory.experience.add(ExperienceRecord(type="regression", change=f"{i} " + long_plan, trial=i))
        hits = memory.experience.search("set edge skip_connect", k=10)
    assert len(hits) == 10 and all(len(r.change) <= RECORD_TEXT_MAX for r, _ in hits)
