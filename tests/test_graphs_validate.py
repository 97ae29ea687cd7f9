"""The validator (DESIGN §3.3, issue 2 item 3): one test per problem it must catch. Each checks the
error code, the node it is attached to, and that the message names the op (and shapes)."""
from __future__ import annotations

from pathlib import Path

import pytest

from graphs.errors import BlockError, ErrorCode as E, Issue
from graphs.ir import parse_block
from graphs.validate import check, validate

CORPUS = Path(__file__).parent / "corpus"
KIND = {"stem_conv": "stem", "resnet_reduction": "downsample"}
IO = "##T##\n0:input\n1:output\n"


def one(text: str, code: E, node: int | None, kind: str = "base", *, only: bool = True) -> Issue:
    """The issue of `code` at `node`; with `only`, it is the single issue found."""
    issues = validate(text, kind)
    assert all(isinstance(i, Issue) for i in issues)
    hits = [i for i in issues if i.code == code and i.node == node]
    assert hits, f"expected {code.value} at node {node}, got {[(i.code.value, i.node, i.message) for i in issues]}"
    if only:
        assert len(issues) == 1, [(i.code.value, i.node, i.message) for i in issues]
    if node is not None:
        assert hits[0].message.startswith(f"node {node}:"), hits[0].message
    return hits[0]


# ------------------------------------------------------------------------------ corpus

@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.txt")), ids=lambda p: p.stem)
def test_corpus_blocks_validate(path):
    kind = KIND.get(path.stem, "base")
    assert validate(path.read_text(), kind) == []
    assert validate(parse_block(path.read_text()), kind) == []
    assert check(path.read_text(), kind) == parse_block(path.read_text())


def test_corpus_blocks_fail_as_other_kinds():
    stem = (CORPUS / "stem_conv.txt").read_text()
    assert any(i.code == E.OUTPUT_CONTRACT for i in validate(stem, "downsample"))
    red = (CORPUS / "resnet_reduction.txt").read_text()
    assert any(i.code == E.OUTPUT_CONTRACT for i in validate(red, "base"))
    base = (CORPUS / "resnet_basic.txt").read_text()
    assert any(i.code == E.OUTPUT_CONTRACT for i in validate(base, "downsample"))
    assert any(i.code == E.OUTPUT_CONTRACT for i in validate(base, "stem"))


def test_check_raises_block_error_with_issues():
    with pytest.raises(BlockError) as e:
        check(IO + "2:Conv3d\n0->2\n2->1\n")
    assert e.value.issues[0].code == E.UNKNOWN_OP


def test_unknown_kind():
    issues = validate((CORPUS / "resnet_basic.txt").read_text(), "head")
    assert issues and issues[0].code == E.SECTIONS and "base" in issues[0].message


# ------------------------------------------------------------------------------ structure

def test_unused_node():
    i = one(IO + "2:ReLU\n3:GELU\n0->2\n0->3\n2->1\n", E.UNUSED_NODE, 3)
    assert "GELU" in i.message


def test_edge_to_undefined_node():
    i = one(IO + "2:ReLU\n0->2\n2->1\n2->7\n", E.UNDEFINED_NODE, 7)
    assert "2->7" in i.message


def test_edge_from_undefined_node():
    i = one(IO + "2:ReLU\n3:Add\n0->2\n2,5->3\n3->1\n", E.UNDEFINED_NODE, 5)
    assert "5->3" in i.message


def test_cycle():
    issues = validate(IO + "2:ReLU\n3:Add\n0->3\n2->3\n3->2\n3->1\n")
    cyc = [i for i in issues if i.code == E.CYCLE]
    assert {i.node for i in cyc} == {2, 3}
    assert all(i.code == E.CYCLE for i in issues)
    assert "ReLU" in next(i.message for i in cyc if i.node == 2)
    assert "Add" in next(i.message for i in cyc if i.node == 3)


def test_self_loop_is_a_cycle():
    issues = validate(IO + "2:Add\n0->2\n2->2\n2->1\n")
    assert [(i.code, i.node) for i in issues] == [(E.CYCLE, 2)]


def test_missing_input_node():
    issues = validate("1:output\n2:ReLU\n2->1\n")
    assert any(i.code == E.MISSING_INPUT_NODE and i.node is None and "input" in i.message for i in issues)


def test_missing_output_node():
    issues = validate("0:input\n2:ReLU\n0->2\n")
    assert any(i.code == E.MISSING_OUTPUT_NODE and i.node is None and "output" in i.message for i in issues)


