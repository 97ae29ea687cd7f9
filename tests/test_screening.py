"""Proxy scores in every trial and screening (issue 12): with screen.k=K each trial gathers K distinct
valid designs, scores them, trains only the best by the screening proxy and keeps the others as
`screened` nodes with their scores; the run's summary says how well each proxy ordered the trained
nodes."""
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from graphs.nb201 import arch_to_block
from graphs.space import make_space
from graphs.tree import ModificationTree
from scripted_clients import records, run_loop
from training.screening import ProxyScorer, best_by, correlation_lines, run_correlations

TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"
NB201 = ["space=nb201", "evaluator.name=nb201_table", f"evaluator.table={TABLE}", "evaluator.out_of_space=skip",
         "dataset=cifar100", "memory.embedder=hashing", "export=false", "progress=false"]
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def _by_trial(tree: ModificationTree) -> dict[int, list]:
    out: dict[int, list] = {}
    for n in tree.nodes:
        if n.trial:
            out.setdefault(n.trial, []).append(n)
    return out


@pytest.mark.skipif(not TABLE.is_file(), reason="the shared NB201 table is not beside the checkout")
@pytest.mark.parametrize("designer", ["team", "random"])
def test_screening_k3_trains_one_design_per_trial_and_keeps_two_screened_with_scores(tmp_path, designer):
    summary, tree, run_dir = run_loop(tmp_path / "run", NB201 + [
        f"designer={designer}", "trials=4", "screen.k=3", "screen.proxy=synflow", "proxies.names=[synflow,params]"])
    assert summary.trials == 4
    trials = _by_trial(tree)
    assert sorted(trials) == [1, 2, 3, 4]
    archs = set()
    for trial, nodes in trials.items():
        trained = [n for n in nodes if n.status == "trained"]
        screened = [n for n in nodes if n.status == "screened"]
        assert len(trained) == 1 and len(screened) == 2, (trial, [(n.id, n.status, n.reason) for n in nodes])
        best = trained[0].metrics["proxies"]["synflow"]
        for n in screened:
            s = n.metrics["proxies"]
            assert set(s) == {"synflow", "params"} and s["synflow"] is not None
            assert s["synflow"] <= best  # the trained one is the best of its trial by the proxy
            assert n.valid_acc is None and "screened out by synflow" in n.reason and f"the design trial {trial} trained" in n.reason
            assert n.params == s["params"]  # scored as fitted to the budget
        archs |= {make_space("nb201").arch_of(tree.block_of(n.id)) for n in trained + screened}
        # the trial's files name the others; the transcript shows the choice
        saved = json.loads((run_dir / "trials" / f"{trial:04d}" / "metrics.json").read_text())
        assert saved["node"] == trained[0].id
        assert sorted(o["node"] for o in saved["other_nodes"] if o["status"] == "screened") == sorted(n.id for n in screened)
        notes = [r["content"] for r in records(run_dir, trial) if r["role"] == "screen"]
        assert len(notes) == 1 and notes[0].startswith("3 candidates by synflow")
    assert len(archs) == 12  # every candidate distinct, across trials too
    assert summary.statuses == {"trained": 4, "screened": 8}
    corr = json.loads((run_dir / "summary.json").read_text())["proxy_correlations"]
    assert set(corr) == {"synflow", "params"} and corr["synflow"]["n"] == 5  # the root and 4 trained


@pytest.mark.skipif(not TABLE.is_file(), reason="the shared NB201 table is not beside the checkout")
def test_without_screening_every_trained_node_has_its_scores_and_none_is_screened(tmp_path):
    summary, tree, run_dir = run_loop(tmp_path / "run", NB201 + ["designer=random", "trials=3", "proxies.names=[params]"])
    assert "screened" not in summary.statuses and summary.trials == 3
    for n in tree.nodes:
        assert n.status == "trained" and n.metrics["proxies"] == {"params": float(n.params)}
        assert n.metrics["proxy_data"] == "input shape only"


@pytest.mark.skipif(not TABLE.is_file(), reason="the shared NB201 table is not beside the checkout")
def test_no_proxies_means_no_scores_and_no_correlations(tmp_path):
    summary, tree, run_dir = run_loop(tmp_path / "run", NB201 + ["designer=random", "trials=2", "proxies.names=[]"])
    assert all("proxies" not in n.metrics for n in tree.nodes)
    assert json.loads((run_dir / "summary.json").read_text())["proxy_correlations"] == {}


@pytest.mark.slow
def test_screening_in_the_open_space_with_training(tmp_path):
    """The team on digits, trained for real: two designs scored by every default proxy, one trained."""
    summary, tree, run_dir = run_loop(tmp_path / "run", ["trials=1", "screen.k=2", "memory.embedder=hashing",
                                                          "progress=false", "export=false"])
    nodes = _by_trial(tree)[1]
    assert sorted(n.status for n in nodes) == ["screened", "trained"], [(n.status, n.reason) for n in nodes]
    for n in nodes:
        assert set(n.metrics["proxies"]) == {"synflow", "jacob_cov", "grad_norm", "snip", "params", "flops"}
        assert n.metrics["proxy_data"] == "digits training images"
    trained = next(n for n in nodes if n.status == "trained")
    screened = next(n for n in nodes if n.status == "screened")
    assert trained.valid_acc is not None and trained.metrics["evaluator"] == "train"
    assert "evaluator" not in screened.metrics and screened.valid_acc is None  # never trained
    assert tree.nodes[0].metrics["proxies"]["params"] == tree.nodes[0].params  # the root is scored too
    lines = summary.lines()
    assert any(line.startswith("proxy vs validation accuracy") for line in lines)


