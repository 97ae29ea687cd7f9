"""Trials side by side (`parallel=K`, issue 13): every trial number once, no result lost, the policy
sees the trials in flight, trials overlap, and a run with K=1 is the run it always was."""
import asyncio
import json
from pathlib import Path

import pytest

from agents.offline.client import OfflineDesignerClient
from conftest import ROOT
from graphs.search import select, with_in_flight
from graphs.space import make_space
from graphs.tree import ModificationTree
from scripted_clients import run_loop

TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"
NB201 = ["space=nb201", "evaluator.name=nb201_table", f"evaluator.table={TABLE}", "evaluator.out_of_space=skip",
         "dataset=cifar100", "memory.embedder=hashing", "export=false", "progress=false", "proxies.names=[]"]

pytestmark = pytest.mark.skipif(not TABLE.is_file(), reason="the shared NB201 table is not beside the checkout")


class SlowClient(OfflineDesignerClient):
    """The offline designer, with every model call taking a little while (an awaited sleep)."""

    async def create(self, messages, **kwargs):
        await asyncio.sleep(0.05)
        return await super().create(messages, **kwargs)


def _timeline(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "timeline.jsonl").read_text().splitlines()]


def _overlapping_pairs(lines: list[dict]) -> int:
    return sum(1 for i, a in enumerate(lines) for b in lines[i + 1:]
               if a["started"] < b["ended"] and b["started"] < a["ended"])


@pytest.mark.parametrize("designer", ["team", "random"])
def test_parallel_2_runs_every_trial_once_and_loses_nothing(tmp_path, designer):
    summary, tree, run_dir = run_loop(tmp_path / "run", NB201 + [f"designer={designer}", "trials=8", "parallel=2"])
    assert {n.trial for n in tree.nodes if n.trial} == set(range(1, 9)) and summary.trials == 8
    lines = _timeline(run_dir)
    assert sorted(line["trial"] for line in lines) == list(range(1, 9))
    for line in lines:  # each line names the node its trial ended with, and that node is that trial's
        assert tree.get(line["node"]).trial == line["trial"]
        assert (run_dir / "trials" / f"{line['trial']:04d}" / "metrics.json").is_file()
    assert ModificationTree.load(run_dir / "tree.json") == tree
    # no design evaluated twice, though two trials designed at once: a trial whose design another
    # trial in flight took designs again, and ends with a design of its own
    space = make_space("nb201")
    evaluated = [space.arch_of(tree.block_of(n.id)) for n in tree.nodes if n.status == "trained"]
    assert len(set(evaluated)) == len(evaluated) == 9
    assert {line["status"] for line in lines} == {"trained"}
    assert _overlapping_pairs(lines) >= 4  # two at a time: each trial overlaps the one beside it


def test_slow_model_calls_overlap_across_trials(tmp_path):
    client = ["llm.client._target_=test_parallel.SlowClient"]
    _, _, one = run_loop(tmp_path / "one", NB201 + client + ["trials=4", "parallel=1"])
    _, _, two = run_loop(tmp_path / "two", NB201 + client + ["trials=4", "parallel=2"])
    assert _overlapping_pairs(_timeline(one)) == 0
    assert _overlapping_pairs(_timeline(two)) >= 2
    # the calls of different trials interleave in the usage journal when trials run side by side
    calls = [json.loads(line) for line in (two / "usage.jsonl").read_text().splitlines()]
    order = [c["trial"] for c in calls if "trial" in c]
    switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
    assert switches > len({*order}) - 1


def test_parallel_1_is_the_run_it_always_was(tmp_path):
    _, a, _ = run_loop(tmp_path / "a", NB201 + ["trials=6", "seed=2"])
    _, b, _ = run_loop(tmp_path / "b", NB201 + ["trials=6", "seed=2", "parallel=1"])
    strip = lambda t: [(n.id, n.parent, n.trial, n.block, n.status) for n in t.nodes]  # noqa: E731
    assert strip(a) == strip(b)


