"""launcher=ray (issue 13) on a local Ray cluster of 2 CPUs: trainings as Ray tasks, the dataset in
the object store once, a killed worker or a training past its limit as a failed trial, a run that
goes on, and a clear error naming the extra when Ray is missing."""
from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
import torch
import torch.nn as nn

from agents.config import ConfigError, validate_config
from scripted_clients import run_loop
from test_training_launchers import QUICK, small_model, write_tiny_cifar10
from training.evaluators import TrainEvaluator
from training.launchers import InProcessLauncher, make_launcher
from training.ray_launcher import RayMissingError, import_ray
from training.trials import TrialSpec

RUN = ["designer=random", "trainer.epochs=1", "trainer.subset=300", "memory.embedder=hashing", "export=false",
       "progress=false", "proxies.names=[]", "launcher.name=ray"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    # Tasks unpickle this module's models by reference: the workers need the tests folder on their path.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                                       str(Path(__file__).parents[1])])}})
    yield
    ray.shutdown()


class _Stuck(nn.Module):
    """Stays inside its first forward until killed (bounded, so a broken test cannot hang CI)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        time.sleep(300)
        return x.flatten(1)[:, :10] * self.w


def stuck_model() -> nn.Module:
    return _Stuck()


def _kill_when_it_starts(worker_json: Path, killed: list[int]) -> threading.Thread:
    """Kills the trial's worker as soon as the launcher has recorded where it runs."""

    def watch():
        for _ in range(60_000):
            if worker_json.is_file():
                pid = json.loads(worker_json.read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.01)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_trainings_run_as_tasks_with_the_dataset_put_once(tmp_path):
    root = write_tiny_cifar10(tmp_path / "data")
    specs = [TrialSpec(functools.partial(small_model, w, 3), dataset="cifar10", root=root, profile=QUICK, seed=0,
                       trial_id=f"t{w}", out=str(tmp_path / f"t{w}" / "train.json")) for w in (3, 4)]
    launcher = make_launcher("ray", evaluator=TrainEvaluator(progress=False), threads=1)
    res = launcher.run(specs)
    assert [r.trial_id for r in res] == ["t3", "t4"] and all(r.ok for r in res), [r.reason for r in res]
    assert len(launcher._data) == 1  # one dataset, one object in the store, read by both tasks
    where = json.loads((tmp_path / "t3" / "worker.json").read_text())
    assert where["pid"] != os.getpid()  # trained in a Ray worker, not here
    torch.set_num_threads(1)
    here = InProcessLauncher(evaluator=TrainEvaluator(progress=False)).run([specs[0]])[0]
    assert [m.train_loss for m in here.epochs] == [m.train_loss for m in res[0].epochs]


def test_a_killed_worker_is_a_failed_trial_and_the_cluster_goes_on(tmp_path):
    root = write_tiny_cifar10(tmp_path / "data")
    out = tmp_path / "stuck" / "train.json"
    spec = TrialSpec(stuck_model, dataset="cifar10", root=root, profile=QUICK, trial_id="stuck", out=str(out))
    killed: list[int] = []
    watcher = _kill_when_it_starts(out.with_name("worker.json"), killed)
    launcher = make_launcher("ray", evaluator=TrainEvaluator(progress=False), threads=1)
    res = launcher.run([spec])[0]
    watcher.join(5)
    assert killed and res.status == "failed"
    assert res.reason.startswith("Ray worker or node failed:") and "WorkerCrashedError" in res.reason, res.reason
    assert json.loads(out.read_text())["reason"] == res.reason  # on disk too, like any result
    ok = launcher.run([TrialSpec(functools.partial(small_model, 3, 3), dataset="cifar10", root=root, profile=QUICK,
                                 trial_id="after")])[0]
    assert ok.ok, ok.reason


def test_a_task_past_its_time_limit_is_cancelled_and_failed(tmp_path):
    root = write_tiny_cifar10(tmp_path / "data")
    spec = TrialSpec(stuck_model, dataset="cifar10", root=root, profile=QUICK, trial_id="slow", time_limit_s=1.0)
    res = make_launcher("ray", evaluator=TrainEvaluator(progress=False), threads=1, grace_s=1.0).run([spec])[0]
    assert res.status == "failed" and "time limit of 1s exceeded; Ray task cancelled" in res.reason, res.reason


def test_a_run_through_ray(tmp_path):
    summary, tree, run_dir = run_loop(tmp_path / "run", RUN + ["trials=3", "parallel=2", "launcher.threads=1"])
    assert summary.trials == 3 and {n.trial for n in tree.nodes if n.trial} == {1, 2, 3}
    trained = [n for n in tree.nodes if n.status == "trained"]
    assert len(trained) == 4, [(n.trial, n.status, n.reason) for n in tree.nodes]  # the root and 3 trials
    for t in (1, 2, 3):
        where = json.loads((run_dir / "trials" / f"{t:04d}" / "worker.json").read_text())
        assert where["pid"] != os.getpid()


def test_a_run_goes_on_when_a_ray_worker_dies_mid_training(tmp_path):
    run_dir = tmp_path / "run"
    killed: list[int] = []
    # trial 1's worker is killed as soon as the launcher records where it runs (its training, 3
    # epochs, a second or more, cannot finish within the watcher's 10 ms poll); trial 2 then trains
    watcher = _kill_when_it_starts(run_dir / "trials" / "0001" / "worker.json", killed)
    summary, tree, _ = run_loop(run_dir, RUN + ["trials=2", "trainer.epochs=3", "trainer.subset=200",
                                                "launcher.threads=1"])
    watcher.join(5)
    by_trial = {n.trial: n for n in tree.nodes if n.trial}
    assert killed and summary.trials == 2 and set(by_trial) == {1, 2}
    assert by_trial[1].status == "failed" and by_trial[1].reason.startswith("Ray worker or node failed"), by_trial[1]
    assert by_trial[2].status == "trained" and (run_dir / "summary.json").is_file()  # the run went on and finished


def test_launcher_ray_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is not installed
    with pytest.raises(RayMissingError, match=r'pip install "\.\[ray\]"'):
        import_ray()
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from conftest import ROOT

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["launcher.name=ray"])
    with pytest.raises(ConfigError, match=r'launcher.*pip install "\.\[ray\]"'):
        validate_config(OmegaConf.to_container(cfg, resolve=True))
