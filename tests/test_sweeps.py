"""Sweeps (issue 13): a joblib multirun runs its jobs in parallel processes and leaves a sweep
summary; the Optuna sweeper maximises the run's best validation accuracy; `python -m agents.sweep`
rewrites the summary; two runs on one local memory path: the second gets a clear error."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"
TABLE_RUN = ["space=nb201", "evaluator.name=nb201_table", f"evaluator.table={TABLE}", "evaluator.out_of_space=skip",
             "dataset=cifar100", "memory.embedder=hashing", "export=false", "progress=false", "proxies.names=[]",
             "designer=random", "trials=3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": ""}

pytestmark = pytest.mark.skipif(not TABLE.is_file(), reason="the shared NB201 table is not beside the checkout")


def _main(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=900)


def test_a_joblib_multirun_of_two_jobs_writes_the_sweep_summary(tmp_path):
    sweep = tmp_path / "sweep"
    p = _main(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", *TABLE_RUN,
               f"hydra.sweep.dir={sweep}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(sweep / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["job"] for r in rows] == ["0", "1"]
    assert sorted(r["overrides"].split()[0] for r in rows) == ["seed=0", "seed=1"]
    for r in rows:
        assert r["status"] == "done" and r["trials"] == "3" and float(r["best_valid_acc"]) > 0
        assert r["by_status"].endswith("trained") and float(r["wall_s"]) >= 0
    index = (sweep / "index.html").read_text()  # each row links the job's report
    assert index.count('class="job"') == 2 and '<a href="0/report.html">' in index and '<a href="1/report.html">' in index
    assert (sweep / "0" / "report.html").is_file() and (sweep / "1" / "report.html").is_file()
    md = (sweep / "summary.md").read_text()
    assert "| 0 | seed=0 |" in md and "| 1 | seed=1 |" in md and "Every job:" in md
    # on demand, from the command line: the same rows
    q = subprocess.run([sys.executable, "-m", "agents.sweep", str(sweep)], capture_output=True, text=True, cwd=ROOT,
                       env=ENV, timeout=300)
    assert q.returncode == 0 and "| 1 | seed=1 |" in q.stdout, q.stderr
    # each job used its own memory store, in its own run directory
    assert (sweep / "0" / "memory").is_dir() and (sweep / "1" / "memory").is_dir()


def test_an_optuna_sweep_maximises_the_best_validation_accuracy(tmp_path):
    sweep = tmp_path / "sweep"
    p = _main(["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.direction=maximize",
               "hydra.sweeper.sampler.seed=0", "seed=range(0,3)", *TABLE_RUN, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    with open(sweep / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all(r["status"] == "done" for r in rows)
    best = max(float(r["best_valid_acc"]) for r in rows)
    assert result["best_value"] == pytest.approx(best, abs=1e-3)  # what main() returned for the best job
    assert result["best_params"]["seed"] in {0, 1, 2}


def test_two_runs_on_one_local_memory_path_the_second_is_told(tmp_path):
    store, gate = tmp_path / "shared-memory", tmp_path / "gate"
    env = {**ENV, "GATE": str(gate), "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    team = [a for a in TABLE_RUN if a != "designer=random"] + [f"memory.path={store}"]
    first = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *team, "llm.client._target_=test_parallel.GatedClient",
                              f"hydra.run.dir={tmp_path / 'first'}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=tmp_path)
    try:
        for line in first.stderr:  # the first run has its store open and waits inside trial 1's first model call
            if line.startswith("trial 1/"):
                break
        second = subprocess.run([sys.executable, str(ROOT / "main.py"), *team, f"hydra.run.dir={tmp_path / 'second'}"],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    finally:
        gate.touch()  # let the first run finish
        rest = first.communicate(timeout=600)[1]
    assert second.returncode == 2, second.stderr[-2000:]
    line = next(x for x in second.stderr.splitlines() if "memory" in x)
    assert str(store) in line and "already open in another client or process" in line and "memory.url" in line
    assert "Traceback" not in second.stderr
    assert first.returncode == 0, rest[-2000:]  # the first run is not disturbed
    assert not (tmp_path / "second" / "tree.json").exists()


def test_a_sweep_plugin_that_is_not_installed_names_the_extra(monkeypatch):
    import main

    monkeypatch.setitem(main.HYDRA_PLUGINS, "hydra/launcher=joblib", ("hydra_plugins.not_installed_here", "sweeps"))
    assert main.missing_plugin(["seed=0,1", "hydra/launcher=joblib"]) == (
        'hydra/launcher=joblib needs a Hydra plugin that is not installed: pip install ".[sweeps]"')
    assert main.missing_plugin(["hydra/sweeper=optuna"]) is None  # installed with the test extra


def test_the_slurm_config_composes_onto_the_submitit_launcher(tmp_path):
    p = _main(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    launcher = yaml.safe_load(p.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["timeout_min"]) == ("gpu", 1, 1440)
