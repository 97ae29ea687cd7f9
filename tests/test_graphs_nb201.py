"""The NB201 bridge (DESIGN §3.7, issue 2 item 9)."""
from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from graphs.hashing import canonical_hash, is_isomorphic
from graphs.ir import parse_block, print_block
from graphs.nb201 import (COLUMNS, NB201_OPS, Nb201ArchError, Nb201Table, all_arch_strings, arch_to_block,
                          in_space, parse_arch)
from graphs.validate import validate
from relabel import relabel

TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_cifar.csv"  # ../shared from the repo


def _require_table():
    if not TABLE.exists():
        pytest.fail(f"the NB201 table is missing: expected {TABLE} (tests read ../shared/data; "
                    f"the project ships no copy)", pytrace=False)


needs_table = pytest.mark.usefixtures("table_present")


@pytest.fixture
def table_present():
    _require_table()

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ARCHS = all_arch_strings()


@pytest.fixture(scope="module")
def table() -> Nb201Table:
    t0 = time.perf_counter()
    t = Nb201Table.load(TABLE)
    print(f"\nloaded {len(t)} NB201 rows into {len(t.groups)} hash groups in {time.perf_counter() - t0:.2f} s")
    return t




def test_all_arch_strings():
    assert len(ARCHS) == len(set(ARCHS)) == 5 ** 6
    assert ARCHS[0] == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert EXAMPLE in ARCHS


def test_every_arch_converts_to_a_valid_base_block():
    blocks = {}
    for arch in ARCHS:
        block = arch_to_block(arch)
        blocks.setdefault(id(block), (arch, block))  # strings with equal live parts share one Block
    assert len(blocks) < len(ARCHS)
    bad = [(arch, issues) for arch, block in blocks.values() if (issues := validate(block, "base"))]
    assert not bad, bad[:3]
    assert all(validate(print_block(arch_to_block(a)), "base") == [] for a in ARCHS[::97])  # via text too


def test_conversion_shape():
    text = print_block(arch_to_block(EXAMPLE))
    assert text.count("Conv2d(out_channels=C,kernel_size=3,bias=False)") == 5
    assert text.count("ReLU") == 5 and text.count(":BN") == 5 and text.count(":Add") == 2
    assert parse_block(text) == arch_to_block(EXAMPLE)  # the printed text reads back to the same graph
    pool = print_block(arch_to_block("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|"))
    assert pool.splitlines()[1:] == ["0:input", "1:output", "2:AvgPool2d(kernel_size=3)", "0->2", "2->1"]
    # skip edges only: output = input + input
    double = arch_to_block("|skip_connect~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|skip_connect~2|")
    assert [n.op for n in double.nodes] == ["input", "output", "Add"] and double.edges == ((0, 2), (0, 2), (2, 1))
    identity = arch_to_block("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert [n.op for n in identity.nodes] == ["input", "output"] and identity.edges == ((0, 1),)


def test_dead_parts_are_pruned():
    # node 1 gets nothing, so its conv into node 3 is dead; node 2's output goes nowhere
    dead = arch_to_block("|none~0|+|nor_conv_3x3~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    assert [n.op for n in dead.nodes] == ["input", "output", "AvgPool2d"]
    zero = arch_to_block("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|none~1|none~2|")
    assert [n.op for n in zero.nodes] == ["input", "output", "zero"]
    assert validate(zero, "base") == []


def test_known_equivalent_cells_share_a_hash():
    a = arch_to_block("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|skip_connect~2|")
    b = arch_to_block("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|")
    c = arch_to_block("|none~0|+|nor_conv_1x1~0|none~1|+|nor_conv_3x3~0|none~1|skip_connect~2|")
    assert canonical_hash(a) == canonical_hash(b) == canonical_hash(c)
    assert is_isomorphic(a, b) and is_isomorphic(a, c)
    # one conv used twice is not two convs
    shared = arch_to_block("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|skip_connect~1|skip_connect~2|")
    separate = arch_to_block("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|")
    assert canonical_hash(shared) != canonical_hash(separate) and not is_isomorphic(shared, separate)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=st.sampled_from(ARCHS), seed=st.integers(0, 2**32 - 1))
def test_relabelled_cells_share_hash(arch, seed):
    block = arch_to_block(arch)
    other = parse_block(relabel(block, random.Random(seed)))
    assert canonical_hash(other) == canonical_hash(block)
    assert is_isomorphic(block, other)


@needs_table
def test_hash_groups_are_isomorphism_classes(table):
    t0 = time.perf_counter()
    # all_classes checks every member of every hash group against the group's representative
    # (its first member) and splits off any that is not isomorphic to it.
    classes = table.all_classes()
    assert len(classes) == len(table.groups), "a hash group holds non-isomorphic cells"
    assert sum(map(len, classes)) == len(ARCHS)
    for members in classes[::50]:  # spot check, independent of the table's bookkeeping
        assert all(is_isomorphic(table.block(members[0]), table.block(a)) for a in members)
    nb201_scheme = len({_nb201_unique_str(a) for a in ARCHS})
    zero_class = table.find_class(arch_to_block(ARCHS[0]))
    print(f"\n{len(classes)} equivalence classes of NB201 cells by canonical hash + isomorphism "
          f"(NB201's own to_unique_str scheme gives {nb201_scheme}); {len(zero_class)} cells have a zero output; "
          f"checked in {time.perf_counter() - t0:.1f} s")
    assert nb201_scheme == 6466
    assert len(classes) == 6334


def _nb201_unique_str(arch: str) -> str:
    """NB201's `Structure.to_unique_str(consider_zero=True)`: an expression string that keeps a `#`
    per zero term and unfolds shared nodes. It counts 6,466 unique cells; graph isomorphism after
    pruning counts fewer (zero terms vanish; it does, however, tell a shared conv from two)."""
    ops = parse_arch(arch)
    nodes = {0: "0"}
    for k in (1, 2, 3):
        terms = []
        for j in range(k):
            op = ops[(j, k)]
            if op == "none" or nodes[j] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[j])
            else:
                terms.append(f"({nodes[j]})@{op}")
        nodes[k] = "+".join(sorted(terms))
    return nodes[3]


