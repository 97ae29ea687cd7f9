"""The design team end to end: scripted and failing model clients, real tools, real training
(one tiny epoch on digits), real memory (Qdrant embedded, hashing embedder)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.factory import DEFAULT_ROOTS
from agents.protocol import verdict
from conftest import ROOT
from graphs.tree import ModificationTree
from scripted_clients import records, run_loop, texts

FAST = ["trainer.epochs=1", "trainer.subset=300", "memory.embedder=hashing", "export=false", "progress=false"]


pytestmark = pytest.mark.usefixtures("one_thread")


def run(tmp_path: Path, overrides: list[str]):
    root = tmp_path / "root.txt"
    root.write_text(DEFAULT_ROOTS["nader"])
    return run_loop(tmp_path / "run", FAST + [f"root_block={root}"] + overrides)


def experience(run_dir: Path):
    from tools.memory import MemoryConfig, open_memory

    return open_memory(MemoryConfig(path=str(run_dir / "memory"), embedder="hashing", load_starter=False))


def scripted(scenario: str) -> list[str]:
    return [f"+llm.client.scenario={scenario}", "llm.client._target_=scripted_clients.ScriptedModifierClient",
            "~llm.client.fault_rate"]


@pytest.mark.slow
def test_invalid_first_submission_is_repaired_trained_and_remembered(tmp_path):
    summary, tree, run_dir = run(tmp_path, scripted("fix_then_valid") + ["trials=2"])
    first = records(run_dir, 1)
    # The validator's arity error reaches the Modifier (its own check) and the Reflector (review).
    assert any("arity" in t for t in texts(first, "Modifier", "ToolCallExecutionEvent"))
    revise = [t for t in texts(first, "Reflector") if t.startswith("REVISE")]
    assert revise and "[arity]" in revise[0] and "node 20" in revise[0]
    assert any(t.startswith("APPROVE") for t in texts(first, "Reflector"))
    node = tree.get(1)
    assert node.status == "trained" and node.valid_acc is not None and node.test_acc is not None
    assert "20:Add" in node.block
    with experience(run_dir) as mem:
        fixes = [r for r in mem.experience.all() if r.type == "fix"]
        assert fixes and fixes[0].error_code == "arity" and fixes[0].trial == 1
        assert mem.experience.count("failure") >= 1
        assert mem.experience.count("success") + mem.experience.count("regression") >= 1
        fix_id = str(fixes[0].id)
    second = records(run_dir, 2)
    retrieved = [r for r in second if r["role"] == "Reflector" and r["type"] == "ToolCallExecutionEvent"]
    assert fix_id in json.dumps(retrieved[0]["content"])
    advice = texts(second, "Reflector")[0]
    assert advice.startswith("ADVICE") and f"Experience {fix_id}:" in advice
    assert summary.trials == 2


def test_five_failed_rounds_make_an_invalid_node_and_the_run_goes_on(tmp_path):
    summary, tree, run_dir = run(tmp_path, scripted("always_invalid") + ["trials=2"])
    node = tree.get(1)
    assert node.status == "invalid"
    assert [e.code for e in node.errors] == ["arity"] and node.errors[0].node == 20
    assert len(texts(records(run_dir, 1), "Modifier")) == 5
    assert any(t.startswith("REJECT") for t in texts(records(run_dir, 1), "Reflector"))
    assert not (run_dir / "trials" / "0001" / "train.json").exists()
    assert tree.get(2).trial == 2 and tree.get(2).status in ("trained", "duplicate", "invalid")


def test_max_rounds_2_stops_the_offline_team_after_2_fix_rounds(tmp_path):
    """A Modifier that never fixes its draft: the run's max_rounds reaches the offline Reflector,
    which rejects at its second review."""
    summary, tree, run_dir = run(tmp_path, scripted("always_invalid") + ["trials=1", "max_rounds=2"])
    log = records(run_dir, 1)
    reviews = texts(log, "Reflector")[1:]  # the first Reflector reply is its advice on the plan
    assert len(texts(log, "Modifier")) == 2 and [verdict(t) for t in reviews] == ["REVISE", "REJECT"]
    assert "still invalid after 2 rounds" in reviews[-1]
    assert tree.get(1).status == "invalid" and tree.get(1).reason.endswith("after 2 rounds")


def test_isomorphic_design_is_a_duplicate_and_not_trained(tmp_path):
    summary, tree, run_dir = run(tmp_path, scripted("no_change") + ["trials=1"])
    node = tree.get(1)
    assert node.status == "duplicate" and node.duplicate_of == 0
    assert node.valid_acc == tree.get(0).valid_acc
    assert not (run_dir / "trials" / "0001" / "train.json").exists()
    assert any("isomorphic to node 0" in t for t in texts(records(run_dir, 1), "trial", "TrialEvent"))


@pytest.mark.slow
def test_failing_model_client_fails_trials_and_exits_with_a_clear_message(tmp_path):
    root = tmp_path / "root.txt"
    root.write_text(DEFAULT_ROOTS["nader"])
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "main.py", *FAST, f"root_block={root}", "trials=2",
                          "llm.client._target_=scripted_clients.FailingClient", "llm.retry.attempts=2",
                          "llm.retry.initial_s=0.01", "llm.retry.jitter_s=0", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "every trial failed because the model client failed" in res.stderr
    tree = ModificationTree.load(tmp_path / "run" / "tree.json")
    assert [n.status for n in tree.nodes[1:]] == ["failed", "failed"]
    assert all("model service unavailable" in n.reason and "gave up after 2 attempt(s)" in n.reason
               for n in tree.nodes[1:])


@pytest.mark.slow
def test_researcher_command_on_small_cifar10_files(tmp_path):
    from test_training_datasets import write_cifar10

    data = tmp_path / "data"
    write_cifar10(data, per_batch=40, n_test=40)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "main.py", "dataset=cifar10", f"dataset.root={data}", "trials=2",
                          "trainer=smoke", "trainer.epochs=2", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    tree = ModificationTree.load(tmp_path / "run" / "tree.json")
    assert len(tree) == 3 and tree.get(0).metrics["dataset"] == "cifar10"
    assert all(n.status in ("trained", "duplicate", "invalid", "failed") for n in tree.nodes[1:])
    trained = [n for n in tree.nodes if n.status == "trained"]
    assert trained and all(n.metrics["split_seed"] == 0 and n.test_acc is not None for n in trained)
    assert (tmp_path / "run" / "trials" / "0002" / "transcript.md").exists()


def test_reader_is_wired_and_adds_inspirations_from_a_paper(tmp_path):
    paper = tmp_path / "paper.txt"
    paper.write_text("Gated Shortcuts for Small Convolutional Blocks\n\n"
                     "We propose to gate the residual branch with a channel attention module computed from globally "
                     "pooled features. It improves accuracy at a small cost.\n")
    summary, tree, run_dir = run(tmp_path, [f"read={paper}", "trials=1"])
    assert records(run_dir, 1)  # the trial still runs after the Reader
    log_path = run_dir / "reader" / "00-gated-shortcuts-for-small-convolutional-blocks" / "chunk000" / "attempt1"
    log = [json.loads(x) for x in (log_path / "transcript.jsonl").read_text().splitlines()]
    calls = [c for r in log if r["role"] == "Reader" and r["type"] == "ToolCallRequestEvent" for c in r["content"]]
    assert [c["call"] for c in calls] == ["add_inspiration"]
    assert "gate the residual branch" in calls[0]["arguments"]["text"]
    with experience(run_dir) as mem:
        hits = mem.knowledge.search("gate the residual branch with channel attention from pooled features", k=1)
        assert hits[0].source == "Gated Shortcuts for Small Convolutional Blocks" and hits[0].page == 1
    assert any(line.startswith("Reader: 1 paper(s) read") for line in summary.usage_lines)


def test_best_design_is_saved_with_source_and_weights_that_load(tmp_path):
    import importlib.util

    import torch

    summary, tree, run_dir = run(tmp_path, ["trials=1"])
    best = run_dir / "best"
    meta = json.loads((best / "metrics.json").read_text())
    assert meta["node"] == summary.best_node and (best / "block.txt").read_text() == tree.get(meta["node"]).block
    spec = importlib.util.spec_from_file_location("best_model", best / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.build_model()
    net.load_state_dict(torch.load(best / "weights.pt"))  # strict: every key and shape matches
    assert net.eval()(torch.zeros(2, 3, 8, 8)).shape == (2, 10)
