"""The modification tree and node selection (DESIGN §6, §8; issue 4 requirements 5 and 7)."""
from __future__ import annotations

import json
import os
import random

import pytest
from hypothesis import given, settings, strategies as st

from graphs import search as search_mod
from graphs.errors import ErrorCode, Issue
from graphs.ir import parse_block, print_block
from graphs.macro import DEFAULT_ROOTS
from graphs.search import POLICIES, SearchError, UnknownPolicyError, dfs, greedy, select, ucb
from graphs.tree import SCHEMA_VERSION, ModificationTree, TreeError, TreeFileError, TreeNode

BASE = DEFAULT_ROOTS["nader"]

# BASE with new node ids and shuffled lines: isomorphic.
RENUMBERED = """##Renamed##
30:ReLU
10:input
17:BN
11:output
12:Conv2d(out_channels=C, kernel_size=(3,3))
40:Conv2d(out_channels=C*1,kernel_size=3)
13:ReLU
21:BN
22:Add
10->12
12->17
21,10->22
17->13
13->40
40->21
22->30
30->11
"""

# Same ops, but the second conv has a 5x5 kernel: not isomorphic.
KERNEL5 = BASE.replace("5:Conv2d(out_channels=C,kernel_size=3)", "5:Conv2d(out_channels=C,kernel_size=5)")
# No skip connection: the Add takes the BN output twice.
NO_SKIP = BASE.replace("6,0->7", "6,6->7")


def m(v, t=None):
    d = {"valid_acc": v}
    if t is not None:
        d["test_acc"] = t
    return d


def fresh(root_acc=50.0) -> ModificationTree:
    t = ModificationTree()
    t.root(BASE, m(root_acc, root_acc - 1), trial=None)
    return t


def quick_tree(spec) -> ModificationTree:
    """A tree from [(parent, status, valid_acc, test_acc)], root first (parent None), built from
    TreeNode objects directly (no parsing: fast enough for hypothesis)."""
    nodes = []
    for i, (parent, status, v, te) in enumerate(spec):
        dup = None
        if status == "duplicate":
            dup = next(j for j in range(i) if j == 0 or nodes[j].status == "trained")
        nodes.append(TreeNode(id=i, parent=parent, block=BASE, status=status, duplicate_of=dup,
                              metrics={} if v is None else m(v, te)))
    return ModificationTree(nodes)


# ---------------------------------------------------------------- tree basics

def test_root_add_children_best():
    t = fresh(50.0)
    assert t.get(0).is_root and t.get(0).status == "trained" and t.get(0).block == print_block(parse_block(BASE))
    a = t.add(0, KERNEL5, metrics=m(55.0, 10.0), trial=1, proposal="bigger kernel", inspiration="k1: large kernels",
              cost={"tokens": 1200, "dollars": 0.01})
    b = t.add(0, NO_SKIP, metrics=m(45.0, 99.0), trial=2, proposal="drop the skip")
    c = t.add(a.id, BASE, status="failed", reason="CUDA out of memory", trial=3)
    assert [n.id for n in t.nodes] == [0, 1, 2, 3]
    assert [n.id for n in t.children(0)] == [1, 2]
    assert [n.id for n in t.children(1)] == [3]
    assert t.children(3) == []
    assert a.cost == {"tokens": 1200, "dollars": 0.01, "seconds": 0.0}
    assert [n.id for n in t.trained()] == [0, 1, 2]
    assert t.best().id == 1  # valid accuracy, not test accuracy
    assert t.best("test_acc").id == 2
    assert c.status == "failed" and c.reason == "CUDA out of memory"
    assert [n.id for n in t.path(3)] == [0, 1, 3] and t.depth(3) == 2
    assert [n.id for n in t.subtree(1)] == [1, 3]
    assert a.hash and a.hash != t.get(0).hash


def test_tree_rejects_bad_links():
    t = ModificationTree()
    with pytest.raises(TreeError):
        t.add(0, BASE)  # no root yet
    t.root(BASE, m(50.0))
    with pytest.raises(TreeError):
        t.root(BASE)
    with pytest.raises(TreeError):
        t.add(7, BASE)  # no such parent
    with pytest.raises(TreeError):
        t.add(0, BASE, status="duplicate")  # duplicate_of missing
    with pytest.raises(TreeError):
        t.add(0, BASE, duplicate_of=0)  # a trained node pointing at an original
    with pytest.raises(TreeError):
        t.get(5)
    assert len(t) == 1  # nothing was added by the failed calls