@needs_table
def test_lookup_example(table):
    result = table.lookup(arch_to_block(EXAMPLE))
    assert result is not None
    assert round(result["cifar100_test"], 2) == 73.51
    assert result["class_size"] == len(result["members"]) >= 1 and EXAMPLE in result["members"]
    assert set(COLUMNS) <= set(result)
    # a renumbered, reordered copy finds the same entry
    other = parse_block(relabel(arch_to_block(EXAMPLE), random.Random(7)))
    assert table.lookup(other)["cifar100_test"] == result["cifar100_test"]


@needs_table
def test_lookup_returns_class_mean(table):
    archs = ["|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|skip_connect~2|",
             "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|"]
    assert table.columns == COLUMNS and table.datasets == ("cifar10", "cifar100")  # the shared CIFAR table
    result = table.lookup(arch_to_block(archs[0]))
    assert set(archs) <= set(result["members"]) and result["class_size"] >= 2
    for i, col in enumerate(COLUMNS):
        mean = sum(table.rows[a][i] for a in result["members"]) / result["class_size"]
        assert result[col] == pytest.approx(mean)
    zero = table.lookup(arch_to_block(ARCHS[0]))
    assert zero["class_size"] > 300 and zero["cifar10_test"] < 20


@needs_table
def test_in_space(table):
    cell = arch_to_block(EXAMPLE)
    resnet = parse_block((Path(__file__).parent / "corpus" / "resnet_basic.txt").read_text())
    assert table.in_space(cell) and not table.in_space(resnet)
    assert table.lookup(resnet) is None
    # a conv with bias is not an NB201 conv
    biased = parse_block(print_block(cell).replace("bias=False", "bias=True"))
    assert not table.in_space(biased)
    assert in_space(cell) and in_space(parse_block(relabel(cell, random.Random(3)))) and not in_space(resnet)
    assert in_space(cell, table)


@pytest.mark.parametrize("arch, fragment", [
    ("", "3 node groups"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "3 node groups"),
    ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_3x3'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 entries"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "source must be a node in 0..0"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "two entries from node 0"),
    ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "not 'op~source'"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must start and end with '|'"),
    (42, "expected a string"),
])
def test_malformed_strings_give_typed_error(arch, fragment):
    with pytest.raises(Nb201ArchError) as info:
        arch_to_block(arch)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert fragment in message
    assert all(op in message for op in NB201_OPS)
