"""Resuming a run directory: the config it was started with is kept and compared, a corrupt
tree.json is refused without being touched, and Ctrl-C (SIGINT) during training saves what is
finished, exits 130 with the resume command, and the resumed run completes every trial once."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from graphs.tree import ModificationTree

pytestmark = pytest.mark.slow

FAST = ["trainer.epochs=1", "trainer.subset=300", "memory.embedder=hashing", "export=false", "progress=false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": ""}


def main_py(run_dir: Path, *overrides: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *overrides, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, cwd=run_dir.parent, env=ENV, **kw)


@pytest.fixture(scope="module")
def one_trial_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "run"
    res = main_py(run_dir, *FAST, "trials=1")
    assert res.returncode == 0, res.stderr[-3000:]
    return run_dir


def test_resume_with_another_dataset_is_refused_and_the_tree_untouched(one_trial_run, tmp_path):
    run_dir = tmp_path / "run"
    import shutil

    shutil.copytree(one_trial_run, run_dir)
    before = {p: p.read_bytes() for p in (run_dir / "tree.json", run_dir / "config.yaml", run_dir / "usage.json")}
    res = main_py(run_dir, *FAST, "trials=2", "dataset=cifar10", "seed=3")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, res.stderr[-3000:]
    assert len(lines) == 1 and "dataset.name" in lines[0] and "seed" in lines[0] and "Traceback" not in res.stderr
    assert "trials" not in lines[0]  # trials may change on resume
    assert {p: p.read_bytes() for p in before} == before  # the run directory's own files are unchanged
    assert not (run_dir / "trials" / "0002").exists()


def test_resume_with_more_trials_continues(one_trial_run, tmp_path):
    run_dir = tmp_path / "run"
    import shutil

    shutil.copytree(one_trial_run, run_dir)
    config = (run_dir / "config.yaml").read_text()
    res = main_py(run_dir, *FAST, "trials=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming with changed trials" in res.stderr
    tree = ModificationTree.load(run_dir / "tree.json")
    assert sorted(n.trial for n in tree.nodes) == [0, 1, 2]
    assert (run_dir / "config.yaml").read_text() == config  # the run keeps the config it was started with


def test_corrupt_tree_is_a_one_line_error_and_left_as_it_is(one_trial_run, tmp_path):
    run_dir = tmp_path / "run"
    import shutil

    shutil.copytree(one_trial_run, run_dir)
    tree = run_dir / "tree.json"
    corrupt = tree.read_bytes()[: len(tree.read_bytes()) // 2]
    tree.write_bytes(corrupt)
    res = main_py(run_dir, *FAST, "trials=2")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "tree.json" in lines[0], res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert tree.read_bytes() == corrupt


def test_sigint_during_training_saves_and_the_resume_completes_every_trial_once(tmp_path):
    run_dir = tmp_path / "run"
    # The line is printed inside the launcher's training scope: the SIGINT lands while training runs
    # (data loading included), however slow the machine.
    overrides = [*FAST, "trainer.epochs=3", "trials=2"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *overrides, f"hydra.run.dir={run_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=ENV)
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if "training the design of trial 1" in line:
            proc.send_signal(signal.SIGINT)
            break
    else:
        proc.wait()
        pytest.fail("the run ended before trial 1 trained:\n" + "".join(seen)[-3000:])
    out, err = proc.communicate(timeout=600)
    err = "".join(seen) + err
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "trial 1 was stopped and will run again" in err
    resume = [line.split("resume with: ", 1)[1] for line in err.splitlines() if "resume with: " in line]
    assert len(resume) == 1
    args = shlex.split(resume[0])
    assert args[:2] == ["python", "main.py"] and f"hydra.run.dir={run_dir}" in args
    tree = ModificationTree.load(run_dir / "tree.json")
    assert [n.trial for n in tree.nodes] == [0]  # the stopped trial is not in the tree; the root is

    res = subprocess.run([sys.executable, str(ROOT / "main.py"), *args[2:]], capture_output=True, text=True,
                         cwd=tmp_path, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    tree = ModificationTree.load(run_dir / "tree.json")
    assert sorted(n.trial for n in tree.nodes) == [0, 1, 2]  # no trial lost, none repeated
    usage = json.loads((run_dir / "usage.json").read_text())
    trials = {c["trial"] for c in usage["calls"]}
    assert {"1", "2", "1-interrupted"} <= trials  # the stopped trial's calls are kept, set aside
