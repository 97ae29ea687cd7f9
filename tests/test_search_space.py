"""Search inside the NB201 cell space, end to end on the shared NB201 table (no training): every
designer stays in the space and never evaluates a candidate twice; a repeated or out-of-space
draft goes back to the Modifier with a typed error and its fix is accepted."""
from pathlib import Path

import pytest

from conftest import ROOT
from graphs.nb201 import arch_to_block
from graphs.space import make_space, set_cell_edge
from scripted_clients import records, run_loop, texts

TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"
NB201 = ["space=nb201", "evaluator.name=nb201_table", f"evaluator.table={TABLE}", "evaluator.out_of_space=skip",
         "dataset=cifar100", "memory.embedder=hashing", "export=false", "progress=false",
         "proxies.names=[]"]

pytestmark = pytest.mark.skipif(not TABLE.is_file(), reason="the shared NB201 table is not beside the checkout")


def run(tmp_path: Path, overrides: list[str]):
    return run_loop(tmp_path / "run", NB201 + overrides)


def validations(run_dir: Path, trial: int) -> list[dict]:
    """Every validate_block result of the trial, in order."""
    return [call["content"] for r in records(run_dir, trial) if r["type"] == "ToolCallExecutionEvent"
            for call in r["content"] if call.get("result") == "validate_block"]


@pytest.mark.parametrize("designer", ["team", "random", "rea"])
def test_each_designer_runs_20_distinct_in_space_trials_on_the_table(tmp_path, designer):
    summary, tree, _ = run(tmp_path, [f"designer={designer}", "trials=20", "seed=3"])
    space = make_space("nb201")
    trials = [n for n in tree.nodes if n.trial]
    assert len(trials) == 20
    assert [n for n in trials if n.status != "trained"] == []  # none out of space, invalid or repeated
    assert all(space.contains(tree.block_of(n.id)) for n in tree.nodes)
    arches = {space.arch_of(tree.block_of(n.id)) for n in tree.nodes}
    assert len(arches) == 21  # the root and 20 different cells (canonical arch strings)
    assert all(n.metrics.get("evaluator") == "nb201_table" or n.metrics.get("profile", "").startswith("nb201-table")
               for n in trials)


def scripted(scenario: str) -> list[str]:
    return [f"+llm.client.scenario={scenario}", "llm.client._target_=scripted_clients.ScriptedModifierClient",
            "~llm.client.fault_rate"]


def test_a_repeated_design_is_returned_as_a_duplicate_and_the_second_try_is_evaluated(tmp_path):
    summary, tree, run_dir = run(tmp_path, scripted("nb201_repeat_then_new") + ["trials=1"])
    checks = validations(run_dir, 1)
    first = checks[0]
    assert not first["valid"] and [e["code"] for e in first["errors"]] == ["duplicate_candidate"]
    assert "node 0" in first["errors"][0]["message"]  # the earlier candidate it repeats: the root
    revise = [t for t in texts(records(run_dir, 1), "Reflector") if t.startswith("REVISE")]
    assert revise and "duplicate_candidate" in revise[0]
    assert checks[-1]["valid"]
    node = tree.get(1)
    assert node.status == "trained"
    # the task shows the root as its class's first member, the form set_cell_edge edits
    space = make_space("nb201")
    shown = space.arch_of(arch_to_block(space.root_arch))
    assert space.arch_of(tree.block_of(1)) == set_cell_edge(shown, "2<-0", "nor_conv_1x1")


def test_an_out_of_space_draft_names_its_node_and_the_fix_is_accepted(tmp_path):
    summary, tree, run_dir = run(tmp_path, scripted("nb201_outside_then_fixed") + ["trials=1"])
    first = validations(run_dir, 1)[0]
    assert not first["valid"]
    outside = [e for e in first["errors"] if e["code"] == "out_of_space"]
    assert outside and outside[0]["node"] == 3 and "kernel_size" in outside[0]["message"]
    assert any(t.startswith("APPROVE") for t in texts(records(run_dir, 1), "Reflector"))
    node = tree.get(1)
    assert node.status == "trained"
    space = make_space("nb201")  # node 3, the first 3x3 conv of the root, became a 1x1 conv
    fixed = set_cell_edge(space.root_arch, "1<-0", "nor_conv_1x1")
    assert space.arch_of(tree.block_of(1)) == space.arch_of(arch_to_block(fixed))


def test_a_repeat_that_survives_the_rounds_is_not_evaluated_again(tmp_path):
    """The Modifier keeps the parent's design: the trial ends as a duplicate of the root, and the
    evaluator is never called for it."""
    summary, tree, run_dir = run(tmp_path, scripted("no_change") + ["trials=1", "max_rounds=2"])
    node = tree.get(1)
    assert node.status == "duplicate" and node.duplicate_of == 0
    assert not (run_dir / "trials" / "0001" / "train.json").exists()
