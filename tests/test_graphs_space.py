"""Search spaces (DESIGN §9, issue 11): the NB201 cell space, the set_cell_edge edit, and the
validate tool's space and duplicate checks."""
from __future__ import annotations

import asyncio
import random
import time

import pytest
from autogen_core import CancellationToken

from graphs.edits import EDIT_KINDS, EditError, SetCellEdge, apply_edits, edits_json_schema
from graphs.errors import ErrorCode
from graphs.hashing import is_isomorphic
from graphs.ir import Block, format_op, parse_block, print_block
from graphs.nb201 import NB201_OPS, Nb201ArchError, all_arch_strings, arch_to_block, live_edges, parse_arch
from graphs.space import (CELL_EDGES, DEFAULT_ROOT_ARCH, SpaceError, block_to_arch, cell_index, describe_arch,
                          describe_space, edge_name, make_space, op_form, parse_edge, set_cell_edge, space_issues)
from relabel import relabel
from tools.graph_tools import Draft, ValidateArgs, validate_tool

ARCHS = all_arch_strings()
# A cell that is its own canonical form (the first of its isomorphism class), so that the tests below
# read back the very string they built from.
CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
ROOT = arch_to_block(CELL)
ROOT_TEXT = print_block(ROOT)


@pytest.fixture(scope="module", autouse=True)
def index():
    t0 = time.perf_counter()
    idx = cell_index()
    block_to_arch(ROOT)
    print(f"\ncell index: first call {time.perf_counter() - t0:.2f} s")
    return idx


def _dead_edges_are_none(arch: str) -> bool:
    ops = parse_arch(arch)
    live = {(j, k) for j, k, _ in live_edges(ops)}
    return all(op == "none" or e in live for e, op in ops.items())


# ------------------------------------------------------------------------------ edges and strings

def test_edges_in_nb201_order():
    assert CELL_EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert [edge_name(e) for e in CELL_EDGES] == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    for text in ("2<-1", " 2 <- 1 ", "1->2", [1, 2], (1, 2)):
        assert parse_edge(text) == (1, 2)


@pytest.mark.parametrize("bad", ["0<-1", "1<-1", "4<-0", "2-1", "", "a<-b", [0, 1, 2], [0, "1"], None, 3])
def test_bad_edge_names_the_valid_ones(bad):
    with pytest.raises(SpaceError) as info:
        parse_edge(bad)
    assert isinstance(info.value, ValueError)
    assert "1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2" in str(info.value)


def test_set_cell_edge_and_describe_arch():
    new = set_cell_edge(CELL, "3<-1", "avg_pool_3x3")
    assert new == "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert parse_arch(new)[(1, 3)] == "avg_pool_3x3"
    assert describe_arch(new).splitlines() == ["1<-0: nor_conv_3x3", "2<-0: none", "2<-1: nor_conv_3x3",
                                               "3<-0: skip_connect", "3<-1: avg_pool_3x3", "3<-2: nor_conv_3x3"]
    with pytest.raises(SpaceError, match="valid ops: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3"):
        set_cell_edge(CELL, "3<-1", "conv_5x5")
    with pytest.raises(SpaceError, match="valid edges"):
        set_cell_edge(CELL, "3<-3", "none")
    with pytest.raises(Nb201ArchError):
        set_cell_edge("|nor_conv_3x3~0|", "1<-0", "none")


# ------------------------------------------------------------------------------ block_to_arch

def test_round_trip_gives_an_isomorphic_canonical_cell():
    for arch in ARCHS[::157] + [CELL]:
        block = arch_to_block(arch)
        canon = block_to_arch(block)
        assert canon is not None, arch
        assert is_isomorphic(arch_to_block(canon), block), (arch, canon)
        assert _dead_edges_are_none(canon), canon
        assert block_to_arch(arch_to_block(canon)) == canon  # canonical is a fixed point


def test_canonical_is_the_first_pruned_member():
    # node 2's output goes nowhere and node 1 feeds the output by skip: the cell is one conv
    dead = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|skip_connect~1|none~2|"
    canon = block_to_arch(arch_to_block(dead))
    assert canon == "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"
    members = cell_index().table.find_class(arch_to_block(dead))
    first = next(a for a in ARCHS if a in set(members) and _dead_edges_are_none(a))
    assert canon == first
    assert block_to_arch(arch_to_block(ARCHS[0])) == ARCHS[0]  # the zero cell: all none
    assert block_to_arch(ROOT) == CELL