def test_extra_input_node():
    i = one(IO + "2:input\n3:Add\n0,2->3\n3->1\n", E.EXTRA_INPUT_NODE, 2)
    assert "input" in i.message and "node 0" in i.message


def test_extra_output_node():
    i = one(IO + "2:output\n3:ReLU\n0->3\n3->1\n3->2\n", E.EXTRA_OUTPUT_NODE, 2)
    assert "output" in i.message and "node 1" in i.message


def test_misnamed_input_node():
    issues = validate("0:inputs\n1:output\n2:ReLU\n0->2\n2->1\n")
    codes = {(i.code, i.node) for i in issues}
    assert (E.UNKNOWN_OP, 0) in codes and (E.MISSING_INPUT_NODE, None) in codes
    assert "'inputs'" in next(i.message for i in issues if i.code == E.UNKNOWN_OP)


def test_misnamed_output_node():
    issues = validate("0:input\n1:out\n2:ReLU\n0->2\n2->1\n")
    codes = {(i.code, i.node) for i in issues}
    assert (E.UNKNOWN_OP, 1) in codes and (E.MISSING_OUTPUT_NODE, None) in codes


# ------------------------------------------------------------------------------ ops and parameters

def test_unknown_op():
    i = one(IO + "2:Conv3d(out_channels=C,kernel_size=3)\n0->2\n2->1\n", E.UNKNOWN_OP, 2)
    assert "'Conv3d'" in i.message and "Conv2d" in i.message  # says what is valid


def test_unknown_parameter_group_is_an_error():
    i = one(IO + "2:Conv2d(out_channels=C,kernel_size=3,group=C)\n0->2\n2->1\n", E.UNKNOWN_PARAM, 2)
    assert "Conv2d" in i.message and "'group'" in i.message and "groups" in i.message


def test_unknown_parameter_on_parameterless_op():
    i = one(IO + "2:ReLU(inplace=True)\n0->2\n2->1\n", E.UNKNOWN_PARAM, 2)
    assert "ReLU" in i.message and "inplace" in i.message


def test_missing_parameter():
    i = one(IO + "2:Conv2d(out_channels=C)\n0->2\n2->1\n", E.MISSING_PARAM, 2)
    assert "Conv2d" in i.message and "kernel_size" in i.message


def test_missing_parameter_linear():
    i = one(IO + "2:permute(0,2,3,1)\n3:Linear\n4:permute(0,3,1,2)\n0->2\n2->3\n3->4\n4->1\n", E.MISSING_PARAM, 3)
    assert "Linear" in i.message and "out_features" in i.message


def test_groups_not_divisible_literal():
    i = one(IO + "2:Conv2d(out_channels=C,kernel_size=3,groups=7)\n0->2\n2->1\n", E.GROUPS, 2)
    assert "Conv2d" in i.message and "groups=7" in i.message


def test_groups_not_divisible_symbolic():
    i = one(IO + "2:Conv2d(out_channels=C/2,kernel_size=3,groups=C)\n3:Conv2d(out_channels=C,kernel_size=1)\n"
            "0->2\n2->3\n3->1\n", E.GROUPS, 2)
    assert "Conv2d" in i.message and "C/2" in i.message


def test_same_padding_impossible():
    i = one(IO + "2:Conv2d(out_channels=C,kernel_size=2)\n0->2\n2->1\n", E.SAME_PADDING, 2)
    assert "Conv2d" in i.message and "(B,C,H,W)" in i.message


# ------------------------------------------------------------------------------ shapes

def test_add_shape_mismatch():
    i = one(IO + "2:Conv2d(out_channels=2*C,kernel_size=1)\n3:Add\n0->2\n0,2->3\n3->1\n", E.SHAPE_MISMATCH, 3)
    assert "Add" in i.message and "(B,C,H,W)" in i.message and "(B,2*C,H,W)" in i.message


def test_mul_shape_mismatch():
    i = one(IO + "2:Conv2d(out_channels=C,kernel_size=3,stride=2)\n3:Mul\n0->2\n0,2->3\n3->1\n", E.SHAPE_MISMATCH, 3)
    assert "Mul" in i.message and "(B,C,H,W)" in i.message and "(B,C,H/2,W/2)" in i.message


def test_mul_broadcast_is_fine():
    assert validate(IO + "2:AdaptiveAvgPool2d(output_size=1)\n3:Sigmoid\n4:Mul\n0->2\n2->3\n0,3->4\n4->1\n") == []