def test_best_ignores_failed_and_invalid_and_missing_metrics():
    t = fresh(50.0)
    t.add(0, BASE, status="failed", metrics=m(99.0), reason="crashed after one epoch")
    t.add(0, BASE, status="pending")
    t.add(0, KERNEL5, metrics={"valid_acc": float("nan")})
    assert t.best().id == 0
    assert t.get(3).metrics["valid_acc"] is None  # NaN is stored as null: strict JSON, exact round trip
    assert ModificationTree().best() is None


def test_invalid_node_keeps_errors_and_unreadable_text():
    t = fresh()
    issues = [Issue(node=7, code=ErrorCode.ARITY, message="node 7: Add needs at least 2 inputs")]
    n = t.add(0, "this is not a block", status="invalid", errors=issues, proposal="break it")
    assert n.block == "this is not a block" and n.hash is None
    assert n.errors[0].code == "arity" and n.errors[0].node == 7
    n2 = t.add(0, NO_SKIP, status="invalid", errors=[{"node": None, "code": "cycle", "message": "a cycle"}])
    assert n2.hash is not None and n2.errors[0].code == "cycle"
    with pytest.raises(Exception):
        t.add(0, "this is not a block")  # a trained node needs a readable block


def test_update_pending_to_trained():
    t = fresh(50.0)
    p = t.add(0, KERNEL5, status="pending", trial=1, proposal="5x5")
    assert t.find_duplicate(KERNEL5) is None  # pending nodes are not originals
    q = t.update(p.id, status="trained", metrics=m(60.0, 59.0), params=1234, widths=[16, 32, 64])
    assert q.status == "trained" and q.proposal == "5x5" and q.params == 1234 and q.hash == p.hash
    assert t.get(1) is q and t.best().id == 1
    assert t.find_duplicate(KERNEL5).id == 1
    with pytest.raises(TreeError):
        t.update(1, parent=0)
    with pytest.raises(TreeError):
        t.update(1, nonsense=1)
    with pytest.raises(TreeError):
        t.update(0, status="invalid")


def test_children_summary():
    t = fresh(50.0)
    assert "no children yet" in t.children_summary(0)
    t.add(0, KERNEL5, metrics=m(52.5, 10.0), proposal="use a 5x5 kernel in the second conv",
          inspiration="ConvNeXt: large kernels")
    t.add(0, NO_SKIP, status="invalid", proposal="remove the shortcut",
          errors=[Issue(node=7, code=ErrorCode.ARITY, message="node 7: Add needs 2 inputs")])
    t.add(0, RENUMBERED, status="duplicate", duplicate_of=0, proposal="rename nodes")
    t.add(0, BASE, status="failed", reason="model client raised TimeoutError", proposal=None)
    s = t.children_summary(0)
    lines = s.splitlines()
    assert len(lines) == 5
    assert "#1 trained" in lines[1] and "+2.5 vs parent" in lines[1] and "5x5 kernel" in lines[1]
    assert "ConvNeXt" in lines[1] and "10.0" not in lines[1]  # test accuracy is not shown
    assert "#2 invalid" in lines[2] and "[arity]" in lines[2] and "remove the shortcut" in lines[2]
    assert "#3 duplicate of #0" in lines[3]
    assert "#4 failed" in lines[4] and "TimeoutError" in lines[4]


# ---------------------------------------------------------------- duplicates

def test_duplicate_by_isomorphism():
    t = fresh()
    a = t.add(0, KERNEL5, metrics=m(60.0, 58.0), widths=[8, 16, 32], params=999, flops=12345)
    assert t.find_duplicate(RENUMBERED).id == 0  # renumbered root
    assert t.find_duplicate(parse_block(KERNEL5)).id == a.id
    assert t.find_duplicate(NO_SKIP) is None  # same ops, other wiring
    # a renumbered KERNEL5 is found too
    k5_renum = RENUMBERED.replace("40:Conv2d(out_channels=C*1,kernel_size=3)", "40:Conv2d(out_channels=C*1,kernel_size=5)")
    assert t.find_duplicate(k5_renum).id == a.id
    # the stem / downsample must match as well
    stem = "##Stem##\n0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3)\n0->2\n2->1\n"
    assert t.find_duplicate(RENUMBERED, stem=stem) is None
    # a duplicate node reuses its original's result and points at it
    d = t.add(0, k5_renum, status="duplicate", duplicate_of=a.id, proposal="again")
    assert d.metrics == a.metrics and d.widths == [8, 16, 32] and d.params == 999
    # a duplicate of a duplicate resolves to the original
    d2 = t.add(a.id, KERNEL5, status="duplicate", duplicate_of=d.id)
    assert d2.duplicate_of == a.id