def test_renumbered_blocks_and_text_are_found():
    for seed, arch in enumerate(ARCHS[7::997]):
        block = arch_to_block(arch)
        other = parse_block(relabel(block, random.Random(seed)))
        assert block_to_arch(other) == block_to_arch(block)
    assert block_to_arch(ROOT_TEXT) == CELL


def test_out_of_space_blocks_have_no_arch():
    assert block_to_arch(ROOT_TEXT.replace("kernel_size=3,bias=False", "kernel_size=3", 1)) is None
    assert block_to_arch("0:input\n1:output\n2:Sigmoid\n0->2\n2->1\n") is None


def test_look_ups_after_the_first_are_fast():
    block = parse_block(relabel(ROOT, random.Random(1)))
    t0 = time.perf_counter()
    for _ in range(50):
        assert block_to_arch(block) == CELL
    print(f"\nblock_to_arch: {(time.perf_counter() - t0) / 50 * 1e3:.2f} ms per call")


# ------------------------------------------------------------------------------ space issues

def _chain(*ops: str) -> str:
    lines = ["0:input", "1:output"] + [f"{i}:{op}" for i, op in enumerate(ops, 2)]
    ids = [0] + list(range(2, 2 + len(ops))) + [1]
    return "\n".join(lines + [f"{a}->{b}" for a, b in zip(ids, ids[1:])]) + "\n"


CONV3 = "Conv2d(out_channels=C,kernel_size=3,bias=False)"
OUT_OF_SPACE = [
    # (name, block text, node named, fragment of the message)
    ("kernel 5", ROOT_TEXT.replace("3:Conv2d(out_channels=C,kernel_size=3,", "3:Conv2d(out_channels=C,kernel_size=5,"),
     3, "Conv2d with kernel_size=5 is not one of the NB201 edge ops"),
    ("conv with bias", ROOT_TEXT.replace("6:Conv2d(out_channels=C,kernel_size=3,bias=False)", "6:Conv2d(out_channels=C,kernel_size=3)"),
     6, "Conv2d with bias=True"),
    ("Mul", ROOT_TEXT.replace("11:Add", "11:Mul"), 11, "Mul is not one of the NB201 edge ops"),
    ("Sigmoid", _chain("Sigmoid"), 2, "Sigmoid is not one of the NB201 edge ops"),
    ("concat", "0:input\n1:output\n2:ReLU\n3:concat\n4:Conv2d(out_channels=C,kernel_size=1,bias=False)\n5:BN\n"
               "0->2\n0,2->3\n3->4\n4->5\n5->1\n", 3, "concat is not one of"),
    ("max pool", _chain("MaxPool2d(kernel_size=3)"), 2, "MaxPool2d is not one of"),
    ("pool 5", _chain("AvgPool2d(kernel_size=5)"), 2, "AvgPool2d with kernel_size=5"),
    ("conv without ReLU", _chain(CONV3, "BN"), 2, "Conv2d must be preceded by its own ReLU"),
    ("conv without BN", _chain("ReLU", CONV3), 3, "Conv2d must be followed by BN"),
    ("ReLU alone", _chain("ReLU"), 2, "ReLU feeds 1:output"),
    ("four pools in a row", _chain(*["AvgPool2d(kernel_size=3)"] * 4), 5, "4 edges away from the input"),
    ("four sums", "0:input\n1:output\n2:Add\n3:Add\n4:Add\n5:Add\n0,0->2\n2,0->3\n3,0->4\n4,0->5\n5->1\n",
     5, "this block has 4 Add nodes (2, 3, 4, 5)"),
    ("zero inside", "0:input\n1:output\n2:zero\n3:AvgPool2d(kernel_size=3)\n4:Add\n0->2\n0->3\n2,3->4\n4->1\n",
     2, "zero appears in an NB201 cell only as the whole cell"),
]


@pytest.mark.parametrize("name, text, node, fragment", OUT_OF_SPACE, ids=[c[0] for c in OUT_OF_SPACE])
def test_space_issues_name_the_node(name, text, node, fragment):
    from graphs.validate import validate

    assert validate(text) == [], name  # valid blocks: only the space rejects them
    issues = space_issues(text)
    assert issues and all(i.code == ErrorCode.OUT_OF_SPACE for i in issues)
    assert issues[0].node == node, issues
    assert issues[0].message.startswith(f"node {node}: ") and fragment in issues[0].message, issues[0].message


def test_op_list_in_messages_shows_block_forms():
    msg = space_issues(_chain("Sigmoid"))[0].message
    assert "nor_conv_1x1 (ReLU -> Conv2d(out_channels=C,kernel_size=1,bias=False) -> BN)" in msg
    assert all(op in msg for op in NB201_OPS)