def test_the_policy_sees_trials_in_flight():
    from graphs.nb201 import arch_to_block

    tree = ModificationTree()
    tree.root(str(arch_to_block("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")),
              metrics={"valid_acc": 60.0})
    child = tree.add(0, str(arch_to_block("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")),
                     metrics={"valid_acc": 65.0}, trial=1)
    assert select(tree, "dfs").id == child.id  # the unexpanded improving child
    view = with_in_flight(tree, [child.id])
    assert len(view) == 3 and len(tree) == 2  # the trial in flight is a pending child in a view; the tree is unchanged
    assert view.children(child.id)[0].status == "pending"
    # dfs may go on deepening a node being expanded (NADER's walk), until the node is full
    assert select(view, "dfs").id == child.id
    assert select(tree, "dfs", max_children=1).id == child.id
    assert select(view, "dfs", max_children=1).id == 0
    assert select(tree, "greedy", max_children=1).id == child.id
    assert select(view, "greedy", max_children=1).id == 0


def test_a_fork_adopted_after_another_gets_the_next_ids():
    from graphs.nb201 import arch_to_block

    tree = ModificationTree()
    tree.root(str(arch_to_block("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")), metrics={"valid_acc": 1.0})
    a, b = tree.fork(), tree.fork()
    na = a.add(0, str(arch_to_block("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")), trial=1,
               metrics={"valid_acc": 2.0})
    nb = b.add(0, str(arch_to_block("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")), trial=2,
               metrics={"valid_acc": 3.0})
    b.add(nb.id, str(arch_to_block("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")), trial=2,
          status="duplicate", duplicate_of=nb.id)
    assert na.id == nb.id == 1
    assert tree.adopt(b, 1) == {1: 1, 2: 2}
    assert tree.adopt(a, 1) == {1: 3}
    assert [n.trial for n in tree.nodes] == [None, 2, 2, 1] and tree.get(2).duplicate_of == 1 and tree.get(2).parent == 1


def test_kill_9_with_trials_in_flight_then_resume_runs_each_trial_once(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    args = [sys.executable, str(ROOT / "main.py"), *NB201, "llm.client._target_=test_parallel.SlowClient", "trials=6",
            "parallel=3", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "HYDRA_FULL_ERROR": ""}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    for line in proc.stderr:  # the first result is in; the other trials are still in flight
        if "-> trial" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    before = _timeline(run_dir)
    assert proc.returncode == -signal.SIGKILL and 1 <= len(before) < 6
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    tree = ModificationTree.load(run_dir / "tree.json")
    lines = _timeline(run_dir)
    assert sorted(line["trial"] for line in lines) == list(range(1, 7))  # each trial's result once, none lost
    assert {n.trial for n in tree.nodes if n.trial} == set(range(1, 7))
    assert [line["trial"] for line in lines[:len(before)]] == [line["trial"] for line in before]


def test_a_trial_past_its_time_limit_is_a_failed_trial(tmp_path):
    summary, tree, _ = run_loop(tmp_path / "run", ["designer=random", "trainer.epochs=2", "trainer.subset=300",
                                                   "memory.embedder=hashing", "export=false", "progress=false",
                                                   "proxies.names=[]", "trials=2", "launcher.time_limit_s=0.001"])
    assert tree.get(0).status == "trained"  # the root is the reference: it has no limit
    trials = [n for n in tree.nodes if n.trial]
    assert summary.trials == 2 and [n.status for n in trials] == ["failed", "failed"]
    assert all(n.reason.startswith("time limit of 0.001s exceeded") for n in trials), [n.reason for n in trials]


def test_auto_time_limit_and_threads_follow_the_root_and_the_trials_in_flight(tmp_path):
    import io

    import torch
    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from agents.factory import make_trainer, root_block_text
    from tools.training_tools import TrainArgs
    from training.launchers import AUTO_LIMIT_FLOOR_S, auto_time_limit, default_threads

    assert auto_time_limit(None) is None and auto_time_limit(2.0) == AUTO_LIMIT_FLOOR_S
    assert auto_time_limit(100.0, in_flight=2) == 1000.0 and default_threads(4, cores=16) == 4
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["trainer.epochs=1", "trainer.subset=300", "progress=false",
                                                       "parallel=2", "launcher.threads=1"])
    out = io.StringIO()
    before = torch.get_num_threads()
    try:
        train = make_trainer(cfg, tmp_path, console=Console(file=out, width=200))
        assert torch.get_num_threads() == 1  # launcher.threads, for trainings in this process
        block = root_block_text(cfg)
        root = train(TrainArgs(block=block, trial=0))
        child = train(TrainArgs(block=block, trial=1))
    finally:
        torch.set_num_threads(before)
    assert root["status"] == child["status"] == "ok"
    expected = auto_time_limit(root["wall_time_s"], in_flight=2)
    assert f"training the design of trial 1 (limit {expected:.0f} s)" in out.getvalue()


