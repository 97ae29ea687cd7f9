"""Compilation to torch and standalone source export."""
import json
import subprocess
import sys

import pytest
import torch

from graphs.compile import build_model, count_params
from graphs.export import export_source
from graphs.ir import parse_block
from conftest import CORPUS, ROOT
from export_check import assert_same_outputs, rebuild_exported

BASE_BLOCKS = [p.stem for p in sorted(CORPUS.glob("*.txt")) if p.stem not in ("stem_conv", "resnet_reduction")]


def block(name):
    return parse_block((CORPUS / f"{name}.txt").read_text())


@pytest.mark.parametrize("name", BASE_BLOCKS)
def test_forward_and_backward_on_cpu(name):
    torch.manual_seed(0)
    net = build_model(block(name), "nader", "cifar10", 8).module.train()
    out = net(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", BASE_BLOCKS)
@pytest.mark.parametrize("macro", ["nader", "nb201"])
def test_exported_source_rebuilds_the_same_network(tmp_path, name, macro):
    compiled = build_model(block(name), macro, "cifar10", 8 if macro == "nader" else None)
    src = export_source(compiled)
    imports = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
    assert imports == ["import torch", "from torch import nn"]
    rebuilt = rebuild_exported(tmp_path / f"{name}_{macro}.py", src)
    assert count_params(rebuilt) == count_params(compiled.module) == compiled.cost.params
    assert_same_outputs(rebuilt, compiled.module, (3, 3, 32, 32))


def test_batch_symbol_works_at_any_batch_size():
    net = build_model(block("attention"), "nader", "cifar10", 8).module.eval()
    for n in (1, 5):
        assert net(torch.randn(n, 3, 32, 32)).shape == (n, 10)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "graphs", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_validate_ok_and_invalid(tmp_path):
    ok = run_cli("validate", str(CORPUS / "se_block.txt"))
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"ok": True, "errors": []}
    bad = tmp_path / "bad.txt"
    bad.write_text((CORPUS / "resnet_basic.txt").read_text().replace("5:Conv2d(out_channels=C,", "5:Conv2d(out_channels=32,"))
    res = run_cli("validate", str(bad))
    out = json.loads(res.stdout)
    assert res.returncode == 1 and not out["ok"]
    assert out["errors"][0]["code"] == "shape_mismatch" and out["errors"][0]["node"] == 7


def test_cli_cost_hash_export_nb201(tmp_path):
    res = run_cli("cost", str(CORPUS / "resnet_basic.txt"), "--macro", "nader", "--dataset", "cifar100")
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["widths"][1] == 2 * out["widths"][0] and out["params"] <= 1_500_000
    h = run_cli("hash", str(CORPUS / "resnet_basic.txt"))
    assert h.returncode == 0 and len(json.loads(h.stdout)["hash"]) >= 16
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    nb = run_cli("nb201", arch)
    assert nb.returncode == 0
    cell = tmp_path / "cell.txt"
    cell.write_text(nb.stdout)
    cost = json.loads(run_cli("cost", str(cell), "--macro", "nb201", "--dataset", "cifar10").stdout)
    assert cost == {"widths": [16, 32, 64], "params": 1_288_506, "flops": cost["flops"]} and cost["flops"] > 0
    model = tmp_path / "model.py"
    ex = run_cli("export", str(cell), "--macro", "nb201", "--dataset", "cifar10", "-o", str(model))
    assert ex.returncode == 0 and count_params(rebuild_exported(model)) == 1_288_506


def test_cli_rejects_missing_file_and_bad_arch():
    res = run_cli("validate", "/nonexistent/block.txt")
    assert res.returncode == 1 and "cannot read" in json.loads(res.stdout)["errors"][0]["message"]
    res = run_cli("nb201", "|conv~0|+|")
    assert res.returncode == 1 and json.loads(res.stdout)["ok"] is False