def test_only_trained_nodes_and_root_are_originals():
    t = fresh()
    t.add(0, KERNEL5, status="failed", reason="x")
    t.add(0, KERNEL5, status="invalid", errors=[])
    t.add(0, KERNEL5, status="pending")
    assert t.find_duplicate(KERNEL5) is None
    t.add(0, KERNEL5, metrics=m(51.0))
    assert t.find_duplicate(KERNEL5).id == 4


# ---------------------------------------------------------------- files

def build_mixed() -> ModificationTree:
    t = fresh(50.0)
    t.add(0, KERNEL5, metrics={"valid_acc": 61.25, "test_acc": 60.5, "profile": "smoke", "split_seed": 0,
                               "curve": (1, 2.5), "wall_time_s": 3.0},
          widths=[16, 32, 64], params=123456, flops=7890123, trial=1, proposal="plan ü", inspiration="SE-Net",
          cost={"tokens": 10, "dollars": 0.5, "seconds": 1.25})
    t.add(1, NO_SKIP, status="invalid", errors=[Issue(node=7, code=ErrorCode.ARITY, message="bad")], trial=2)
    t.add(1, RENUMBERED, status="duplicate", duplicate_of=0, trial=3)
    t.add(0, "garbage text", status="failed", reason="model client raised", trial=4)
    return t


def test_round_trip_exact(tmp_path):
    t = build_mixed()
    p = t.save(tmp_path / "run" / "tree.json")
    u = ModificationTree.load(p)
    assert u == t
    assert [n.model_dump() for n in u.nodes] == [n.model_dump() for n in t.nodes]
    assert u.get(1).metrics["curve"] == [1, 2.5]
    assert u.find_duplicate(RENUMBERED).id == 0 and u.find_duplicate(KERNEL5).id == 1
    u.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == p.read_bytes()
    doc = json.loads(p.read_text())
    assert doc["version"] == SCHEMA_VERSION and len(doc["nodes"]) == 5
    assert [f for f in os.listdir(p.parent) if f != "tree.json"] == []  # no temp file left


def test_atomic_save_survives_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "tree.json"
    t = fresh()
    t.save(path)
    before = path.read_bytes()
    t.add(0, KERNEL5, metrics=m(70.0))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)  # the crash comes after the temp file was written
    with pytest.raises(OSError):
        t.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["tree.json"]

    def replace_fails(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", replace_fails)
    with pytest.raises(OSError):
        t.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["tree.json"]
    t.save(path)
    assert ModificationTree.load(path) == t


@pytest.mark.parametrize("content", [
    b'{"schema": "nader.modification_tree", "version": 1, "nodes": [',  # truncated
    b"\xff\xfe not json",
    b'{"schema": "something else", "version": 1, "nodes": []}',
    b'{"schema": "nader.modification_tree", "version": 99, "nodes": []}',
    b'{"schema": "nader.modification_tree", "version": 1, "nodes": [{"id": 0, "status": "weird"}]}',
    b'{"schema": "nader.modification_tree", "version": 1, "nodes": [{"id": 1, "status": "trained", "block": "x"}]}',
    b'[1, 2, 3]',
])
def test_load_corrupt_file_raises_and_keeps_it(tmp_path, content):
    path = tmp_path / "tree.json"
    path.write_bytes(content)
    with pytest.raises(TreeFileError):
        ModificationTree.load(path)
    assert path.read_bytes() == content
    with pytest.raises(FileNotFoundError):
        ModificationTree.load(tmp_path / "missing.json")


def test_load_rejects_inconsistent_links(tmp_path):
    t = build_mixed()
    doc = json.loads(t.to_json())
    doc["nodes"][3]["duplicate_of"] = 4  # a later node
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TreeFileError, match="duplicate"):
        ModificationTree.load(path)


# ---------------------------------------------------------------- policies

def test_dfs_follows_improving_children_best_first():
    #            0 (50)
    #        /     |      \
    #     1 (60)  2 (70)   3 (40)
    #             /  |  \
    #        4 (65) 5 (75) 6 (failed)
    #               |
    #             7 (80)   unexpanded -> chosen
    t = quick_tree([(None, "trained", 50, 1), (0, "trained", 60, 1), (0, "trained", 70, 1), (0, "trained", 40, 1),
                    (2, "trained", 65, 1), (2, "trained", 75, 1), (2, "failed", None, None), (5, "trained", 80, 1)])
    assert dfs(t).id == 7
    # 7 gets a child that does not improve: 7 (< 3 children) is chosen again
    t2 = quick_tree([*[(n.parent, n.status, n.valid_acc, 1) for n in t.nodes], (7, "trained", 79, 1)])
    assert dfs(t2).id == 7


