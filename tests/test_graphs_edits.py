"""Edit operations (DESIGN §3.4): each kind, atomicity, reconnection, typed errors, JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from graphs.edits import (EDIT_ADAPTER, AddEdge, AddNode, Edit, EditError, EditList, InsertOnEdge, RemoveEdge,
                          RemoveNode, ReplaceBlock, SetOp, apply_edit, apply_edits, edits_json_schema, parse_edits)
from graphs.errors import BlockError, ErrorCode
from graphs.ir import Block, parse_block
from graphs.validate import validate

CORPUS = Path(__file__).parent / "corpus"


def load(name: str) -> Block:
    return parse_block((CORPUS / name).read_text())


@pytest.fixture
def res() -> Block:
    return load("resnet_basic.txt")


@pytest.fixture
def inc() -> Block:
    return load("inception.txt")


def err(block, edits) -> EditError:
    with pytest.raises(EditError) as e:
        apply_edits(block, edits)
    assert isinstance(e.value, BlockError)
    assert e.value.issues and e.value.issues[0].message == str(e.value).split("] ", 1)[1]
    return e.value


# ------------------------------------------------------------------------------ add_node

def test_add_node_next_free_id(res):
    b = apply_edits(res, [AddNode(op="BN", inputs=[8])])
    assert b.node_map[9].op == "BN"
    assert b.inputs[9] == [8]
    assert res.node_map.get(9) is None  # the original is untouched


def test_add_node_explicit_id_and_outputs(res):
    b = apply_edits(res, [RemoveEdge(src=8, dst=1), AddNode(id=20, op="Conv2d(out_channels=C,kernel_size=1)",
                                                            inputs=[8], outputs=[1])])
    assert b.inputs[20] == [8] and b.inputs[1] == [20]
    assert b.node_map[20].param_dict["kernel_size"].text == "1"
    assert validate(b) == []


def test_add_node_inputs_in_order(res):
    b = apply_edits(res, [AddNode(op="concat", inputs=[6, 0, 4])])
    assert b.inputs[9] == [6, 0, 4]


def test_add_node_id_taken(res):
    e = err(res, [AddNode(id=3, op="ReLU", inputs=[2])])
    assert e.index == 0 and e.code == ErrorCode.DUPLICATE_NODE
    assert "3" in e.reason and "BN" in e.reason and "taken" in e.reason


def test_add_node_unknown_input(res):
    e = err(res, [AddNode(op="ReLU", inputs=[42])])
    assert "42" in e.reason and "does not exist" in e.reason and "0:input" in e.reason


def test_add_node_unknown_consumer(res):
    e = err(res, [AddNode(op="ReLU", inputs=[2], outputs=[77])])
    assert "77" in e.reason


def test_add_node_bad_op_text(res):
    e = err(res, [AddNode(op="Conv2d(out_channels=C", inputs=[2])])
    assert e.code == ErrorCode.SYNTAX and "Conv2d" in e.reason
    e = err(res, [AddNode(op="Conv2d(out_channels=C+,kernel_size=3)", inputs=[2])])
    assert "C+" in e.reason
    e = err(res, [AddNode(op="3:BN", inputs=[2])])
    assert "3:BN" in e.reason


def test_add_node_does_not_validate(res):
    # An unknown op or a dangling node is the validator's business, not an edit failure.
    b = apply_edits(res, [AddNode(op="Conv3d(k=1)", inputs=[2])])
    codes = {i.code for i in validate(b)}
    assert ErrorCode.UNKNOWN_OP in codes and ErrorCode.UNUSED_NODE in codes


# ------------------------------------------------------------------------------ remove_node

def test_remove_node_single_input_reconnects(res):
    b = apply_edits(res, [RemoveNode(id=4)])
    assert 4 not in b.node_map
    assert b.inputs[5] == [3]
    assert validate(b) == []


def test_remove_node_keeps_consumer_input_position(res):
    # 6 feeds the Add 7 at position 0 (6,0->7); removing 6 puts 5 at position 0.
    b = apply_edits(res, [RemoveNode(id=6)])
    assert b.inputs[7] == [5, 0]


def test_remove_node_concat_position(inc):
    # inception: 2,3,5->6 (concat). Removing 5 (fed by 4) puts 4 in the third slot.
    assert inc.inputs[6] == [2, 3, 5]
    b = apply_edits(inc, [RemoveNode(id=5)])
    assert b.inputs[6] == [2, 3, 4]
    b = apply_edits(inc, [RemoveNode(id=2)])
    assert b.inputs[6] == [0, 3, 5]
    assert "0,3,5->6" in str(b)


def test_remove_node_several_consumers(inc):
    # 10 (Add) feeds 11 and 13; removing 11 (mean, fed by 10) reconnects 10 to 12.
    b = apply_edits(inc, [RemoveNode(id=11)])
    assert b.inputs[12] == [10]
    # removing 8 (ReLU, fed by 7) reconnects 7 to 9
    b = apply_edits(inc, [RemoveNode(id=8)])
    assert b.inputs[9] == [7]


def test_remove_node_ambiguous(res):
    e = err(res, [RemoveNode(id=7)])
    assert e.index == 0 and e.node == 7
    assert "Add" in e.reason and "[6, 0]" in e.reason and "ambiguous" in e.reason and "[8]" in e.reason


def test_remove_node_multi_input_without_consumers(res):
    b = apply_edits(res, [RemoveEdge(src=7, dst=8), RemoveNode(id=7)])
    assert 7 not in b.node_map
    assert all(7 not in e for e in b.edges)


def test_remove_node_after_reducing_to_one_input(res):
    b = apply_edits(res, [RemoveEdge(src=0, dst=7), RemoveNode(id=7)])
    assert b.inputs[8] == [6]
    assert validate(b) == []


def test_remove_input_or_output_refused(res):
    for nid, role in ((0, "input"), (1, "output")):
        e = err(res, [RemoveNode(id=nid)])
        assert role in e.reason and str(nid) in e.reason


def test_remove_unknown_node(res):
    e = err(res, [RemoveNode(id=99)])
    assert e.code == ErrorCode.UNDEFINED_NODE and "99" in e.reason


# ------------------------------------------------------------------------------ set_op

def test_set_op(res):
    b = apply_edits(res, [SetOp(id=4, op="gelu")])
    assert b.node_map[4].op == "gelu"
    assert "4:GELU" in str(b)
    assert b.inputs == res.inputs
    assert validate(b) == []


def test_set_op_with_params(res):
    b = apply_edits(res, [SetOp(id=2, op="Conv2d(out_channels=C, kernel_size=5, groups=C)")])
    assert "2:Conv2d(out_channels=C,kernel_size=5,groups=C)" in str(b)


def test_set_op_errors(res):
    assert "99" in err(res, [SetOp(id=99, op="BN")]).reason
    assert err(res, [SetOp(id=3, op="BN(")]).code == ErrorCode.SYNTAX
    assert "unknown symbol" in err(res, [SetOp(id=3, op="Conv2d(out_channels=X,kernel_size=3)")]).reason


# ------------------------------------------------------------------------------ add_edge / remove_edge

def test_add_edge_last(res):
    b = apply_edits(res, [AddEdge(src=4, dst=7)])
    assert b.inputs[7] == [6, 0, 4]


def test_add_edge_position(res):
    b = apply_edits(res, [AddEdge(src=4, dst=7, position=0)])
    assert b.inputs[7] == [4, 6, 0]
    b = apply_edits(res, [AddEdge(src=4, dst=7, position=1)])
    assert b.inputs[7] == [6, 4, 0]
    b = apply_edits(res, [AddEdge(src=4, dst=7, position=2)])
    assert b.inputs[7] == [6, 0, 4]


def test_add_edge_bad_position(res):
    e = err(res, [AddEdge(src=4, dst=7, position=5)])
    assert "0..2" in e.reason and "[6, 0]" in e.reason


def test_add_edge_unknown_nodes(res):
    assert "source 50" in err(res, [AddEdge(src=50, dst=7)]).reason
    assert "target 51" in err(res, [AddEdge(src=4, dst=51)]).reason


def test_add_edge_may_make_a_cycle(res):
    b = apply_edits(res, [AddEdge(src=8, dst=2)])
    assert any(i.code == ErrorCode.CYCLE for i in validate(b))


def test_remove_edge(res):
    b = apply_edits(res, [RemoveEdge(src=0, dst=7)])
    assert b.inputs[7] == [6]


def test_remove_edge_one_occurrence():
    b = parse_block("0:input\n1:output\n2:Add\n0,0->2\n2->1\n")
    after = apply_edits(b, [RemoveEdge(src=0, dst=2)])
    assert after.inputs[2] == [0]


def test_remove_edge_absent(res):
    e = err(res, [RemoveEdge(src=2, dst=7)])
    assert "no edge 2->7" in e.reason and "[6, 0]" in e.reason


# ------------------------------------------------------------------------------ insert_on_edge

def test_insert_on_edge(res):
    b = apply_edits(res, [InsertOnEdge(src=8, dst=1, op="BN")])
    assert b.inputs[1] == [9] and b.inputs[9] == [8]
    assert validate(b) == []


def test_insert_on_edge_keeps_position(res):
    b = apply_edits(res, [InsertOnEdge(src=0, dst=7, op="Conv2d(out_channels=C,kernel_size=1)", id=30)])
    assert b.inputs[7] == [6, 30]
    assert b.inputs[30] == [0]
    b = apply_edits(res, [InsertOnEdge(src=6, dst=7, op="ReLU")])
    assert b.inputs[7] == [9, 0]
    assert validate(b) == []


def test_insert_on_concat_edge(inc):
    b = apply_edits(inc, [InsertOnEdge(src=3, dst=6, op="BN")])
    assert b.inputs[6] == [2, 14, 5]


def test_insert_on_edge_errors(res):
    assert "no edge 2->4" in err(res, [InsertOnEdge(src=2, dst=4, op="BN")]).reason
    assert "taken" in err(res, [InsertOnEdge(src=2, dst=3, op="BN", id=4)]).reason
    assert err(res, [InsertOnEdge(src=2, dst=3, op="B N")]).code == ErrorCode.SYNTAX


# ------------------------------------------------------------------------------ replace_block

def test_replace_block(res):
    text = (CORPUS / "bottleneck.txt").read_text()
    b = apply_edits(res, [ReplaceBlock(text=text)])
    assert b == parse_block(text)


def test_replace_block_without_header_keeps_name(res):
    b = apply_edits(res, [ReplaceBlock(text="0:input\n1:output\n2:ReLU\n0->2\n2->1\n")])
    assert b.name == "ResNetBasic"
    assert validate(b) == []


def test_replace_block_then_more_edits(res):
    b = apply_edits(res, [ReplaceBlock(text="0:input\n1:output\n2:ReLU\n0->2\n2->1\n"),
                          InsertOnEdge(src=2, dst=1, op="BN")])
    assert b.inputs[1] == [3]


def test_replace_block_errors(res):
    e = err(res, [ReplaceBlock(text="0:input\n1:output\nnonsense\n")])
    assert "nonsense" in e.reason
    e = err(res, [ReplaceBlock(text=(CORPUS / "bottleneck.txt").read_text() * 2)])
    assert "sections" in e.reason
    e = err(res, [ReplaceBlock(text="0:input\n1:output\n2:Conv2d(out_channels=C+,kernel_size=3)\n0->2\n2->1\n")])
    assert "C+" in e.reason


# ------------------------------------------------------------------------------ atomicity and errors

def test_atomic_failing_third_edit(res):
    before = str(res)
    edits = [InsertOnEdge(src=8, dst=1, op="BN"), SetOp(id=4, op="GELU"), RemoveEdge(src=3, dst=8), AddNode(op="ReLU", inputs=[2])]
    with pytest.raises(EditError) as e:
        apply_edits(res, edits)
    assert e.value.index == 2
    assert e.value.edit == edits[2]
    assert "edits[2]" in str(e.value) and "remove_edge 3->8" in str(e.value)
    assert "no edge 3->8" in str(e.value) and "[7]" in str(e.value)
    assert "no edit of the list was applied" in str(e.value)
    assert str(res) == before and res == parse_block(before)
    assert 9 not in res.node_map


def test_edits_see_earlier_edits(res):
    # The new node 9 from the first edit is usable by the second.
    b = apply_edits(res, [AddNode(op="BN", inputs=[8]), InsertOnEdge(src=8, dst=9, op="ReLU"),
                          RemoveEdge(src=8, dst=1), AddEdge(src=9, dst=1)])
    assert b.inputs[1] == [9] and b.inputs[9] == [10] and b.inputs[10] == [8]
    assert validate(b) == []


def test_error_issue_is_typed(res):
    e = err(res, [RemoveNode(id=99)])
    assert e.issues[0].code == ErrorCode.UNDEFINED_NODE
    assert e.issues[0].node == 99


def test_empty_edit_list_is_identity(res):
    assert apply_edits(res, []) == res
    assert apply_edits(res, "[]") == res


def test_apply_edit_and_text_block(res):
    b = apply_edit((CORPUS / "resnet_basic.txt").read_text(), {"kind": "remove_node", "id": 4})
    assert b == apply_edits(res, [RemoveNode(id=4)])


def test_read_issues_survive_untouched_nodes():
    b = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C+,kernel_size=3)\n3:ReLU\n0->2\n2->3\n3->1\n")
    assert b.read_issues
    kept = apply_edits(b, [SetOp(id=3, op="GELU")])
    assert kept.read_issues == b.read_issues
    fixed = apply_edits(b, [SetOp(id=2, op="Conv2d(out_channels=C,kernel_size=3)")])
    assert fixed.read_issues == () and validate(fixed) == []


# ------------------------------------------------------------------------------ dicts and JSON

EDITS = [
    {"kind": "add_node", "op": "BN", "inputs": [8]},
    {"kind": "remove_edge", "src": 8, "dst": 1},
    {"kind": "add_edge", "src": 9, "dst": 1, "position": 0},
    {"kind": "set_op", "id": 4, "op": "GELU"},
    {"kind": "insert_on_edge", "src": 2, "dst": 3, "op": "Conv2d(out_channels=C,kernel_size=1)", "id": 12},
    {"kind": "remove_node", "id": 12},
    {"kind": "replace_block", "text": "0:input\n1:output\n2:ReLU\n0->2\n2->1\n"},
]


def test_dicts_are_edits():
    models = parse_edits(EDITS)
    assert [type(m) for m in models] == [AddNode, RemoveEdge, AddEdge, SetOp, InsertOnEdge, RemoveNode, ReplaceBlock]
    assert models == [EDIT_ADAPTER.validate_python(d) for d in EDITS]


def test_json_round_trip():
    lst = EditList(edits=EDITS)
    text = lst.model_dump_json()
    again = EditList.model_validate_json(text)
    assert again == lst
    assert json.loads(text)["edits"][0]["kind"] == "add_node"
    adapter = TypeAdapter(list[Edit])
    assert adapter.validate_json(adapter.dump_json(lst.edits)) == lst.edits
    for m in lst.edits:
        assert EDIT_ADAPTER.validate_json(m.model_dump_json()) == m
        assert EDIT_ADAPTER.validate_python(m.model_dump()) == m


def test_apply_from_json_equals_models(res):
    first = EDITS[:6]
    from_models = apply_edits(res, parse_edits(first))
    from_json = apply_edits(res, json.dumps(first))
    from_obj = apply_edits(res, {"edits": first})
    from_list = apply_edits(res, EditList(edits=first))
    assert from_models == from_json == from_obj == from_list
    assert from_models.inputs[1] == [9]


@pytest.mark.parametrize("bad, words", [
    ({"kind": "explode", "id": 2}, ["explode"]),
    ({"id": 2}, ["kind"]),
    ({"kind": "remove_node"}, ["id"]),
    ({"kind": "remove_node", "id": "two"}, ["id"]),
    ({"kind": "set_op", "id": 2, "op": "BN", "colour": "red"}, ["colour"]),
    ({"kind": "add_edge", "src": 1, "dst": 2, "position": -1}, ["position"]),
    (17, ["edit"]),
    (None, ["edit"]),
])
def test_malformed_edit_dicts(res, bad, words):
    e = err(res, [{"kind": "set_op", "id": 4, "op": "GELU"}, bad])
    assert e.index == 1 and e.edit == bad
    for w in words:
        assert w in e.reason


def test_malformed_json(res):
    e = err(res, "[{")
    assert e.index is None and "JSON" in e.reason
    e = err(res, '"not a list"')
    assert "list" in e.reason


def test_json_schema_is_a_discriminated_union():
    schema = edits_json_schema()
    text = json.dumps(schema)
    for kind in ("add_node", "remove_node", "set_op", "add_edge", "remove_edge", "insert_on_edge", "replace_block",
                 "set_cell_edge"):
        assert kind in text
    # EDIT_KINDS (named in error messages) is the union's list of kinds, in its order
    from graphs.edits import EDIT_KINDS
    union = [sub["properties"]["kind"]["const"] for sub in schema["$defs"].values() if "kind" in sub.get("properties", {})]
    assert sorted(union) == sorted(EDIT_KINDS)
    assert "discriminator" in text
    for name, sub in schema["$defs"].items():
        assert sub["required"][0] == "kind", name
        assert sub["additionalProperties"] is False
