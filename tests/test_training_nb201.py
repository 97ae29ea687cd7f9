"""BlockNetwork (block text -> model factory) and the `nb201_table` evaluator against the real table."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import SHARED_DATA
from graphs.nb201 import arch_to_block
from training.evaluators import EVALUATORS, TrainEvaluator, make_evaluator
from training.models import BlockNetwork, block_network_from_file, validate_text
from training.nb201_table import NOT_IN_TABLE, TABLE_PROFILE, Nb201TableEvaluator
from training.profiles import PROFILES
from training.trials import TrialSpec

TABLE = SHARED_DATA / "nb201_cifar.csv"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
BEST_C100 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
# Not an NB201 cell: NB201 has no bare conv without the leading ReLU.
OUT_OF_SPACE = """##Plain##
0:input
1:output
2:Conv2d(out_channels=C,kernel_size=3,bias=False)
3:BN
0->2
2->3
3->1
"""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def table_path() -> Path:
    if not TABLE.is_file():
        pytest.fail(f"the NB201 table is missing: expected {TABLE} (DESIGN §3.7: tests read the 15,625-cell "
                    "CSV from ../shared/data; the project ships no copy)", pytrace=False)
    return TABLE


@pytest.fixture(scope="module")
def evaluator(table_path: Path) -> Nb201TableEvaluator:
    ev = Nb201TableEvaluator(str(table_path), out_of_space="skip")
    ev.table()  # load once for the module (seconds)
    return ev


@pytest.fixture(scope="module")
def rows(table_path: Path) -> dict[str, dict[str, float]]:
    with open(table_path, newline="") as fh:
        return {r["arch"]: {k: float(v) for k, v in r.items() if k != "arch"} for r in csv.DictReader(fh)}


def _spec(text: str, dataset: str = "cifar100", macro: str = "nb201", **kw) -> TrialSpec:
    return TrialSpec(model_factory=BlockNetwork(text, macro, dataset), dataset=dataset,
                     extra={"block": text, "macro": macro}, **kw)


# --- BlockNetwork --------------------------------------------------------------------------------


def test_block_network_builds_a_fresh_module_and_pickles() -> None:
    net = BlockNetwork.from_nb201(RESNET, "digits")
    assert net.macro == "nb201" and "Conv2d" in net.text
    again = pickle.loads(pickle.dumps(net))
    assert again == net
    m1, m2 = again(), again()
    assert isinstance(m1, nn.Module) and m1 is not m2
    out = m1(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10)


def test_block_network_fits_the_nader_width(tmp_path: Path) -> None:
    f = tmp_path / "cell.txt"
    f.write_text(str(arch_to_block(RESNET)))
    net = block_network_from_file(f, "nader", "cifar10")
    assert net.x is None
    fixed = net.resolved()
    assert fixed.x is not None and fixed.x >= 4
    params = sum(p.numel() for p in fixed().parameters())
    assert params <= 1_500_000
    assert params == fixed.compiled().cost.params


def test_invalid_text_gives_the_validator_issues() -> None:
    bad = "0:input\n1:output\n2:Conv2d(out_channels=2*C,kernel_size=3)\n0->2\n2->1\n"
    issues = validate_text(bad)
    assert [i["code"] for i in issues] == ["output_contract"]
    with pytest.raises(ValueError):
        BlockNetwork(bad, "nb201", "digits")()
    with pytest.raises(ValueError, match="unknown macro"):
        BlockNetwork(bad, "resnet")


# --- the evaluator --------------------------------------------------------------------------------


def test_registry_is_read_only_and_has_both_evaluators(table_path: Path) -> None:
    assert set(EVALUATORS) == {"train", "nb201_table"}
    with pytest.raises(TypeError):
        EVALUATORS["x"] = TrainEvaluator  # type: ignore[index]
    ev = make_evaluator("nb201_table", table_path=str(table_path), out_of_space="skip")
    assert isinstance(ev, Nb201TableEvaluator) and ev.name == "nb201_table"
    with pytest.raises(ValueError, match="out_of_space"):
        Nb201TableEvaluator(str(table_path), out_of_space="maybe")  # type: ignore[arg-type]


def test_in_space_cell_reads_the_table(evaluator: Nb201TableEvaluator, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = evaluator.evaluate(_spec(str(arch_to_block(BEST_C100)), "cifar100", trial_id="t1", out=str(out)))
    assert r.ok, r.reason
    assert round(r.final_test_acc, 2) == 73.51
    assert round(r.final_valid_acc, 2) == 73.49
    assert r.evaluator == "nb201_table" and r.profile == TABLE_PROFILE and r.full_protocol
    assert r.trial_id == "t1" and r.epochs == []  # looked up: nothing was trained
    assert "class of 1 cell" in r.reason
    assert r.params == sum(p.numel() for p in BlockNetwork.from_nb201(BEST_C100, "cifar100")().parameters())
    assert json_equal(out, r)
    c10 = evaluator.evaluate(_spec(str(arch_to_block(BEST_C100)), "cifar10"))
    assert round(c10.final_test_acc, 2) == 94.36


def json_equal(path: Path, r) -> bool:
    from training.results import TrialResult

    return TrialResult.read_json(path) == r


def test_equivalence_class_mean(evaluator: Nb201TableEvaluator, rows) -> None:
    members = evaluator.table().find_class(arch_to_block(RESNET))
    assert members is not None and len(members) > 1  # the none/dead variants of the ResNet cell
    r = evaluator.evaluate(_spec(str(arch_to_block(RESNET)), "cifar10"))
    assert r.ok
    assert r.final_valid_acc == pytest.approx(sum(rows[a]["cifar10_val"] for a in members) / len(members))
    assert r.final_test_acc == pytest.approx(sum(rows[a]["cifar10_test"] for a in members) / len(members))
    assert f"class of {len(members)} cell" in r.reason


def test_renumbered_block_is_still_in_space(evaluator: Nb201TableEvaluator) -> None:
    text = """##Renumbered##