def test_structure_that_fits_no_cell_is_one_whole_block_issue():
    # three plain edges from the input into one sum: a cell node has one edge from each earlier node
    text = "0:input\n1:output\n2:Add\n3:Add\n0,0,0->2\n2,2,2->3\n3->1\n"
    issues = space_issues(text)
    assert len(issues) == 1 and issues[0].node is None and issues[0].code == ErrorCode.OUT_OF_SPACE
    assert "not an NB201 cell" in issues[0].message and "2 summing node(s)" in issues[0].message


def test_cells_have_no_space_issues():
    assert space_issues(ROOT) == []
    assert space_issues(parse_block(relabel(ROOT, random.Random(5)))) == []
    # the text of the test in test_training_nb201: NB201's ResNet cell, renumbered by hand
    assert space_issues(arch_to_block(ARCHS[0])) == []


# ------------------------------------------------------------------------------ descriptions

def test_describe_space_is_short_and_complete():
    text = describe_space(DEFAULT_ROOT_ARCH)
    assert len(text.split()) < 250
    for e in CELL_EDGES:
        assert edge_name(e) in text
    for op in NB201_OPS:
        assert f"- {op}: {op_form(op)}" in text
    assert "set_cell_edge" in text and "sum" in text
    assert describe_arch(DEFAULT_ROOT_ARCH) in text
    assert DEFAULT_ROOT_ARCH not in describe_space()


def test_op_forms_come_from_arch_to_block():
    conv = arch_to_block("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|")
    assert op_form("nor_conv_1x1") == " -> ".join(format_op(n) for n in conv.nodes[2:])
    assert op_form("avg_pool_3x3") == "AvgPool2d(kernel_size=3)"
    with pytest.raises(SpaceError, match="valid ops"):
        op_form("sep_conv_3x3")


# ------------------------------------------------------------------------------ Space

def test_make_space():
    open_, cell = make_space("open"), make_space("nb201")
    assert cell.root_arch == DEFAULT_ROOT_ARCH and open_.root_arch is None
    # the ResNet-like cell: 3x3 conv, 3x3 conv, and the input added back
    assert DEFAULT_ROOT_ARCH == "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    assert cell.contains(arch_to_block(DEFAULT_ROOT_ARCH))
    sig = parse_block(_chain("Sigmoid"))
    assert open_.issues(sig) == [] and open_.contains(sig) and open_.describe() == "" and open_.arch_of(ROOT) is None
    assert cell.issues(sig) and not cell.contains(sig) and cell.contains(ROOT)
    assert cell.arch_of(ROOT) == CELL and "set_cell_edge" in cell.describe()
    assert make_space("nb201", ARCHS[5]).root_arch == ARCHS[5]
    with pytest.raises(ValueError, match="valid names: open, nb201"):
        make_space("darts")
    with pytest.raises(Nb201ArchError):
        make_space("nb201", "|conv~0|")
    with pytest.raises(ValueError, match="only for the nb201 space"):
        make_space("open", DEFAULT_ROOT_ARCH)


# ------------------------------------------------------------------------------ the edit

def test_set_cell_edge_edit_keeps_the_name():
    named = arch_to_block(CELL, "MyCell")
    new = apply_edits(named, [{"kind": "set_cell_edge", "edge": "2<-0", "op": "avg_pool_3x3"}])
    assert new.name == "MyCell"
    assert block_to_arch(new) == "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    # edges set in a row, on a renumbered draft, as a model
    draft = parse_block(relabel(named, random.Random(2)))
    two = apply_edits(draft, [SetCellEdge(edge="3<-0", op="none"), {"kind": "set_cell_edge", "edge": "1->3",
                                                                    "op": "skip_connect"}])
    assert block_to_arch(two) == "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"


def test_set_cell_edge_after_generic_edits():
    # set_op turns a 3x3 conv into 1x1 (still a cell); set_cell_edge then reads the new cell
    new = apply_edits(ROOT, [{"kind": "set_op", "id": 3, "op": "Conv2d(out_channels=C,kernel_size=1,bias=False)"},
                             {"kind": "set_cell_edge", "edge": "3<-0", "op": "none"}])
    assert block_to_arch(new) == "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|"