def test_dfs_expands_first_unexpanded_and_backtracks():
    #          0 (50)
    #        /        \
    #     1 (60)      2 (70)            walk: 0 -> 2 (best) -> 4 (best improving child of 2)
    #  unexpanded    /   |   \          4 has no improving child and is full -> backtrack;
    #            3 (65) 4 (75) 5 inv    2 has no other improving child and is full -> backtrack;
    #                 /  |  \          the root's next-best improving child 1 is unexpanded: chosen
    #            6 (74) 7 fail 8 dup
    t = quick_tree([(None, "trained", 50, 1), (0, "trained", 60, 1), (0, "trained", 70, 1),
                    (2, "trained", 65, 1), (2, "trained", 75, 1), (2, "invalid", None, None),
                    (4, "trained", 74, 1), (4, "failed", None, None), (4, "duplicate", None, None)])
    assert dfs(t).id == 1
    # a node with no improving child and room left is chosen itself
    t2 = quick_tree([(None, "trained", 50, 1), (0, "trained", 60, 1), (1, "trained", 55, 1)])
    assert dfs(t2).id == 1


def test_dfs_falls_back_to_root():
    t = quick_tree([(None, "trained", 50, 1), (0, "trained", 40, 1), (0, "invalid", None, None),
                    (0, "failed", None, None), (0, "duplicate", None, None)])
    assert dfs(t).id == 0  # root has no improving children; root may always be expanded
    # the only improving line is exhausted (full nodes, no improvements below): back to the root
    t2 = quick_tree([(None, "trained", 50, 1), (0, "trained", 60, 1),
                     (1, "failed", None, None), (1, "invalid", None, None), (1, "trained", 10, 1)])
    assert dfs(t2).id == 0
    assert dfs(t2, max_children=4).id == 1


def test_greedy():
    t = quick_tree([(None, "trained", 50, 1), (0, "trained", 70, 1), (0, "trained", 70, 1), (0, "trained", 60, 1),
                    (1, "failed", None, None), (1, "invalid", None, None), (1, "trained", 20, 1)])
    assert greedy(t).id == 2  # 1 is full; tie with 2 would go to the lower id
    assert greedy(t, max_children=4).id == 1
    t2 = quick_tree([(None, "trained", 50, 1), (0, "trained", 90, 1), (0, "failed", 99, 1), (0, "duplicate", None, None)])
    assert greedy(t2).id == 1


def test_ucb_explores_an_unvisited_node():
    # 1 is the best (80) but was expanded 3 times without a trained child; 2 (78) was never visited
    spec = [(None, "trained", 50, 1), (0, "trained", 80, 1), (0, "trained", 78, 1),
            (1, "invalid", None, None), (1, "failed", None, None)]
    t = quick_tree(spec)
    assert greedy(t).id == 1
    assert ucb(t, c=0.0).id == 1  # pure exploitation
    t3 = quick_tree(spec + [(1, "failed", None, None)])
    assert ucb(t3).id == 2  # exploration wins
    assert ucb(t3, c=0.0).id == 1
    # all equal accuracies: the node with fewest visits, ties by lower id
    t4 = quick_tree([(None, "trained", 50, 1), (0, "trained", 50, 1), (0, "trained", 50, 1), (1, "failed", None, None)])
    assert ucb(t4).id == 2


def test_select_registry_and_errors():
    t = quick_tree([(None, "trained", 50, 1), (0, "trained", 60, 1)])
    rng = random.Random(0)
    assert set(POLICIES) == {"dfs", "greedy", "ucb"}
    for name in POLICIES:
        assert select(t, name, rng).id in (0, 1)
    assert select(t, "dfs", rng, c=2.0, max_children=3).id == 1  # c belongs to ucb: ignored by dfs
    with pytest.raises(UnknownPolicyError, match="dfs, greedy, ucb"):
        select(t, "beam", rng)
    with pytest.raises(SearchError, match="unknown search option"):
        select(t, "dfs", rng, temperature=1.0)
    with pytest.raises(SearchError):
        select(ModificationTree(), "greedy", rng)
    with pytest.raises(SearchError):
        select(t, "ucb", rng, c=-1)
    with pytest.raises(SearchError):
        select(t, "greedy", rng, max_children=0)


