"""The text format (DESIGN §3.1): parse, canonical print, round trips, sections, input order."""
from __future__ import annotations

from pathlib import Path

import pytest

from graphs.errors import BlockError, ErrorCode
from graphs.ir import Architecture, Block, parse, parse_architecture, parse_block, parse_op, parse_sections, print_block

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.txt"))


def corpus_text(name: str) -> str:
    return (Path(__file__).parent / "corpus" / name).read_text()


def test_corpus_is_there():
    assert len(CORPUS) >= 9


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_round_trip_corpus(path):
    b = parse_block(path.read_text())
    text = str(b)
    assert text == print_block(b)
    again = parse_block(text)
    assert again == b
    assert str(again) == text  # print is a fixed point
    assert hash(again) == hash(b)
    assert [n.id for n in again.nodes] == sorted(n.id for n in b.nodes)
    assert again.inputs == b.inputs  # every node's inputs in the same order


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_reordered_edge_lines_are_the_same_graph(path):
    lines = path.read_text().splitlines()
    edges = [ln for ln in lines if "->" in ln]
    others = [ln for ln in lines if "->" not in ln]
    # Reverse the edge lines: each node's inputs come from one line each, so per-node order survives.
    b = parse_block("\n".join(others + edges[::-1]))
    assert b == parse_block(path.read_text())


def test_corpus_block_facts():
    b = parse_block(corpus_text("resnet_basic.txt"))
    assert b.name == "ResNetBasic"
    assert len(b.nodes) == 9
    assert b.node_map[0].op == "input" and b.node_map[1].op == "output"
    assert b.node_map[2].param_dict["out_channels"].text == "C"
    assert b.inputs[7] == [6, 0]
    assert b.consumers[0] == [2, 7]


def test_architecture_three_sections():
    text = "\n".join(corpus_text(n) for n in ("resnet_basic.txt", "stem_conv.txt", "resnet_reduction.txt"))
    arch = parse_architecture(text)
    assert isinstance(arch, Architecture)
    assert (arch.base.name, arch.stem.name, arch.downsample.name) == ("ResNetBasic", "Stem", "ResNetReduction")
    assert arch.base == parse_block(corpus_text("resnet_basic.txt"))
    assert arch.downsample == parse_block(corpus_text("resnet_reduction.txt"))
    assert isinstance(parse(text), Architecture)
    again = parse_architecture(str(arch))
    assert again == arch
    assert str(again) == str(arch)


def test_wrong_section_counts():
    two = corpus_text("resnet_basic.txt") + corpus_text("stem_conv.txt")
    with pytest.raises(BlockError) as e:
        parse_architecture(two)
    assert e.value.issues[0].code == ErrorCode.SECTIONS
    with pytest.raises(BlockError) as e:
        parse_block(two)
    assert e.value.issues[0].code == ErrorCode.SECTIONS
    with pytest.raises(BlockError):
        parse(two)
    assert isinstance(parse(corpus_text("se_block.txt")), Block)


def test_headerless_text_is_one_block():
    b = parse_block("0:input\n1:output\n2:ReLU\n0->2\n2->1\n")
    assert b.name == "Block"
    assert str(b).startswith("##Block##\n")


def test_concat_input_order_preserved():
    text = ("##Cat##\n0:input\n1:output\n2:Conv2d(out_channels=C/2,kernel_size=1)\n3:Conv2d(out_channels=C/2,kernel_size=3)\n"
            "4:concat(dim=1)\n0->2\n0->3\n3,2->4\n4->1\n")
    b = parse_block(text)
    assert b.inputs[4] == [3, 2]
    assert "3,2->4" in str(b)
    again = parse_block(str(b))
    assert again.inputs[4] == [3, 2]
    swapped = parse_block(text.replace("3,2->4", "2,3->4"))
    assert swapped != b
    assert swapped.inputs[4] == [2, 3]