def test_concat_shape_mismatch():
    i = one(IO + "2:Conv2d(out_channels=C,kernel_size=3,stride=2)\n3:concat(dim=1)\n4:Conv2d(out_channels=C,kernel_size=1)\n"
            "0->2\n0,2->3\n3->4\n4->1\n", E.SHAPE_MISMATCH, 3)
    assert "concat" in i.message and "(B,C,H,W)" in i.message and "(B,C,H/2,W/2)" in i.message


def test_concat_channels_add_up():
    ok = IO + "2:Conv2d(out_channels=C/2,kernel_size=1)\n3:Conv2d(out_channels=C/2,kernel_size=3)\n4:concat\n0->2\n0->3\n2,3->4\n4->1\n"
    assert validate(ok) == []
    bad = ok.replace("3:Conv2d(out_channels=C/2", "3:Conv2d(out_channels=C")
    i = one(bad, E.OUTPUT_CONTRACT, 1)
    assert "(B,3*C/2,H,W)" in i.message or "(B," in i.message


def test_single_input_op_with_several_inputs():
    i = one(IO + "2:ReLU\n3:BN\n0->2\n0,2->3\n3->1\n", E.ARITY, 3)
    assert "BN" in i.message and "got 2" in i.message


def test_multi_input_op_with_one_input():
    i = one(IO + "2:Add\n0->2\n2->1\n", E.ARITY, 2)
    assert "Add" in i.message and "got 1" in i.message


def test_concat_with_one_input():
    i = one(IO + "2:concat(dim=1)\n0->2\n2->1\n", E.ARITY, 2)
    assert "concat" in i.message


def test_multiply_with_three_inputs():
    i = one(IO + "2:multiply\n0,0,0->2\n2->1\n", E.ARITY, 2)
    assert "multiply" in i.message and "two" in i.message


def test_output_with_two_inputs():
    i = one(IO + "2:ReLU\n0->2\n2,0->1\n", E.ARITY, 1)
    assert "output" in i.message


def test_linear_last_dim_not_channels():
    i = one(IO + "2:Linear(out_features=C)\n0->2\n2->1\n", E.CHANNEL_AXIS, 2)
    assert "Linear" in i.message and "(B,C,H,W)" in i.message


def test_ln_last_dim_not_channels():
    i = one(IO + "2:LN\n0->2\n2->1\n", E.CHANNEL_AXIS, 2)
    assert "LN" in i.message and "(B,C,H,W)" in i.message


def test_linear_after_wrong_permute():
    i = one(IO + "2:permute(0,2,1,3)\n3:Linear(out_features=C)\n4:permute(0,2,1,3)\n0->2\n2->3\n3->4\n4->1\n",
            E.CHANNEL_AXIS, 3)
    assert "Linear" in i.message and "(B,H,C,W)" in i.message


def test_bn_on_channels_last():
    i = one(IO + "2:permute(0,2,3,1)\n3:BN\n4:permute(0,3,1,2)\n0->2\n2->3\n3->4\n4->1\n", E.CHANNEL_AXIS, 3)
    assert "BN" in i.message and "(B,H,W,C)" in i.message


def test_reshape_element_count_mismatch():
    i = one(IO + "2:reshape(B,C,H*W*2)\n3:reshape(B,C,H,W)\n0->2\n2->3\n3->1\n", E.RESHAPE, 2)
    assert "reshape" in i.message and "(B,C,H,W)" in i.message and "elements" in i.message


def test_reshape_cannot_infer():
    i = one(IO + "2:reshape(B,-1,7)\n3:reshape(B,C,H,W)\n0->2\n2->3\n3->1\n", E.RESHAPE, 2)
    assert "reshape" in i.message and "(B,C,H,W)" in i.message


def test_reshape_round_trip_is_fine():
    assert validate(IO + "2:reshape(B,C,H*W)\n3:reshape(B,C,H,W)\n0->2\n2->3\n3->1\n") == []


def test_matmul_inner_dims_mismatch():
    i = one(IO + "2:reshape(B,C,H*W)\n3:multiply\n4:reshape(B,C,H,W)\n0->2\n2,2->3\n3->4\n4->1\n", E.SHAPE_MISMATCH, 3)
    assert "multiply" in i.message and "(B,C,H*W)" in i.message


def test_parameter_symbol_not_allowed():
    i = one(IO + "2:Conv2d(out_channels=H,kernel_size=3)\n0->2\n2->1\n", E.BAD_PARAM, 2)
    assert "Conv2d" in i.message and "H" in i.message