# ------------------------------------------------------------------------------------- units


def test_scorer_is_deterministic_and_falls_back_to_digits_without_cifar_files(tmp_path):
    s = ProxyScorer(("synflow", "jacob_cov", "grad_norm"), "cifar10", "nb201", data_root=str(tmp_path), batch=8)
    a, b = s(arch_to_block(RESNET)), s(arch_to_block(RESNET))
    assert a.scores == b.scores and a.error is None
    assert "digits" in a.data and "not the cifar10 images" in a.data
    worse = s(arch_to_block("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    better = s(arch_to_block(ALL_CONV))
    assert better.scores["synflow"] > a.scores["synflow"] > (worse.scores["synflow"] or 0.0)


def test_scorer_reads_real_cifar_files_when_they_are_there(tmp_path):
    from test_training_datasets import write_cifar10

    write_cifar10(tmp_path, per_batch=20)
    s = ProxyScorer(("jacob_cov",), "cifar10", "nb201", data_root=str(tmp_path), batch=16, seed=1)
    x, y, source = s.data()
    assert source == f"cifar10 training images from {tmp_path}"
    assert x.shape == (16, 3, 32, 32) and y.dtype == torch.long and int(y.max()) < 10
    assert s(arch_to_block(RESNET)).scores["jacob_cov"] is not None


def test_a_network_that_cannot_be_scored_is_recorded_not_raised():
    s = ProxyScorer(("grad_norm",), "digits", "nb201", batch=4)
    broken = ("##Bad##\n0:input\n1:output\n2:Conv2d(out_channels=2*C,kernel_size=3)\n3:Add\n"
              "0->2\n2,0->3\n3->1\n")  # Add of C and 2C channels: cannot be built
    out = s(broken)
    assert out.scores == {"grad_norm": None} and out.error.startswith("BlockError: [shape_mismatch] node 3")
    assert out.as_metrics()["proxy_error"] == out.error


def test_best_by_follows_the_direction_and_puts_missing_scores_last():
    assert best_by([{"synflow": 1.0}, {"synflow": None}, {"synflow": 3.0}, {"synflow": 3.0}], "synflow") == 2
    assert best_by([{"synflow": None}, {}], "synflow") == 0
    assert best_by([{"params": 5.0}, {"params": 9.0}], "params") == 1  # registered as higher is better
    with pytest.raises(ValueError):
        best_by([], "synflow")


@dataclass
class _Node:
    status: str
    valid_acc: float | None
    metrics: dict


def test_run_correlations_use_trained_nodes_with_a_score():
    nodes = [_Node("trained", a, {"proxies": {"p": s}}) for a, s in [(70, 1.0), (72, 2.0), (71, 3.0), (75, 4.0)]]
    nodes += [_Node("screened", None, {"proxies": {"p": 9.0}}), _Node("trained", 80, {"proxies": {"p": None}})]
    corr = run_correlations(nodes, ["synflow"], bootstrap=0) | run_correlations(nodes, ["p"], bootstrap=50)
    assert corr["synflow"]["n"] == 0 and corr["synflow"]["spearman"] is None
    # ranks of scores 1,2,3,4 against accuracies 70,72,71,75 (ranks 1,3,2,4): rho = 1 - 6*2/(4*15) = 0.8
    assert corr["p"]["n"] == 4 and corr["p"]["spearman"] == pytest.approx(0.8)
    assert corr["p"]["kendall"] == pytest.approx(4 / 6, abs=1e-4)  # 5 concordant, 1 discordant pair
    lines = correlation_lines(corr)
    assert "synflow: 0 trained nodes with a score: too few to rank" in lines[1]
    assert lines[2].startswith("  p: rho +0.80")


def test_a_screened_node_round_trips_and_is_a_repeat_for_later_trials(tmp_path):
    t = ModificationTree()
    root = arch_to_block(RESNET)
    t.root(str(root), metrics={"valid_acc": 70.0})
    cand = arch_to_block(ALL_CONV)
    n = t.add(0, str(cand), status="screened", reason="screened out by synflow: 1 against 2 of the design trial 1 trained",
              metrics={"proxies": {"synflow": 1.0}}, trial=1)
    t.save(tmp_path / "tree.json")
    back = ModificationTree.load(tmp_path / "tree.json")
    assert back == t and back.get(n.id).status == "screened" and back.get(n.id).valid_acc is None
    assert back.find_candidate(cand).id == n.id and back.find_duplicate(cand) is None  # never an original
    assert "screened out, not trained: screened out by synflow" in back.children_summary(0)


def test_a_run_saved_before_screening_existed_resumes_when_screening_is_off():
    from agents.config import result_changes

    saved = {"dataset": {"name": "digits"}, "seed": 0}
    assert result_changes(saved, {**saved, "screen": {"k": 1, "proxy": "synflow"}}) == []
    assert result_changes(saved, {**saved, "screen": {"k": 3, "proxy": "synflow"}}) == ["screen"]
    assert result_changes({**saved, "screen": {"k": 1, "proxy": "synflow"}},
                          {**saved, "screen": {"k": 2, "proxy": "synflow"}}) == ["screen.k"]
