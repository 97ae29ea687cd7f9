"""Issue 10 part 5: node ids and parameter values are bounded, so whatever validates also prints, parses
back and exports as valid Python; what is outside the bounds is a typed error (an Issue with a code
and a message naming the node and the bound), never another exception. And the CLI applies the
budget a run applies, for both macros (part 4)."""
from __future__ import annotations

import json
import runpy

import pytest
import torch

from graphs import cli
from graphs.compile import build_model
from graphs.edits import EditError, apply_edits
from graphs.errors import BlockError, ErrorCode
from graphs.export import export_source
from graphs.ir import MAX_NODE_ID, Block, Node, parse_block
from graphs.nb201 import arch_to_block
from graphs.validate import validate

CHAIN = "0:input\n1:output\n{a}:Conv2d(out_channels={oc},kernel_size=3)\n{b}:ReLU\n0->{a}\n{a}->{b}\n{b}->1\n"


def chain(oc: str = "C", a: str = "2", b: str = "3") -> str:
    return CHAIN.format(oc=oc, a=a, b=b)


def run_cli(capsys, *argv: str) -> tuple[int, dict]:
    code = cli.main(list(argv))
    return code, json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------------------------- node ids

@pytest.mark.parametrize("nid", ["-3", "-1", str(MAX_NODE_ID + 1), "123456789012", "9" * 5000])
def test_out_of_range_ids_are_typed_errors(nid):
    text = chain(a=nid)
    issues = validate(text)
    assert issues and {i.code for i in issues} == {ErrorCode.BAD_NODE_ID}, issues
    assert all(f"0..{MAX_NODE_ID}" in i.message and i.message.startswith("line ") for i in issues)
    with pytest.raises(BlockError) as exc:
        parse_block(text)
    assert {i.code for i in exc.value.issues} == {ErrorCode.BAD_NODE_ID}


def test_blocks_built_in_code_are_held_to_the_same_bound():
    block = Block("Coded", (Node(0, "input"), Node(1, "output"), Node(-3, "ReLU")), ((0, -3), (-3, 1)))
    issues = validate(block)
    assert [i.code for i in issues] == [ErrorCode.BAD_NODE_ID] and "node id -3" in issues[0].message


def test_edits_cannot_make_an_out_of_range_id():
    block = parse_block(chain())
    for bad in (-3, MAX_NODE_ID + 1):
        with pytest.raises(EditError) as exc:
            apply_edits(block, [{"kind": "insert_on_edge", "src": 2, "dst": 3, "op": "BN", "id": bad}])
        assert exc.value.index == 0 and exc.value.issues
    # Past the largest id, a new node takes the smallest free one.
    top = parse_block(chain(b=str(MAX_NODE_ID)))
    assert validate(top) == []
    after = apply_edits(top, [{"kind": "insert_on_edge", "src": 2, "dst": MAX_NODE_ID, "op": "BN"}])
    assert after.node_map[3].op == "BN" and validate(after) == []


# ----------------------------------------------------------------------------------------- values

@pytest.mark.parametrize("oc, says", [
    ("10000000000", "10000000000 in '10000000000' is out of range"),
    ("1000000000*1000000000", "'1000000000*1000000000' folds to 1000000000000000000"),
    ("-1000000000-1", "folds to -1000000001"),
    ("C*1000000000*1000000000", "out_channels=C*1000000000*1000000000 evaluates to 48000000000000000000"),
    ("1000000000*(C*1000000000)", "evaluates to 48000000000000000000"),
])
def test_huge_values_are_typed_errors_naming_node_and_bound(oc, says):
    issues = validate(chain(oc=oc))
    assert issues[0].code == ErrorCode.BAD_PARAM and issues[0].node == 2, issues
    assert says in issues[0].message and "|value| <= 1,000,000,000" in issues[0].message, issues[0].message
    # What was read prints as text that reads back to the same graph (a dropped value stays an issue).
    block = parse_block(chain(oc=oc))
    assert parse_block(str(block)) == block and validate(str(block))