def test_test_accuracy_does_not_change_the_choice_example():
    # a child with a terrible validation accuracy but the best test accuracy is never preferred
    t = quick_tree([(None, "trained", 50, 1), (0, "trained", 60, 1), (0, "trained", 55, 100)])
    for name in POLICIES:
        node = select(t, name, random.Random(0), c=0.0)
        assert node.id == 1, name


# ---------------------------------------------------------------- property tests

STATUSES = ["trained", "trained", "trained", "failed", "invalid", "duplicate", "pending"]


@st.composite
def tree_specs(draw):
    n = draw(st.integers(1, 14))
    spec = [(None, "trained", draw(st.sampled_from([None, 40.0, 50.0])), draw(st.floats(0, 100)))]
    for i in range(1, n):
        parent = draw(st.integers(0, i - 1))
        while spec[parent][1] != "trained" and parent != 0:  # only trained nodes are expanded
            parent = spec[parent][0]
        status = draw(st.sampled_from(STATUSES))
        v = draw(st.sampled_from([30.0, 45.0, 50.0, 55.0, 60.0, 70.0])) if status == "trained" else None
        spec.append((parent, status, v, draw(st.floats(0, 100))))
    return spec


@settings(max_examples=60, deadline=None)
@given(tree_specs(), st.randoms(use_true_random=False), st.integers(1, 4), st.sampled_from([0.0, 0.5, 2.0]))
def test_test_accuracy_never_affects_selection(spec, rnd, max_children, c):
    tests = [s[3] for s in spec]
    rnd.shuffle(tests)
    permuted = [(p, s, v, tests[i]) for i, (p, s, v, _) in enumerate(spec)]
    dropped = [(p, s, v, None) for p, s, v, _ in spec]
    a, b, z = quick_tree(spec), quick_tree(permuted), quick_tree(dropped)
    for name in POLICIES:
        opts = {"max_children": max_children, "c": c}
        chosen = {select(x, name, random.Random(1), **opts).id for x in (a, b, z)}
        assert len(chosen) == 1, (name, chosen)


@settings(max_examples=60, deadline=None)
@given(tree_specs(), st.integers(1, 4))
def test_policies_only_return_trained_nodes_or_root(spec, max_children):
    t = quick_tree(spec)
    for name in POLICIES:
        node = select(t, name, random.Random(0), max_children=max_children)
        assert node.id == 0 or node.status == "trained", (name, node.status)
        assert node.status not in ("failed", "invalid", "duplicate", "pending") or node.id == 0
        # and the policy functions themselves, not only the select() guard
        raw = POLICIES[name](t, random.Random(0), max_children=max_children)
        assert raw.id == 0 or raw.status == "trained"


def test_search_never_reads_test_accuracy():
    import inspect
    assert "test_acc" not in inspect.getsource(search_mod)


# ---------------------------------------------------------------- cost per trial (issue 11)

def test_the_file_text_is_the_plain_json_of_the_nodes_also_after_updates():
    """to_json keeps each node's text once made; what it writes is still json.dumps of the whole."""
    t = fresh()
    p = t.add(0, KERNEL5, status="pending", proposal="5x5 ünïcode")
    t.add(0, NO_SKIP, status="invalid", errors=[Issue(node=7, code=ErrorCode.ARITY, message="m")])

    def plain(tree):
        return json.dumps({"schema": "nader.modification_tree", "version": SCHEMA_VERSION,
                           "nodes": [n.model_dump(mode="json") for n in tree.nodes]},
                          indent=1, ensure_ascii=False, allow_nan=False)

    assert t.to_json() == plain(t)
    t.update(p.id, status="trained", metrics=m(61.0, 60.0))  # a replaced node is written anew
    assert t.to_json() == plain(t) and '"valid_acc": 61.0' in t.to_json()
    assert ModificationTree.from_json(t.to_json()) == t
    assert ModificationTree().to_json() == plain(ModificationTree())


def test_update_keeps_the_duplicate_index_in_id_order():
    t = fresh()
    a = t.add(0, KERNEL5, status="pending")
    b = t.add(0, KERNEL5, metrics=m(55.0))
    assert t.find_duplicate(KERNEL5).id == b.id  # the index is built now
    t.update(a.id, status="trained", metrics=m(60.0))
    assert t.find_duplicate(KERNEL5).id == a.id  # the earlier original, not the last one indexed
    t.update(a.id, status="failed", reason="oom")
    assert t.find_duplicate(KERNEL5).id == b.id