def test_set_cell_edge_on_an_out_of_space_draft_is_a_clear_error():
    with pytest.raises(EditError) as info:
        apply_edits(_chain("Sigmoid"), [{"kind": "set_cell_edge", "edge": "1<-0", "op": "none"}])
    e = info.value
    assert e.index == 0 and e.code == ErrorCode.OUT_OF_SPACE and e.node == 2
    assert "set_cell_edge needs the draft to be an NB201 cell" in e.reason and "Sigmoid" in e.reason
    assert "replace_block" in e.reason
    # atomic: a generic edit that leaves the space, then set_cell_edge: nothing applies
    with pytest.raises(EditError) as info:
        apply_edits(ROOT, [{"kind": "set_op", "id": 2, "op": "GELU"},
                           {"kind": "set_cell_edge", "edge": "1<-0", "op": "none"}])
    assert info.value.index == 1 and "GELU" in info.value.reason


def test_set_cell_edge_bad_edge_or_op():
    with pytest.raises(EditError, match="valid edges") as info:
        apply_edits(ROOT, [{"kind": "set_cell_edge", "edge": "0<-3", "op": "none"}])
    assert info.value.index == 0
    with pytest.raises(EditError, match="'none', 'skip_connect'"):
        apply_edits(ROOT, [{"kind": "set_cell_edge", "edge": "1<-0", "op": "conv_3x3"}])


def test_schema_lists_the_new_kind():
    schema = edits_json_schema()
    sub = schema["$defs"]["SetCellEdge"]
    assert sub["required"] == ["kind", "edge", "op"] and sub["properties"]["op"]["enum"] == list(NB201_OPS)
    assert "set_cell_edge" in EDIT_KINDS


# ------------------------------------------------------------------------------ the validate tool

def _validate(draft: Draft, **kw) -> dict:
    tool = validate_tool(draft, **kw)
    result = asyncio.run(tool.run(ValidateArgs(), CancellationToken()))
    return result.model_dump()


def test_validate_tool_checks_the_space_then_duplicates():
    nb201 = make_space("nb201")
    out = Draft.start(_chain("Sigmoid"))
    r = _validate(out, space=nb201)
    assert not r["valid"] and [e["code"] for e in r["errors"]] == ["out_of_space"] and r["errors"][0]["node"] == 2
    assert out.validations[-1][0].code == ErrorCode.OUT_OF_SPACE
    assert _validate(out)["valid"] and _validate(out, space=make_space("open"))["valid"]  # no space: fine

    seen_blocks: list[Block] = [ROOT]

    def seen(block: Block) -> str | None:
        return "node 7 (trial 5, trained)" if any(is_isomorphic(block, b) for b in seen_blocks) else None

    dup = Draft.start(relabel(ROOT, random.Random(4)))
    r = _validate(dup, space=nb201, seen=seen)
    assert not r["valid"] and [e["code"] for e in r["errors"]] == ["duplicate_candidate"]
    assert "same design as node 7 (trial 5, trained), already tried in this run" in r["errors"][0]["message"]
    fresh = Draft.start(print_block(arch_to_block(ARCHS[-1])))
    assert _validate(fresh, space=nb201, seen=seen)["valid"]
    # validator issues come first: a broken draft is not reported as a duplicate or out of space
    broken = Draft.start("0:input\n1:output\n2:Sigmoid\n0->2\n0->1\n")
    codes = [e["code"] for e in _validate(broken, space=nb201, seen=lambda b: "node 1")["errors"]]
    assert codes == ["unused_node"]


def test_set_cell_edges_in_one_list_can_switch_on_an_unused_node():
    # node 1 of this cell is read by nothing: 1<-0 alone is pruned away, with 3<-1 in the same list it counts
    cell = "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    block = arch_to_block(cell)
    alone = apply_edits(block, [{"kind": "set_cell_edge", "edge": "1<-0", "op": "nor_conv_3x3"}])
    assert block_to_arch(alone) == block_to_arch(block)
    both = apply_edits(block, [{"kind": "set_cell_edge", "edge": "1<-0", "op": "nor_conv_3x3"},
                               {"kind": "set_cell_edge", "edge": "3<-1", "op": "nor_conv_1x1"}])
    want = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    assert block_to_arch(both) == block_to_arch(arch_to_block(want))
    # another kind of edit in between starts again from the block
    between = apply_edits(block, [{"kind": "set_cell_edge", "edge": "1<-0", "op": "nor_conv_3x3"},
                                  {"kind": "set_op", "id": 3, "op": "Conv2d(out_channels=C,kernel_size=1,bias=False)"},
                                  {"kind": "set_cell_edge", "edge": "3<-1", "op": "nor_conv_1x1"}])
    assert block_to_arch(between) != block_to_arch(both)