def test_a_budget_cap_stops_new_trials_and_lets_those_in_flight_finish(tmp_path):
    summary, tree, run_dir = run_loop(tmp_path / "run", NB201 + ["trials=10", "parallel=3", "budget.max_tokens=30000"])
    lines = _timeline(run_dir)
    # three started together; the first result passed the cap, so no fourth started, and the two
    # others in flight still finished and were kept
    assert sorted(line["trial"] for line in lines) == [1, 2, 3] and summary.trials == 3
    assert summary.stopped and summary.stopped.startswith("budget.max_tokens reached")
    assert {n.trial for n in tree.nodes if n.trial} == {1, 2, 3}


class GatedClient(OfflineDesignerClient):
    """The offline designer, whose calls wait until the file $GATE exists (a run held mid-trial)."""

    async def create(self, messages, **kwargs):
        import os

        gate = Path(os.environ["GATE"])
        for _ in range(6000):
            if gate.exists():
                break
            await asyncio.sleep(0.05)
        return await super().create(messages, **kwargs)


def test_progress_lines_say_what_each_trial_in_flight_is_doing(tmp_path):
    import io
    import re

    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from agents.factory import build_run

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=NB201 + ["trials=4", "parallel=2"])
    out = io.StringIO()
    asyncio.run(build_run(cfg, tmp_path / "run", Console(file=out, width=300))())
    stages = re.findall(r"^  trial (\d+) \(node (\d+)\): (\w+)", out.getvalue(), flags=re.M)
    lines = {line["trial"]: line for line in _timeline(tmp_path / "run")}
    for t in range(1, 5):
        mine = [(int(p), s) for n, p, s in stages if int(n) == t]
        assert {s for _, s in mine} >= {"Proposer", "Modifier", "Reflector", "training"}, mine
        assert {p for p, _ in mine} == {lines[t]["parent"]}  # the node it started from
    assert "[in flight: " in out.getvalue()  # with the other trial's stage beside it


def test_run_progress_live_and_plain():
    import io

    from rich.console import Console

    from agents.progress import RunProgress, is_live

    term = Console(file=io.StringIO(), force_terminal=True, width=200)
    pipe = Console(file=io.StringIO(), width=200)
    assert is_live(None, term) and not is_live(None, pipe) and is_live(True, pipe) and not is_live(False, term)
    live = RunProgress(term, live=True, parallel=2)
    live.begin(total=4, done=1)
    live.started(2, 0)
    live.started(3, 1)
    live.stage(3, "Modifier: validator round 2")
    live.epoch(2, 3, 8)  # from the trainer
    assert [t.description for t in live._bar.tasks] == ["trials", "  trial 2 (node 0): training, epoch 3/8",
                                                       "  trial 3 (node 1): Modifier: validator round 2"]
    assert (live._bar.tasks[1].completed, live._bar.tasks[1].total) == (3, 8)
    live.finished(2)
    assert live._bar.tasks[0].completed == 2 and len(live._bar.tasks) == 2
    live.close()
    assert "2/4" in term.file.getvalue() and "ETA" in term.file.getvalue()
    plain = RunProgress(pipe, live=False, parallel=2)
    plain.begin(total=4, done=0)
    plain.started(1, 0)
    plain.started(2, 0)
    plain.stage(1, "Proposer")
    plain.stage(2, "training")
    plain.stage(2, "training")  # no change, no line
    assert pipe.file.getvalue().splitlines() == ["  trial 1 (node 0): Proposer",
                                                 "  trial 2 (node 0): training  [in flight: 1 Proposer]"]
