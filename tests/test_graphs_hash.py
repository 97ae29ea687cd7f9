"""Canonical hash and isomorphism (DESIGN §3.5, issue 2 item 5)."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from graphs.hashing import canonical_hash, is_isomorphic, node_label, same_block
from graphs.ir import Block, parse_block
from relabel import relabel

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.txt"))
ROOT = Path(__file__).resolve().parents[1]


def corpus_block(name: str) -> Block:
    return parse_block((Path(__file__).parent / "corpus" / f"{name}.txt").read_text())




# ---------------------------------------------------------------- labels


def test_label_normalises_defaults_expressions_and_pairs():
    a = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3)\n0->2\n2->1\n").node_map[2]
    b = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C*1,kernel_size=3,stride=1,dilation=1)\n0->2\n2->1\n").node_map[2]
    c = parse_block("0:input\n1:output\n2:conv2d(C, (3,3), 1, (1,1), 1, True)\n0->2\n2->1\n").node_map[2]
    d = parse_block("0:input\n1:output\n2:Conv2d(out_channels=2*C-C,kernel_size=(3,3),bias=1)\n0->2\n2->1\n").node_map[2]
    assert node_label(a) == node_label(b) == node_label(c) == node_label(d)
    e = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3,bias=False)\n0->2\n2->1\n").node_map[2]
    assert node_label(e) != node_label(a)


def test_label_expressions_by_value():
    def lab(expr: str) -> str:
        return node_label(parse_block(f"0:input\n1:output\n2:Linear(out_features={expr})\n0->2\n2->1\n").node_map[2])

    assert lab("2*C") == lab("C+C") == lab("(C*4)/2")
    assert lab("C/4") != lab("C/8*2")  # floor division: different functions
    assert lab("C") != lab("dim")  # the hash does not know the kind
    assert lab("C") != lab("37")  # no literal passes for a symbol


def test_unknown_ops_and_params_use_raw_text():
    a = parse_block("0:input\n1:output\n2:Frobnicate(k=C*1)\n0->2\n2->1\n").node_map[2]
    assert node_label(a).startswith("Frobnicate(")
    b = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3,group=C)\n0->2\n2->1\n").node_map[2]
    assert "group=C" in node_label(b)


# ---------------------------------------------------------------- hash invariances


def test_conv_c_times_one_hashes_equal():
    a = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3)\n3:BN\n0->2\n2->3\n3->1\n")
    b = parse_block("0:input\n1:output\n7:Conv2d(out_channels=C*1,kernel_size=3,stride=1,dilation=1)\n3:BN\n"
                    "3->1\n7->3\n0->7\n")
    assert canonical_hash(a) == canonical_hash(b)
    assert is_isomorphic(a, b) and same_block(a, b)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_renumbering_and_line_order_keep_hash(path):
    block = parse_block(path.read_text())
    h = canonical_hash(block)
    rng = random.Random(path.stem)
    for _ in range(5):
        other = parse_block(relabel(block, rng))
        assert canonical_hash(other) == h
        assert is_isomorphic(block, other)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(CORPUS), seed=st.integers(0, 2**32 - 1))
def test_random_relabelling_property(path, seed):
    block = parse_block(path.read_text())
    other = parse_block(relabel(block, random.Random(seed)))
    assert canonical_hash(other) == canonical_hash(block)
    assert same_block(block, other)


def test_distinct_corpus_blocks_hash_distinct():
    hashes = {canonical_hash(parse_block(p.read_text())) for p in CORPUS}
    assert len(hashes) == len(CORPUS)


def _swap_inputs(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_concat_swap_changes_hash():
    text = ("0:input\n1:output\n2:Conv2d(out_channels=C/2,kernel_size=1)\n3:Conv2d(out_channels=C/2,kernel_size=3)\n"
            "4:concat(dim=1)\n0->2\n0->3\n2,3->4\n4->1\n")
    a, b = parse_block(text), parse_block(_swap_inputs(text, "2,3->4", "3,2->4"))
    assert canonical_hash(a) != canonical_hash(b)
    assert not is_isomorphic(a, b) and not same_block(a, b)
    inception = (Path(__file__).parent / "corpus" / "inception.txt").read_text()
    swapped = _swap_inputs(inception, "2,3,5->6", "3,2,5->6")
    assert canonical_hash(parse_block(inception)) != canonical_hash(parse_block(swapped))


def test_multiply_swap_changes_hash():
    text = (Path(__file__).parent / "corpus" / "attention.txt").read_text()
    a, b = parse_block(text), parse_block(_swap_inputs(text, "8,6->9", "6,8->9"))
    assert canonical_hash(a) != canonical_hash(b)
    assert not is_isomorphic(a, b)


def test_add_swap_keeps_hash():
    text = (Path(__file__).parent / "corpus" / "resnet_basic.txt").read_text()
    a, b = parse_block(text), parse_block(_swap_inputs(text, "6,0->7", "0,6->7"))
    assert canonical_hash(a) == canonical_hash(b)
    assert same_block(a, b)


def test_multi_edges():
    double = parse_block("0:input\n1:output\n2:ReLU\n5:Add\n0->2\n2,2->5\n5->1\n")
    single = parse_block("0:input\n1:output\n2:ReLU\n5:Add\n0->2\n2,0->5\n5->1\n")
    assert len(double.edges) == 4
    assert canonical_hash(double) != canonical_hash(single)
    assert not is_isomorphic(double, single)
    renamed = parse_block("9:Add\n3:ReLU\n0:input\n1:output\n3->9\n0->3\n3->9\n9->1\n")
    assert canonical_hash(double) == canonical_hash(renamed) and same_block(double, renamed)
    cat_a = parse_block("0:input\n1:output\n2:ReLU\n3:concat\n0->2\n2,0,2->3\n3->1\n")
    cat_b = parse_block("0:input\n1:output\n2:ReLU\n3:concat\n0->2\n2,2,0->3\n3->1\n")
    assert canonical_hash(cat_a) != canonical_hash(cat_b) and not is_isomorphic(cat_a, cat_b)


def test_block_name_and_ids_do_not_matter_but_params_do():
    a = corpus_block("resnet_basic")
    text = (Path(__file__).parent / "corpus" / "resnet_basic.txt").read_text()
    b = parse_block(text.replace("##ResNetBasic##", "##Other##"))
    c = parse_block(text.replace("5:Conv2d(out_channels=C,kernel_size=3)", "5:Conv2d(out_channels=C,kernel_size=5)"))
    assert canonical_hash(a) == canonical_hash(b)
    assert canonical_hash(a) != canonical_hash(c) and not is_isomorphic(a, c)


# ---------------------------------------------------------------- isomorphism


def _layered(pairs) -> Block:
    """input -> 4 ReLUs -> 4 Adds over the given ReLU pairs -> one Add -> output."""
    lines = ["0:input", "1:output"] + [f"{i}:ReLU" for i in range(2, 6)] + [f"{i}:Add" for i in range(6, 11)]
    edges = [f"0->{i}" for i in range(2, 6)]
    edges += [f"{a + 2},{b + 2}->{6 + k}" for k, (a, b) in enumerate(pairs)]
    edges += ["6,7,8,9->10", "10->1"]
    return parse_block("\n".join(lines + edges))


def test_hash_collision_is_caught_by_isomorphism():
    # An 8-cycle and two 4-cycles between the ReLU and Add layers: WL colours agree, graphs differ.
    cycle8 = _layered([(0, 1), (1, 2), (2, 3), (3, 0)])
    cycles4 = _layered([(0, 1), (0, 1), (2, 3), (2, 3)])
    assert canonical_hash(cycle8) == canonical_hash(cycles4)
    assert not is_isomorphic(cycle8, cycles4)
    assert not same_block(cycle8, cycles4)


def test_is_isomorphic_cases():
    a = corpus_block("se_block")
    assert is_isomorphic(a, a)
    b = parse_block(relabel(a, random.Random(1)))
    assert is_isomorphic(a, b) and is_isomorphic(b, a)
    assert not is_isomorphic(a, corpus_block("resnet_basic"))
    assert not is_isomorphic(corpus_block("bottleneck"), corpus_block("resnet_basic"))
    # same nodes, one edge moved
    text = "0:input\n1:output\n2:ReLU\n3:BN\n4:Add\n0->2\n2->3\n{}->4\n3->4\n4->1\n"
    assert not is_isomorphic(parse_block(text.format(0)), parse_block(text.format(2)))


def test_undefined_edge_ends_do_not_crash():
    block = parse_block("0:input\n1:output\n2:ReLU\n0->2\n2->1\n7->2\n")
    assert isinstance(canonical_hash(block), str)
    assert is_isomorphic(block, block)


def test_hash_is_stable_across_processes():
    block = corpus_block("inception")
    here = canonical_hash(block)
    code = ("from pathlib import Path; from graphs.ir import parse_block; from graphs.hashing import canonical_hash; "
            "print(canonical_hash(parse_block(Path('tests/corpus/inception.txt').read_text())))")
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == here
