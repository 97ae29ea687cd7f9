"""The offline designer's design heuristic: strategies, choice, fault injection and repair."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from agents.offline.repair import repair
from agents.offline.strategies import (FAULT_KINDS, STRATEGIES, NotApplicable, Plan, applicable, choose,
                                       inject_fault)
from graphs.cost import fit_width
from graphs.edits import apply_edits
from graphs.hashing import canonical_hash
from graphs.ir import parse_block
from graphs.nb201 import arch_to_block
from graphs.validate import validate
from tools.memory.records import DESIGN_TAGS

RESNET_CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
MIXED_CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def blocks(corpus):
    out = {name: parse_block(text) for name, kind, text in corpus if kind == "base"}
    out["nb201_resnet"] = arch_to_block(RESNET_CELL)
    return out


@pytest.fixture(scope="module")
def results(blocks):
    """(strategy, block) -> (plan, child block, validator issues) for every applicable pair."""
    out = {}
    for s in STRATEGIES:
        for name, block in blocks.items():
            plan = s.try_propose(block, random.Random(0))
            if plan is None:
                continue
            child = apply_edits(block, plan.edits)
            out[(s.name, name)] = (plan, child, validate(child, "base"))
    return out


def test_registry_and_tags():
    assert len(STRATEGIES) >= 14
    assert len({s.name for s in STRATEGIES}) == len(STRATEGIES)
    for s in STRATEGIES:
        assert s.tags and set(s.tags) <= DESIGN_TAGS, s.name
        assert s.describe
    covered = {t for s in STRATEGIES for t in s.tags}
    for tag in ("channel-attention", "spatial-attention", "residual", "dense", "bottleneck", "inverted-residual",
                "depthwise-separable", "dilated", "multi-branch", "kernel-size", "activation", "normalization",
                "grouped-conv", "pooling-branch", "stochastic-depth", "width"):
        assert tag in covered, tag


def test_corpus_blocks_are_valid_inputs(blocks):
    assert len(blocks) >= 8
    for name, b in blocks.items():
        assert validate(b, "base") == [], name


def test_every_strategy_applies_to_two_blocks(results, blocks):
    per = Counter(s for s, _ in results)
    for s in STRATEGIES:
        assert per[s.name] >= 2, (s.name, per[s.name])
    # and the NB201 ResNet cell (convs with bias=False) is served by most strategies
    assert sum(1 for s, b in results if b == "nb201_resnet") >= 14


def test_results_are_valid_new_and_fit(results, blocks):
    valid = [k for k, (_, _, issues) in results.items() if not issues]
    rate = len(valid) / len(results)
    assert rate >= 0.9, [(k, [str(i) for i in r[2][:2]]) for k, r in results.items() if r[2]]
    fitted = 0
    for (s, b), (plan, child, issues) in results.items():
        assert canonical_hash(child) != canonical_hash(blocks[b]), (s, b)
        if not issues:
            fit_width(child, "cifar10")  # raises BudgetError if it cannot fit
            fitted += 1
    assert fitted / len(results) >= 0.9


def test_plans_are_well_formed(results, blocks):
    for (s, b), (plan, child, _) in results.items():
        assert isinstance(plan, Plan) and plan.strategy == s
        assert plan.edits and 20 <= len(plan.summary) <= 400 and "node" in plan.summary, (s, plan.summary)
        # new node ids never clash: existing nodes keep their id, new ones are above the old maximum
        old = blocks[b].node_map
        top = max(old)
        for n in child.nodes:
            assert n.id in old or n.id > top
        # symbols, not literal channel counts
        for e in plan.edits:
            op = getattr(e, "op", "")
            for lit in ("out_channels=16", "out_channels=32", "out_channels=64", "out_channels=128"):
                assert lit not in op, (s, op)


def test_bias_convention_on_nb201(results):
    from graphs.ir import format_op

    for (s, b), (plan, child, _) in results.items():
        if b != "nb201_resnet":
            continue
        for n in child.nodes:
            if n.op == "Conv2d":
                assert "bias=False" in format_op(n), (s, format_op(n))


def test_determinism(blocks):
    for s in STRATEGIES:
        for name, block in blocks.items():
            a = s.try_propose(block, random.Random(7))
            b = s.try_propose(block, random.Random(7))
            assert (a is None) == (b is None)
            if a is not None:
                assert a.model_dump() == b.model_dump()
    b = blocks["resnet_basic"]
    p1 = choose(b, random.Random(3), ["dense"], set())
    p2 = choose(b, random.Random(3), ["dense"], set())
    assert p1.model_dump() == p2.model_dump()


def test_not_applicable_is_typed():
    stem = parse_block("##S##\n0:input\n1:output\n2:ReLU\n0->2\n2->1\n")
    bottleneck = next(s for s in STRATEGIES if s.name == "bottleneck")
    with pytest.raises(NotApplicable):
        bottleneck.propose(stem, random.Random(0))
    assert bottleneck.try_propose(stem, random.Random(0)) is None
    assert bottleneck not in applicable(stem)


def test_choose_respects_tags_and_avoid(blocks):
    b = blocks["resnet_basic"]
    names = {s.name for s in applicable(b)}
    for seed in range(5):
        assert "channel-attention" in choose(b, random.Random(seed), ["channel-attention"], set()).tags
        # a hint nothing matches falls through to the next hint
        assert "dilated" in choose(b, random.Random(seed), ["self-attention-xyz", "dilated"], set()).tags
        p = choose(b, random.Random(seed), ["channel-attention"], {"se_attention"})
        assert p.strategy != "se_attention"
        avoid = names - {"widen"}
        assert choose(b, random.Random(seed), None, avoid).strategy == "widen"
    # everything tried: still proposes something rather than failing
    assert choose(b, random.Random(0), None, names).strategy in names
    seen = {choose(b, random.Random(seed)).strategy for seed in range(40)}
    assert len(seen) >= 8


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_repair_fixes_injected_faults(kind, blocks):
    tried = fixed = 0
    for s in STRATEGIES:
        for name, block in blocks.items():
            plan = s.try_propose(block, random.Random(0))
            if plan is None:
                continue
            for with_block in (True, False):
                bad = inject_fault(plan, random.Random(1), kind=kind, block=block if with_block else None)
                if bad.fault is None:
                    continue
                assert bad.fault == kind and bad.strategy == plan.strategy
                child = apply_edits(block, bad.edits)
                issues = validate(child, "base")
                if not issues:
                    continue  # e.g. a literal width on an inner conv that nothing checks
                tried += 1
                out = repair(child, issues, random.Random(0))
                assert out is not None, (s.name, name, [str(i) for i in issues])
                edits, why = out
                assert why and "\n" not in why
                if validate(apply_edits(child, edits), "base") == []:
                    fixed += 1
    assert tried >= 20
    assert fixed == tried


def test_inject_fault_default_kind_and_unchanged_when_impossible(blocks):
    b = blocks["resnet_basic"]
    plan = choose(b, random.Random(0), ["channel-attention"])
    kinds = {inject_fault(plan, random.Random(seed), block=b).fault for seed in range(20)}
    assert kinds == set(FAULT_KINDS)
    swap = next(s for s in STRATEGIES if s.name == "activation_swap").propose(b, random.Random(0))
    if not any("Conv2d" in getattr(e, "op", "") for e in swap.edits):
        assert inject_fault(swap, random.Random(0), kind="literal_channels").fault is None


RESNET = parse_block(
    "##R##\n0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3)\n3:BN\n4:ReLU\n"
    "5:Conv2d(out_channels=C,kernel_size=3)\n6:BN\n7:Add\n8:ReLU\n0->2\n2->3\n3->4\n4->5\n5->6\n6,0->7\n7->8\n8->1\n")


def _fix(text_or_block, expect_code):
    block = parse_block(text_or_block) if isinstance(text_or_block, str) else text_or_block
    issues = validate(block, "base")
    assert issues and any(i.code.value == expect_code for i in issues), [str(i) for i in issues]
    out = repair(block, issues, random.Random(0))
    assert out is not None
    edits, why = out
    fixed = apply_edits(block, edits)
    assert validate(fixed, "base") == [], (why, [str(i) for i in validate(fixed, "base")])
    return fixed, why


def test_repair_add_with_one_input():
    b = apply_edits(RESNET, [{"kind": "remove_edge", "src": 0, "dst": 7}])
    fixed, why = _fix(b, "arity")
    assert fixed.inputs[7] == [6, 0]
    assert why.startswith("Node 7's Add has a single input") and "node 0" in why


def test_repair_unused_node():
    b = apply_edits(RESNET, [{"kind": "add_node", "op": "AvgPool2d(kernel_size=3)", "inputs": [0], "id": 9}])
    fixed, why = _fix(b, "unused_node")
    assert "Node 9" in why


def test_repair_channel_mismatch_into_add():
    b = apply_edits(RESNET, [{"kind": "set_op", "id": 5, "op": "Conv2d(out_channels=C/2,kernel_size=3)"}])
    fixed, why = _fix(b, "shape_mismatch")
    assert "out_channels=C" in str(fixed) and "C/2" not in str(fixed)
    assert "Node 5" in why


def test_repair_groups_unknown_param_and_padding():
    fixed, why = _fix(apply_edits(RESNET, [{"kind": "set_op", "id": 5,
                                            "op": "Conv2d(out_channels=C,kernel_size=3,groups=5)"}]),
                      "groups_not_divisible")
    assert "groups=1" in why
    fixed, why = _fix(apply_edits(RESNET, [{"kind": "set_op", "id": 2,
                                            "op": "Conv2d(out_channels=C,kernel_size=3,padding=1)"}]), "unknown_param")
    assert "padding" in why and "padding" not in str(fixed)
    fixed, why = _fix(apply_edits(RESNET, [{"kind": "set_op", "id": 2,
                                            "op": "Conv2d(out_channels=C,kernel_size=3,group=C)"}]), "unknown_param")
    assert "groups" in why
    _fix(apply_edits(RESNET, [{"kind": "set_op", "id": 2, "op": "Conv2d(out_channels=C,kernel_size=4)"}]),
         "same_padding")
    _fix(apply_edits(RESNET, [{"kind": "set_op", "id": 2, "op": "Conv2d(kernel_size=3)"}]), "missing_param")


def test_repair_output_contract():
    b = apply_edits(RESNET, [{"kind": "add_node", "op": "Conv2d(out_channels=2*C,kernel_size=1)", "inputs": [8],
                              "id": 9}, {"kind": "remove_edge", "src": 8, "dst": 1},
                             {"kind": "add_edge", "src": 9, "dst": 1}])
    fixed, why = _fix(b, "output_contract")
    assert "2*C" not in str(fixed) or "output" in why.lower()


def test_repair_cycle_undefined_and_unknown_op():
    _fix(apply_edits(RESNET, [{"kind": "add_edge", "src": 6, "dst": 2}]), "cycle")
    text = str(RESNET).replace("8->1", "8->1\n9->7")
    _fix(text, "undefined_node")
    _fix(apply_edits(RESNET, [{"kind": "set_op", "id": 3, "op": "BatchNorm2d"}]), "unknown_op")


def test_repair_returns_none_on_valid_block():
    assert repair(RESNET, [], random.Random(0)) is None
