"""NB201 tables with any of the benchmark's datasets (issue 11): loading, the evaluator on
imagenet16-120, and clear errors for a dataset a table does not hold. Tables are written by the tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from graphs.nb201 import TABLE_DATASETS, Nb201Table, arch_to_block, dataset_columns
from training.models import BlockNetwork
from training.nb201_table import Nb201TableEvaluator
from training.trials import TrialSpec

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
# two strings of one cell: node 1's op into the dead node 2 does not matter
POOL_A = "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|"
POOL_B = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|none~2|"
OTHER = "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    path.write_text("\n".join(",".join(map(str, r)) for r in [header] + rows) + "\n")
    return path


@pytest.fixture
def in16(tmp_path: Path) -> Path:
    return _write(tmp_path / "in16.csv", ["arch", "imagenet16_120_val", "imagenet16_120_test"],
                  [[RESNET, 41.5, 42.25], [POOL_A, 10.0, 11.0], [POOL_B, 20.0, 30.0], [OTHER, 5, 6]])


def _spec(arch: str, dataset: str) -> TrialSpec:
    text = str(arch_to_block(arch))
    return TrialSpec(model_factory=BlockNetwork(text, "nb201", dataset), dataset=dataset,
                     extra={"block": text, "macro": "nb201"})


def test_dataset_columns():
    assert TABLE_DATASETS == ("cifar10", "cifar100", "imagenet16-120")
    assert dataset_columns("imagenet16-120") == ("imagenet16_120_val", "imagenet16_120_test")
    assert dataset_columns("cifar10") == ("cifar10_val", "cifar10_test")


def test_load_reads_the_pairs_it_finds(in16: Path, tmp_path: Path):
    t = Nb201Table.load(in16)
    assert t.datasets == ("imagenet16-120",) and t.columns == ("imagenet16_120_val", "imagenet16_120_test")
    assert len(t) == 4 and t.rows[RESNET] == (41.5, 42.25)
    both = _write(tmp_path / "all.csv", ["arch", "imagenet16_120_test", "cifar10_val", "note", "cifar10_test",
                                         "imagenet16_120_val"], [[RESNET, 1, 2, "x", 3, 4]])
    t = Nb201Table.load(both)
    assert t.datasets == ("cifar10", "imagenet16-120")
    assert dict(zip(t.columns, t.rows[RESNET])) == {"cifar10_val": 2, "cifar10_test": 3, "imagenet16_120_val": 4,
                                                    "imagenet16_120_test": 1}
    assert t.lookup(arch_to_block(RESNET))["imagenet16_120_test"] == 1


@pytest.mark.parametrize("header, fragment", [
    (["arch", "cifar10_val"], "missing column(s) cifar10_test"),
    (["arch", "acc"], "no accuracy columns"),
    (["name", "cifar10_val", "cifar10_test"], "no column arch"),
])
def test_load_errors_name_found_and_expected_columns(tmp_path: Path, header, fragment):
    path = _write(tmp_path / "bad.csv", header, [[RESNET] + [1] * (len(header) - 1)])
    with pytest.raises(ValueError) as info:
        Nb201Table.load(path)
    msg = str(info.value)
    assert fragment in msg and f"its columns: {', '.join(header)}" in msg
    assert "imagenet16_120_val,imagenet16_120_test" in msg


def test_evaluator_reads_imagenet16_120(in16: Path):
    ev = Nb201TableEvaluator(str(in16), out_of_space="skip")
    r = ev.evaluate(_spec(RESNET, "imagenet16-120"))
    assert r.ok, r.reason
    assert (r.final_valid_acc, r.final_test_acc) == (41.5, 42.25) and r.dataset == "imagenet16-120"
    assert r.params == sum(p.numel() for p in BlockNetwork.from_nb201(RESNET, "imagenet16-120")().parameters())
    # a class of two strings in the table: their mean
    r = ev.evaluate(_spec(POOL_B, "imagenet16-120"))
    assert (r.final_valid_acc, r.final_test_acc) == (15.0, 20.5) and "class of 2 cell" in r.reason


def test_dataset_without_columns_is_a_clear_error(in16: Path):
    ev = Nb201TableEvaluator(str(in16), out_of_space="skip")
    r = ev.evaluate(_spec(RESNET, "cifar10"))
    assert r.status == "failed" and r.reason.startswith("Nb201TableError:")
    assert (f"{in16} has no columns cifar10_val, cifar10_test for dataset cifar10; its columns: arch, "
            f"imagenet16_120_val, imagenet16_120_test") in r.reason
    r = ev.evaluate(_spec(RESNET, "digits"))
    assert r.status == "failed" and "NB201 covers cifar10, cifar100, imagenet16-120" in r.reason


# ------------------------------------------------------------------------------ the release -> CSV

def _run(dataset: str, seed: int, accs: dict[str, float], epochs: int = 200) -> dict:
    """One ResultsCount state dict as the release stores it (the fields the conversion reads, plus
    a few it does not)."""
    names = sorted({k for k in accs})
    return {"name": dataset, "seed": seed, "epochs": epochs, "net_state_dict": None, "params": 0.1, "flop": 10.0,
            "eval_names": names, "train_acc1es": {epochs - 1: 99.0},
            "eval_acc1es": {f"{k}@{i}": (v if i == epochs - 1 else 1.0) for k, v in accs.items() for i in (0, epochs - 1)}}


def _arch_results(index: int, arch: str, base: float) -> dict:
    """An ArchResults state dict: cifar10-valid and cifar10 with 2 seeds, the others with 1."""
    runs = {
        ("cifar10-valid", 777): _run("cifar10-valid", 777, {"x-valid": base + 1, "ori-test": 5.0}),
        ("cifar10-valid", 888): _run("cifar10-valid", 888, {"x-valid": base + 3, "ori-test": 5.0}),
        ("cifar10", 777): _run("cifar10", 777, {"ori-test": base + 10}),
        ("cifar10", 888): _run("cifar10", 888, {"ori-test": base + 20}),
        ("cifar100", 777): _run("cifar100", 777, {"x-valid": base + 30, "x-test": base + 31, "ori-test": 0.0}),
        ("ImageNet16-120", 777): _run("ImageNet16-120", 777, {"x-valid": base + 40, "x-test": base + 41,
                                                              "ori-test": 0.0}),
    }
    seeds: dict[str, list[int]] = {}
    for ds, seed in runs:
        seeds.setdefault(ds, []).append(seed)
    return {"arch_index": index, "arch_str": arch, "all_results": runs, "dataset_seed": seeds, "clear_net_done": True}


def _release(archs: list[str]) -> dict:
    return {"meta_archs": list(archs), "evaluated_indexes": list(range(len(archs))),
            "arch2infos": {i: {"less": _arch_results(i, a, 0.0), "full": _arch_results(i, a, 10.0 * i)}
                           for i, a in enumerate(archs)}}


def test_release_to_table(tmp_path: Path, capsys):
    import json

    import torch

    from graphs.cli import main

    archs = [RESNET, POOL_A, OTHER]
    torch.save(_release(archs), tmp_path / "release.pth")
    out = tmp_path / "table.csv"
    assert main(["nb201-table", str(tmp_path / "release.pth"), "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 3 and report["datasets"] == ["cifar10", "cifar100", "imagenet16-120"]
    t = Nb201Table.load(out)
    assert t.datasets == TABLE_DATASETS and len(t) == 3
    row = dict(zip(t.columns, t.rows[POOL_A]))  # index 1: base 10
    assert row == {"cifar10_val": 12.0, "cifar10_test": 25.0, "cifar100_val": 40.0, "cifar100_test": 41.0,
                   "imagenet16_120_val": 50.0, "imagenet16_120_test": 51.0}
    assert t.rows[RESNET][:2] == (2.0, 15.0)  # seed means of the 200-epoch runs ('full'), not the 12-epoch ones
    ev = Nb201TableEvaluator(str(out), out_of_space="skip")
    r = ev.evaluate(_spec(OTHER, "imagenet16-120"))
    assert r.ok and (r.final_valid_acc, r.final_test_acc) == (60.0, 61.0)


def test_release_api_form_and_errors(tmp_path: Path, capsys):
    import json
    from fractions import Fraction

    import torch

    from graphs.cli import main
    from graphs.nb201 import Nb201ReleaseError, release_rows

    data = _release([RESNET])
    data["arch2infos"][0] = {"12": data["arch2infos"][0]["less"], "200": data["arch2infos"][0]["full"]}
    assert release_rows(data)[1][RESNET][1] == 15.0  # the API's in-memory form, keyed '200'
    with pytest.raises(Nb201ReleaseError, match="keys meta_archs and arch2infos"):
        release_rows({"archs": []})
    broken = _release([RESNET])
    del broken["arch2infos"][0]["full"]["dataset_seed"]["ImageNet16-120"]
    with pytest.raises(Nb201ReleaseError, match="arch index 0: no runs on 'ImageNet16-120'; its datasets: cifar10-valid"):
        release_rows(broken)
    # a pickle holding a class that is not plain data is refused without --trust-pickle
    odd = _release([RESNET])
    odd["extra"] = Fraction(1, 3)
    torch.save(odd, tmp_path / "odd.pth")
    assert main(["nb201-table", str(tmp_path / "odd.pth"), "-o", str(tmp_path / "t.csv")]) == 1
    err = json.loads(capsys.readouterr().out)["errors"][0]
    assert err["code"] == "Nb201ReleaseError" and "--trust-pickle" in err["message"]
    assert "fractions.Fraction" in err["message"] and "\x1b" not in err["message"]
    assert not (tmp_path / "t.csv").exists()
    assert main(["nb201-table", str(tmp_path / "odd.pth"), "-o", str(tmp_path / "t.csv"), "--trust-pickle"]) == 0
    assert len(Nb201Table.load(tmp_path / "t.csv")) == 1
