"""report.html and the terminal inspector (issue 14) on a real 3-trial run: the page is drawn from
the run's files, works in a headless browser (tree, block drawing, transcript, role filter, no
console errors), and `python -m agents.inspect` prints the tree and a filtered transcript."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from conftest import ROOT
from scripted_clients import run_loop

TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"
NB201 = ["space=nb201", "evaluator.name=nb201_table", f"evaluator.table={TABLE}", "evaluator.out_of_space=skip",
         "dataset=cifar100", "memory.embedder=hashing", "export=false", "progress=false", "proxies.names=[]"]

pytestmark = pytest.mark.skipif(not TABLE.is_file(), reason="the shared NB201 table is not beside the checkout")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("report") / "run"
    summary, tree, _ = run_loop(run_dir, NB201 + ["trials=3"])
    return run_dir, tree


def test_the_report_is_written_with_every_node_and_transcript(run):
    run_dir, tree = run
    html = (run_dir / "report.html").read_text()
    assert html.count('class="tree-node ') == len(tree) and html.count('class="node-detail"') == len(tree)
    for t in (1, 2, 3):
        assert f'class="transcript" data-trial="{t}"' in html
    import re

    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "<link" not in html  # self-contained
    assert "<svg" in html.split('id="chart-accuracy"')[1][:200]  # the charts are inline SVG
    before = (run_dir / "report.html").read_bytes()
    (run_dir / "report.html").unlink()
    from agents.report import main

    assert main([str(run_dir)]) == 0 and (run_dir / "report.html").read_bytes() == before  # regenerated alike


def test_inspect_prints_the_tree_and_a_filtered_transcript(run):
    from agents.inspect import main

    run_dir, tree = run
    out = io.StringIO()
    assert main([str(run_dir), "--trial", "2", "--role", "Reflector"], Console(file=out, width=200)) == 0
    text = out.getvalue()
    for n in tree.nodes:
        assert f"#{n.id} " in text
    records = [json.loads(x) for x in (run_dir / "trials" / "0002" / "transcript.jsonl").read_text().splitlines()]
    mine = [r for r in records if r["role"] == "Reflector" and not r["type"].startswith("ToolCall")]
    assert f"trial 2: {len(mine)} of {len(records)} records (role Reflector)" in text
    assert text.count("Reflector · ") == len(mine) and "Modifier · " not in text
    # the transcript names the model of each model message and records the block's change
    spoken = [r for r in records if r["prompt_tokens"] + r["completion_tokens"] > 0]
    assert spoken and {r["model"] for r in spoken} == {"offline-designer"}
    diff = [r for r in records if r["role"] == "diff"]
    assert len(diff) == 1 and diff[0]["content"].startswith(f"from node {next(n.parent for n in tree.nodes if n.trial == 2)}: ")
    assert "offline-designer" in (run_dir / "trials" / "0002" / "transcript.md").read_text()
    out = io.StringIO()
    assert main([str(run_dir), "--trial", "9"], Console(file=out, width=200)) == 2
    assert "trial 9 has no transcript; trials with one: [1, 2, 3]" in out.getvalue()


def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        print("\nSKIPPED: no chromium/chromedriver on this machine (.ci/run installs Debian's chromium and chromium-driver)")
        pytest.skip("no chromium/chromedriver: install Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_the_report_works_in_a_headless_browser(run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run_dir, tree = run
    browser = _browser()
    try:
        browser.get((run_dir / "report.html").resolve().as_uri())
        nodes = browser.find_elements(By.CSS_SELECTOR, "#tree .tree-node")
        assert len(nodes) == len(tree)
        assert not browser.find_element(By.ID, "node-2").is_displayed()
        browser.find_element(By.ID, "tree-node-2").click()
        detail = browser.find_element(By.ID, "node-2")
        assert detail.is_displayed() and detail.find_elements(By.CSS_SELECTOR, "svg.block-drawing .block-node")
        trial = tree.get(2).trial
        transcript = browser.find_element(By.CSS_SELECTOR, f'.transcript[data-trial="{trial}"]')
        assert transcript.is_displayed()
        messages = transcript.find_elements(By.CSS_SELECTOR, ".msg")
        assert {m.get_attribute("data-role") for m in messages} >= {"Proposer", "Modifier", "Reflector"}
        Select(browser.find_element(By.ID, "role-filter")).select_by_value("Reflector")
        shown = [m for m in messages if m.is_displayed()]
        assert shown and all(m.get_attribute("data-role") == "Reflector" for m in shown)
        assert len(shown) < len(messages)
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        shot = tmp_path / "report.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        browser.quit()


def test_mlflow_tracking_records_per_trial_metrics_and_the_best_block(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from agents.tracking import RUN_DIR_TAG

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    summary, tree, _ = run_loop(run_dir, NB201 + ["trials=3", "export=true", "tracking=mlflow",
                                                  f"tracking.uri={uri}", "tracking.experiment=test"])
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("test")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.tags[RUN_DIR_TAG] == str(run_dir.resolve())
    assert run.data.params["trials"] == "3" and run.data.params["dataset.name"] == "cifar100"
    history = client.get_metric_history(run.info.run_id, "valid_acc")
    by_step = {m.step: m.value for m in history}
    nodes = {n.trial: n for n in tree.nodes if n.trial and n.status == "trained"}
    assert by_step == pytest.approx({t: n.valid_acc for t, n in nodes.items()})
    assert {m.step for m in client.get_metric_history(run.info.run_id, "tokens")} == {1, 2, 3}
    assert run.data.metrics["best_valid_acc"] == pytest.approx(summary.best_valid_acc)
    best = [a.path for a in client.list_artifacts(run.info.run_id, "best")]
    assert "best/block.txt" in best and any(p.endswith(".py") for p in best), best
    assert "report.html" in [a.path for a in client.list_artifacts(run.info.run_id)]
    # the exported model carries the normalisation it was trained with (CIFAR-100's NB201 constants)
    from training.datasets import input_normalization

    mean, std = input_normalization("cifar100")
    source = (run_dir / "best" / "model.py").read_text()
    assert f"MEAN = {tuple(round(m, 6) for m in mean)!r}" in source and "def normalize(x" in source
    namespace: dict = {}
    exec(compile(source, "model.py", "exec"), namespace)  # our own generated source, not model text
    import torch

    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(namespace["normalize"](x)[:, 0], (x[:, 0] - mean[0]) / std[0])


def test_a_report_for_a_run_with_only_its_tree(run, tmp_path):
    """A run made before reports (or stopped early) has a tree and little else: the page still draws."""
    from agents.report import main

    run_dir, tree = run
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(run_dir / "tree.json", old / "tree.json")
    assert main([str(old)]) == 0
    html = (old / "report.html").read_text()
    assert html.count('class="tree-node ') == len(tree) and "the run has not finished" in html
    assert main([str(tmp_path / "nothing")]) == 2