10:input
11:output
20:BN
21:Conv2d(out_channels=C,kernel_size=3,bias=False)
22:ReLU
30:BN
31:Conv2d(kernel_size=3,out_channels=C,bias=False)
32:ReLU
40:Add
10->22
22->21
21->20
20->32
32->31
31->30
30,10->40
40->11
"""
    r = evaluator.evaluate(_spec(text, "cifar10"))
    assert r.ok and r.evaluator == "nb201_table"
    ref = evaluator.evaluate(_spec(str(arch_to_block(RESNET)), "cifar10"))
    assert r.final_test_acc == ref.final_test_acc


def test_block_from_the_model_factory_alone(evaluator: Nb201TableEvaluator) -> None:
    spec = TrialSpec(model_factory=BlockNetwork.from_nb201(BEST_C100, "cifar100"), dataset="cifar100")
    r = evaluator.evaluate(spec)
    assert r.ok and round(r.final_test_acc, 2) == 73.51


def test_out_of_space_skip(evaluator: Nb201TableEvaluator) -> None:
    r = evaluator.evaluate(_spec(OUT_OF_SPACE, "cifar10"))
    assert r.status == "failed" and r.reason == NOT_IN_TABLE and r.evaluator == "nb201_table"
    # the nader skeleton is not NB201's, whatever its cell
    r = evaluator.evaluate(_spec(str(arch_to_block(RESNET)), "cifar10", macro="nader"))
    assert r.status == "failed" and r.reason == NOT_IN_TABLE


def test_out_of_space_train_delegates_to_the_trainer(table_path: Path, tmp_path: Path) -> None:
    from test_training_datasets import write_cifar100

    write_cifar100(tmp_path)
    ev = Nb201TableEvaluator(str(table_path), out_of_space="train", progress=False)
    tiny = PROFILES["smoke"].model_copy(update={"epochs": 1, "batch_size": 16, "subset": 32})
    r = ev.evaluate(_spec(OUT_OF_SPACE, "cifar100", root=str(tmp_path), profile=tiny))
    assert r.ok, r.reason
    assert r.evaluator == "train" and len(r.epochs) == 1 and r.profile == "smoke"


def test_other_datasets_and_bad_trials_are_typed_failures(evaluator: Nb201TableEvaluator) -> None:
    r = evaluator.evaluate(_spec(str(arch_to_block(RESNET)), "digits"))
    assert r.status == "failed" and r.reason.startswith("Nb201TableError:") and "cifar10, cifar100" in r.reason
    bad = "0:input\n1:output\n2:Conv2d(out_channels=2*C,kernel_size=3)\n0->2\n2->1\n"
    r = evaluator.evaluate(_spec(bad, "cifar10"))
    assert r.status == "failed" and "invalid block" in r.reason and "output_contract" in r.reason
    r = evaluator.evaluate(TrialSpec(model_factory=TrainEvaluator, dataset="cifar10"))  # no block anywhere
    assert r.status == "failed" and "no block text" in r.reason


def test_missing_table_is_a_failed_result(tmp_path: Path) -> None:
    ev = Nb201TableEvaluator(str(tmp_path / "absent.csv"))
    r = ev.evaluate(_spec(str(arch_to_block(RESNET)), "cifar10"))
    assert r.status == "failed" and "NB201 table not found" in r.reason


def test_pickled_evaluator_leaves_the_table_behind(evaluator: Nb201TableEvaluator) -> None:
    table = evaluator.table()
    blob = pickle.dumps(evaluator)
    assert len(blob) < 2000  # the 15,625-row table stays behind: a worker process loads its own
    copy = pickle.loads(blob)
    assert copy == evaluator
    assert evaluator.table() is table  # the original keeps the table it loaded
