"""`python -m training train`: metrics JSON on stdout, exit 0 for ok, 1 for a failed result or bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SHARED_DATA
from graphs.nb201 import arch_to_block
from training.cli import main
from training.results import TrialResult

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
BEST_C100 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
TABLE = SHARED_DATA / "nb201_cifar.csv"
BAD = "0:input\n1:output\n2:Conv2d(out_channels=2*C,kernel_size=3)\n0->2\n2->1\n"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "resnet.txt").write_text(str(arch_to_block(RESNET)))
    (tmp_path / "best.txt").write_text(str(arch_to_block(BEST_C100)))
    (tmp_path / "bad.txt").write_text(BAD)
    # the smoke profile, shortened: get_profile reads a YAML path
    (tmp_path / "tiny.yaml").write_text("name: tiny\nepochs: 2\nbatch_size: 32\ncrop_padding: 1\nflip: false\n"
                                        "subset: 320\neval_batch_size: 512\n")
    return {p.stem: p for p in tmp_path.iterdir()}


def run(capsys, *argv: str) -> tuple[int, dict]:
    code = main([str(a) for a in argv])
    return code, json.loads(capsys.readouterr().out)


def test_train_a_block_file_on_digits(files, capsys, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    code, m = run(capsys, "train", files["resnet"], "--macro", "nb201", "--dataset", "digits",
                  "--trainer", files["tiny"], "--seed", "3", "--out", out)
    assert code == 0, m
    assert m["status"] == "ok" and m["evaluator"] == "train" and m["profile"] == "tiny"
    assert m["dataset"] == "digits" and m["seed"] == 3 and m["split_seed"] == 3
    assert "epochs" not in m and m["final_valid_acc"] > 20 and m["params"] == 559_386
    full = TrialResult.read_json(out)
    assert len(full.epochs) == 2 and full.metrics() == m


def test_nader_macro_fits_the_width(files, capsys) -> None:
    code, m = run(capsys, "train", files["resnet"], "--macro", "nader", "--dataset", "digits",
                  "--trainer", files["tiny"])
    assert code == 0, m
    assert 0 < m["params"] <= 1_500_000


def test_nb201_table_evaluator(files, capsys) -> None:
    if not TABLE.is_file():
        pytest.fail(f"the NB201 table is missing: expected {TABLE} (DESIGN §3.7: tests read it from "
                    "../shared/data; the project ships no copy)", pytrace=False)
    code, m = run(capsys, "train", files["best"], "--macro", "nb201", "--dataset", "cifar100",
                  "--evaluator", "nb201_table", "--table", TABLE)
    assert code == 0, m
    assert m["evaluator"] == "nb201_table" and m["full_protocol"]
    assert round(m["final_test_acc"], 2) == 73.51
    assert round(m["final_valid_acc"], 2) == 73.49
    code, m = run(capsys, "train", files["bad"].with_name("resnet.txt"), "--macro", "nader", "--dataset",
                  "cifar10", "--evaluator", "nb201_table", "--table", TABLE, "--out-of-space", "skip")
    assert code == 1 and m["status"] == "failed" and m["reason"] == "not in table"


def test_invalid_block_file_gives_the_issues(files, capsys) -> None:
    code, m = run(capsys, "train", files["bad"], "--macro", "nb201", "--dataset", "digits")
    assert code == 1
    assert m["ok"] is False
    assert [e["code"] for e in m["errors"]] == ["output_contract"]
    assert m["errors"][0]["node"] == 1 and "(B,C,H,W)" in m["errors"][0]["message"]


def test_bad_arguments_are_json_errors(files, capsys, tmp_path: Path) -> None:
    code, m = run(capsys, "train", tmp_path / "missing.txt", "--macro", "resnet", "--dataset", "mnist",
                  "--trainer", "forever")
    assert code == 1
    assert {e["code"] for e in m["errors"]} == {"unknown_macro", "unknown_dataset", "ProfileError", "syntax_error"}
    code, m = run(capsys, "train", files["resnet"], "--macro", "nb201", "--evaluator", "nb201_table")
    assert code == 1 and m["errors"][0]["code"] == "missing_table"
    code, m = run(capsys, "train")
    assert code == 1 and m["errors"][0]["code"] == "usage_error"


def test_failed_result_exits_1(files, capsys) -> None:
    code, m = run(capsys, "train", files["resnet"], "--macro", "nb201", "--dataset", "digits",
                  "--trainer", files["tiny"], "--time-limit", "0.001")
    assert code == 1
    assert m["status"] == "failed" and "time limit" in m["reason"]


def test_python_dash_m_entry_point(files) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "training", "train", str(files["bad"]), "--macro", "nb201"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["errors"][0]["code"] == "output_contract"