def test_input_order_from_separate_edge_lines():
    # Separate lines: the order of the lines is the input order.
    b = parse_block("0:input\n1:output\n2:ReLU\n3:concat\n0->2\n2->3\n0->3\n3->1\n")
    assert b.inputs[3] == [2, 0]
    assert "2,0->3" in str(b)
    c = parse_block("0:input\n1:output\n2:ReLU\n3:concat\n0->2\n0->3\n2->3\n3->1\n")
    assert c.inputs[3] == [0, 2]
    assert b != c


def test_multiply_order_is_kept_through_print():
    b = parse_block(corpus_text("attention.txt"))
    assert b.inputs[9] == [8, 6]
    assert b.inputs[12] == [7, 11]
    assert parse_block(str(b)).inputs[12] == [7, 11]


def test_comments_and_whitespace():
    text = """
    # a leading comment
    ##  Res Block  ##

      0 : input      # the input
    1:output
    2 :  Conv2d( out_channels = C , kernel_size = 3 )   # conv
    3:BN

    # edges
    0 -> 2
    2->3
    3 , 0 -> 1   # two inputs to the output (invalid, but readable)
    """
    b = parse_block(text)
    assert b.name == "Res Block"
    assert b.node_map[2].param_dict["kernel_size"].text == "3"
    assert b.inputs[1] == [3, 0]
    ref = parse_block("##Res Block##\n0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3)\n3:BN\n"
                      "0->2\n2->3\n3,0->1\n")
    assert b == ref
    assert str(b) == str(ref)


def test_positional_args():
    b = parse_block(corpus_text("convnext.txt"))
    assert b.node_map[3].args and [a.text for a in b.node_map[3].args] == ["0", "2", "3", "1"]
    assert "3:permute(0,2,3,1)" in str(b)
    assert "8:permute(0,3,1,2)" in str(b)
    node, issues = parse_op("permute(0, 2, 3, 1)", 5)
    assert not issues and node.id == 5 and len(node.args) == 4
    # named and positional spellings are the same node
    named = parse_block("0:input\n1:output\n2:permute(dims=(0,2,3,1))\n0->2\n2->1\n")
    positional = parse_block("0:input\n1:output\n2:permute(0,2,3,1)\n0->2\n2->1\n")
    assert named == positional
    assert str(named) == str(positional)


def test_reshape_positional_expressions():
    b = parse_block(corpus_text("attention.txt"))
    assert "5:reshape(B,C/8,H*W)" in str(b)
    assert "13:reshape(B,C,H,W)" in str(b)


def test_case_insensitive_ops():
    lower = parse_block("0:INPUT\n1:Output\n2:conv2d(out_channels=C,kernel_size=3)\n3:bn\n4:relu\n"
                        "0->2\n2->3\n3->4\n4->1\n")
    canon = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3)\n3:BN\n4:ReLU\n"
                        "0->2\n2->3\n3->4\n4->1\n")
    assert lower == canon
    assert str(lower) == str(canon)
    assert "2:Conv2d(" in str(lower) and "3:BN" in str(lower) and "4:ReLU" in str(lower)


def test_parameters_normalised():
    a = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C*1,kernel_size=(3,3),stride=1,dilation=1,groups=1,bias=True)\n0->2\n2->1\n")
    b = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3)\n0->2\n2->1\n")
    assert a == b
    assert "2:Conv2d(out_channels=C,kernel_size=3)" in str(a)
    c = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3,bias=False)\n0->2\n2->1\n")
    assert c != b and "bias=False" in str(c)
    d = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C//2,kernel_size=(1,3))\n0->2\n2->1\n")
    assert "out_channels=C/2,kernel_size=(1,3)" in str(d)


def test_multi_source_edge_line():
    b = parse_block("0:input\n1:output\n2:ReLU\n3:GELU\n4:Add\n0->2\n0->3\n2,3,0->4\n4->1\n")
    assert b.inputs[4] == [2, 3, 0]
    assert len(b.edges) == 6


def test_duplicate_edge_is_two_inputs():
    b = parse_block("0:input\n1:output\n2:Add\n0,0->2\n2->1\n")
    assert b.inputs[2] == [0, 0]
    assert parse_block(str(b)).inputs[2] == [0, 0]


