"""`python -m training train`: metrics JSON on stdout, exit 0 for ok, 1 for a failed result or bad input, 2 for
a device or output path this machine cannot use (one line on stderr, before any training)."""

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
    out = tmp_path / "new" / "folder" / "metrics.json"  # folders that do not exist yet are made
    code, m = run(capsys, "train", files["resnet"], "--macro", "nb201", "--dataset", "digits",
                  "--trainer", files["tiny"], "--seed", "3", "--out", out)
    assert code == 0, m
    assert m["status"] == "ok" and m["evaluator"] == "train" and m["profile"] == "tiny"
    assert m["dataset"] == "digits" and m["seed"] == 3 and m["split_seed"] == 3
    assert "epochs" not in m and m["final_valid_acc"] > 20 and m["params"] == 559_386
    full = TrialResult.read_json(out)
    assert len(full.epochs) == 2 and full.metrics() == m
    assert not list(tmp_path.glob(".write-check-*"))  # the check before training wrote nothing that stays


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


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "training", "train", *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("device", ["banana", "gpu", "cuda:x", "cpu:0", "CUDA", " cpu"])
def test_a_device_that_is_not_one_is_a_one_line_error_before_training(files, capsys, tmp_path: Path,
                                                                      device: str) -> None:
    out = tmp_path / "never.json"
    code = main(["train", str(files["resnet"]), "--macro", "nb201", "--trainer", str(files["tiny"]),
                 "--device", device, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and not out.exists()  # nothing was trained or written
    assert captured.err.count("\n") == 1
    assert f"--device {device!r} is not a device; valid: cpu, cuda, cuda:N, mps" in captured.err


def test_a_device_this_machine_lacks_is_a_one_line_error(files, capsys) -> None:
    # cuda:99 is a device name, but no machine this runs on has 100 GPUs (or it has none at all).
    code = main(["train", str(files["resnet"]), "--macro", "nb201", "--device", "cuda:99"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("python -m training: --device cuda:99: ")
    assert "CUDA is not available" in captured.err or "CUDA device(s), cuda:0 to" in captured.err


def test_the_command_line_prints_no_traceback_for_a_bad_device(files) -> None:
    p = _cli(files["resnet"], "--macro", "nb201", "--device", "banana")
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
    assert p.stderr == "python -m training: --device 'banana' is not a device; valid: cpu, cuda, cuda:N, mps\n"


def test_an_unwritable_out_fails_before_training(files, capsys, tmp_path: Path) -> None:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    cases = {"/proc/no-such-dir/out.json": "cannot write in /proc",  # even root cannot create files there
             str(a_file / "out.json"): f"{a_file} is a file, not a folder",
             str(tmp_path): "is a folder; give a file path"}
    for out, why in cases.items():
        code = main(["train", str(files["resnet"]), "--macro", "nb201", "--trainer", str(files["tiny"]),
                     "--out", out])
        captured = capsys.readouterr()
        assert code == 2 and captured.out == "", out  # no metrics: training never started
        assert captured.err.count("\n") == 1 and f"--out {out}" in captured.err and why in captured.err, captured.err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the write check leaves nothing behind