def _exported(block, tmp_path):
    src = export_source(build_model(block, "nader", "digits", 4))
    compile(src, "model.py", "exec")  # valid Python
    path = tmp_path / "model.py"
    path.write_text(src)
    return runpy.run_path(str(path))["build_model"]()


def test_accepted_extremes_print_parse_back_and_export_runnable_source(one_thread, tmp_path):
    text = ("0:input\n1:output\n"
            f"{MAX_NODE_ID}:Conv2d(out_channels=C*1000000000/1000000000,kernel_size=3,groups=C+1000000000-1000000000)\n"
            "5000:Conv2d(out_channels=500000000+500000000-1000000000+C,kernel_size=(1,3),bias=False)\n"
            "7:Add\n"
            f"0->{MAX_NODE_ID}\n{MAX_NODE_ID}->5000\n5000,0->7\n7->1\n")
    assert validate(text) == []
    block = parse_block(text)
    printed = str(block)
    again = parse_block(printed)
    assert again == block and str(again) == printed and validate(printed) == []
    net = _exported(again, tmp_path).eval()
    out = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_a_value_at_the_bound_validates_and_the_budget_stops_its_export(capsys, tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text(chain(oc="1000000000").replace("3:ReLU", "3:Conv2d(out_channels=C,kernel_size=1)"))
    assert validate(path.read_text()) == []
    for macro in ("nb201", "nader"):
        model = tmp_path / f"{macro}.py"
        code, out = run_cli(capsys, "export", str(path), "--macro", macro, "-o", str(model))
        assert code == 1 and out["errors"][0]["code"] == "BudgetError", out
        assert not model.exists()


def test_cli_export_of_negative_ids_is_a_json_error(capsys, tmp_path):
    path = tmp_path / "neg.txt"
    path.write_text(chain(a="-3"))
    code, out = run_cli(capsys, "export", str(path), "--macro", "nb201", "-o", str(tmp_path / "m.py"))
    assert code == 1 and {e["code"] for e in out["errors"]} == {"bad_node_id"}
    assert not (tmp_path / "m.py").exists()


# ---------------------------------------------------------------------------------- budget in CLI

ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_cli_checks_the_nb201_budget_a_run_applies(capsys, tmp_path):
    path = tmp_path / "cell.txt"
    path.write_text(str(arch_to_block(ALL_CONV)))  # the largest NB201 cell: 1.53M params
    code, out = run_cli(capsys, "cost", str(path), "--macro", "nb201")
    assert code == 0 and out["widths"] == [16, 32, 64] and 1_500_000 < out["params"] < 1_600_000
    code, out = run_cli(capsys, "cost", str(path), "--macro", "nb201", "--max-params", "1500000")
    assert code == 1 and out["ok"] is False
    err = out["errors"][0]
    assert err["code"] == "BudgetError" and "(limit 1,500,000)" in err["message"] and "nb201" in err["message"]
    code, out = run_cli(capsys, "cost", str(path), "--macro", "nb201", "--max-flops", "100000000")
    assert code == 1 and "(limit 100,000,000)" in out["errors"][0]["message"]
    model = tmp_path / "model.py"
    code, out = run_cli(capsys, "export", str(path), "--macro", "nb201", "--max-params", "1000000", "-o", str(model))
    assert code == 1 and out["errors"][0]["code"] == "BudgetError" and not model.exists()


def test_cli_nader_fit_respects_the_given_budget(capsys, tmp_path):
    path = tmp_path / "cell.txt"
    path.write_text(chain())
    code, out = run_cli(capsys, "cost", str(path), "--macro", "nader", "--max-params", "200000")
    assert code == 0 and out["params"] <= 200_000 and out["widths"][2] == 4 * out["widths"][0]
    code, out = run_cli(capsys, "cost", str(path), "--macro", "nader", "--max-params", "100")
    assert code == 1 and out["errors"][0]["code"] == "BudgetError"