def test_bad_value_reported_as_issue():
    i = one(IO + "2:Conv2d(out_channels=C+,kernel_size=3)\n0->2\n2->1\n", E.BAD_PARAM, 2, only=False)
    assert "Conv2d" in i.message


# ------------------------------------------------------------------------------ output contracts

def test_base_contract_channels():
    i = one(IO + "2:Conv2d(out_channels=2*C,kernel_size=1)\n0->2\n2->1\n", E.OUTPUT_CONTRACT, 1)
    assert "base" in i.message and "(B,2*C,H,W)" in i.message and "(B,C,H,W)" in i.message


def test_base_contract_spatial():
    i = one(IO + "2:Conv2d(out_channels=C,kernel_size=3,stride=2)\n0->2\n2->1\n", E.OUTPUT_CONTRACT, 1)
    assert "(B,C,H/2,W/2)" in i.message


def test_base_contract_rank():
    i = one(IO + "2:reshape(B,C,H*W)\n0->2\n2->1\n", E.OUTPUT_CONTRACT, 1)
    assert "(B,C,H*W)" in i.message


def test_stem_contract():
    assert validate(IO + "2:Conv2d(out_channels=dim,kernel_size=3)\n0->2\n2->1\n", "stem") == []
    i = one(IO + "2:Conv2d(out_channels=C,kernel_size=3)\n0->2\n2->1\n", E.OUTPUT_CONTRACT, 1, "stem")
    assert "stem" in i.message and "(B,3,H,W)" in i.message and "(B,dim,H,W)" in i.message


def test_stem_contract_stride():
    i = one(IO + "2:Conv2d(out_channels=dim,kernel_size=3,stride=2)\n0->2\n2->1\n", E.OUTPUT_CONTRACT, 1, "stem")
    assert "(B,dim,H/2,W/2)" in i.message


def test_downsample_contract_spatial():
    i = one(IO + "2:Conv2d(out_channels=dim,kernel_size=3)\n0->2\n2->1\n", E.OUTPUT_CONTRACT, 1, "downsample")
    assert "downsample" in i.message and "(B,dim,H,W)" in i.message and "(B,dim,H/2,W/2)" in i.message


def test_downsample_contract_channels():
    i = one(IO + "2:Conv2d(out_channels=C,kernel_size=3,stride=2)\n0->2\n2->1\n", E.OUTPUT_CONTRACT, 1, "downsample")
    assert "(B,C,H/2,W/2)" in i.message


def test_downsample_identity_fails():
    i = one(IO + "0->1\n", E.OUTPUT_CONTRACT, 1, "downsample")
    assert "(B,C,H,W)" in i.message


# ------------------------------------------------------------------------------ channel coincidences

@pytest.mark.parametrize("literal", [32, 48, 64, 80, 128])
def test_literal_channels_fail_in_base(literal):
    i = one(IO + f"2:Conv2d(out_channels={literal},kernel_size=3)\n0->2\n2->1\n", E.OUTPUT_CONTRACT, 1)
    assert f"(B,{literal},H,W)" in i.message


def test_literal_channels_fail_in_stem():
    i = one(IO + "2:Conv2d(out_channels=16,kernel_size=3)\n0->2\n2->1\n", E.OUTPUT_CONTRACT, 1, "stem")
    assert "(B,16,H,W)" in i.message


def test_literal_channels_in_residual_add():
    # A literal width that happens to equal C at one width must not pass the Add either.
    i = one(IO + "2:Conv2d(out_channels=48,kernel_size=3)\n3:Add\n0->2\n2,0->3\n3->1\n", E.SHAPE_MISMATCH, 3)
    assert "Add" in i.message and "(B,48,H,W)" in i.message and "(B,C,H,W)" in i.message


def test_literal_groups_that_divide_one_width_only():
    # 3 divides C=48 but not C=80: a coincidence at one width must fail.
    i = one(IO + "2:Conv2d(out_channels=C,kernel_size=3,groups=3)\n0->2\n2->1\n", E.GROUPS, 2)
    assert "groups=3" in i.message


# ------------------------------------------------------------------------------ never raises

@pytest.mark.parametrize("text", ["", "##", "0:", "->", "0->", "1:output(", "0:input\n1:output\n0->1\n" * 3,
                                  "##A##\n0:input\n##B##\n1:output\n", "\x00", "0:input\n1:output\n0->1->2\n"])
def test_odd_text_gives_issues(text):
    issues = validate(text)
    assert isinstance(issues, list) and all(isinstance(i, Issue) for i in issues)