@pytest.mark.parametrize("text, code", [
    ("", ErrorCode.SYNTAX),
    ("   \n# only a comment\n", ErrorCode.SYNTAX),
    ("0:input\n1:output\nthis is not a line\n", ErrorCode.SYNTAX),
    ("0:input\n0:output\n", ErrorCode.DUPLICATE_NODE),
    ("0:input\n1:output\n0=>1\n", ErrorCode.SYNTAX),
    ("0:input\n1:output\n2:Conv2d(out_channels=C\n", ErrorCode.SYNTAX),
])
def test_unreadable_text_raises_block_error(text, code):
    with pytest.raises(BlockError) as e:
        parse_block(text)
    assert e.value.issues and e.value.issues[0].code == code


def test_bad_value_is_a_read_issue_not_an_exception():
    b = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C+,kernel_size=3)\n0->2\n2->1\n")
    assert [i.code for i in b.read_issues] == [ErrorCode.BAD_PARAM]
    assert b.read_issues[0].node == 2


def test_non_string_text():
    with pytest.raises(BlockError):
        parse_sections(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ bugs found (fixes in graphs/, see report)

def test_header_with_trailing_comment():
    # '#' starts a comment, so '##Res## # the base block' is the header '##Res##'.
    # Bug: ir._strip_comment drops the whole line, so the name is lost and sections merge.
    b = parse_block("##Res## # the base block\n0:input\n1:output\n0->1\n")
    assert b.name == "Res"
    text = "##A## # base\n0:input\n1:output\n0->1\n##B## # stem\n0:input\n1:output\n0->1\n##C##\n0:input\n1:output\n0->1\n"
    assert len(parse_sections(text)) == 3


@pytest.mark.parametrize("op", ["permute(0)", "permute(dims=0)", "permute(dims=(0,))", "permute(C+,0)"])
def test_single_value_varargs_print(op):
    # Bug: registry._collapse turns a one-element `axes` tuple into a bare value and ir.format_op then
    # iterates it: printing, == and hash() raise TypeError instead of giving text.
    b = parse_block(f"0:input\n1:output\n2:{op}\n0->2\n2->1\n")
    text = str(b)
    assert "2:permute(0)" in text
    assert parse_block(text) == b
    hash(b)


def test_extra_positional_values_are_not_dropped_by_print():
    # ReLU(1) is invalid (unknown positional value); its canonical text must not be the valid 'ReLU',
    # or an invalid block compares and hashes equal to a valid one.
    bad = parse_block("0:input\n1:output\n2:ReLU(1)\n0->2\n2->1\n")
    good = parse_block("0:input\n1:output\n2:ReLU\n0->2\n2->1\n")
    assert validate_codes(bad) and not validate_codes(good)
    assert bad != good
    assert validate_codes(str(bad))


def test_varargs_given_by_position_and_by_name():
    # permute(0,2,3,1,dims=(0,1,2,3)): the validator reads the positional dims (infer.named_values
    # overrides), print keeps the named ones (registry.canonical_params uses setdefault): a block that
    # validates clean prints as one that does not. It must be an error, as for non-varargs ops.
    text = ("0:input\n1:output\n2:permute(0,2,3,1,dims=(0,1,2,3))\n3:LN\n4:permute(0,3,1,2)\n"
            "0->2\n2->3\n3->4\n4->1\n")
    assert ErrorCode.BAD_PARAM in validate_codes(text)


def test_non_finite_float_round_trip():
    # 1e400 reads as inf, prints as 'inf', which does not read back: print(parse(t)) != parse(t).
    b = parse_block("0:input\n1:output\n2:DropPath(p=1e400)\n0->2\n2->1\n")
    assert b.read_issues  # should be refused when read, like an out-of-range integer
    assert parse_block(str(b)) == b


def test_bool_parameter_spelled_as_int_is_normalised():
    # bias=1 is accepted as True by the validator, so it is the default and should print (and hash) alike.
    a = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3,bias=1)\n0->2\n2->1\n")
    b = parse_block("0:input\n1:output\n2:Conv2d(out_channels=C,kernel_size=3)\n0->2\n2->1\n")
    assert a == b


def validate_codes(block) -> set:
    from graphs.validate import validate
    return {i.code for i in validate(block)}
