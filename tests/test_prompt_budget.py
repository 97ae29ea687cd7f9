"""Prompt tokens that do not grow with the tree (issue 11, item 8): the children summary, which
every model call of a trial carries in the task message, has the same bound with 500 children as
with 20, and keeps what the designers need: the best and the latest attempts, and counts of the rest."""
from __future__ import annotations

from agents.protocol import design_task, mentioned_strategies
from agents.tokens import count_tokens
from graphs.macro import DEFAULT_ROOTS
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
