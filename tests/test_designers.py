"""The offline design team in the NB201 cell space, end to end on the shared NB201 table: it designs
from what a model sees (never from the table), is deterministic per seed, and does not repeat a
candidate; in the open space it does not repeat one either."""
import asyncio
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from rich.console import Console

from agents.factory import build_run
from conftest import ROOT
from graphs.hashing import canonical_hash
from graphs.space import make_space
from graphs.tree import ModificationTree

TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar.csv"
COMMON = ["evaluator.name=nb201_table", f"evaluator.table={TABLE}", "evaluator.out_of_space=skip",
          "dataset=cifar100", "memory.embedder=hashing", "export=false", "progress=false"]

pytestmark = pytest.mark.skipif(not TABLE.is_file(), reason="the shared NB201 table is not beside the checkout")


def run(run_dir: Path, overrides: list[str]) -> ModificationTree:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=COMMON + overrides)
    asyncio.run(build_run(cfg, run_dir, Console(file=open("/dev/null", "w")))())
    return ModificationTree.load(run_dir / "tree.json")


_OPENS: list[tuple[str, bool]] = []  # (path, opened from agents/offline) while a test listens


def _listen(event: str, args: tuple) -> None:
    if event != "open" or not _OPENS or not isinstance(args[0], (str, Path)):
        return
    frame, offline = sys._getframe(1), False
    while frame is not None:
        offline = offline or "agents/offline" in frame.f_code.co_filename.replace("\\", "/")
        frame = frame.f_back
    _OPENS.append((str(args[0]), offline))


sys.addaudithook(_listen)  # audit hooks cannot be removed: it records only while _OPENS is non-empty


def test_the_offline_team_designs_without_reading_the_table(tmp_path):
    _OPENS.append(("<listening>", False))
    try:
        tree = run(tmp_path / "run", ["space=nb201", "trials=6", "seed=5"])
    finally:
        opened, _OPENS[:] = list(_OPENS[1:]), []
    assert any(path.startswith(str(tmp_path)) for path, _ in opened)  # the hook sees the run's own files
    # The evaluator reads the table (unless an earlier test in this process has it cached); the
    # designer never does.
    assert not any(offline for path, offline in opened if Path(path).name == TABLE.name)
    # Nor any other data or run file (its own code and tokenizer files aside).
    data = (str(TABLE.parent.parent), str(tmp_path))
    assert [p for p, offline in opened if offline and p.startswith(data)] == []
    assert len(tree) == 7


def test_the_offline_team_is_deterministic_per_seed(tmp_path):
    space = make_space("nb201")
    cells = [[space.arch_of(t.block_of(n.id)) for n in t.nodes]
             for t in (run(tmp_path / f"run{i}", ["space=nb201", "trials=8", "seed=11"]) for i in (1, 2))]
    assert cells[0] == cells[1]


def test_the_offline_team_moves_off_the_root_and_improves_in_the_cell_space(tmp_path):
    tree = run(tmp_path / "run", ["space=nb201", "trials=12", "seed=2"])
    space = make_space("nb201")
    trials = [n for n in tree.nodes if n.trial]
    assert len({space.arch_of(tree.block_of(n.id)) for n in tree.nodes}) == len(tree)  # no repeat
    assert [n.status for n in trials] == ["trained"] * 12
    # It learns and builds on improvements: not every trial expands the root.
    assert any(n.parent != 0 for n in trials)
    assert max(n.valid_acc for n in trials) > tree.get(0).valid_acc


@pytest.mark.slow
def test_the_offline_team_does_not_repeat_a_candidate_in_the_open_space(tmp_path):
    tree = run(tmp_path / "run", ["space=open", "trials=20", "seed=1"])
    trials = [n for n in tree.nodes if n.trial]
    hashes = {canonical_hash(tree.block_of(n.id)) for n in tree.nodes}
    assert len(trials) == 20
    assert [n.id for n in trials if n.status == "duplicate"] == []
    assert len(hashes) >= len(tree) - 1  # at most one repeat in 20 trials (the goal: 95 in 100 distinct)


def test_the_offline_designer_has_no_way_to_the_table_in_its_code():
    """Besides the run-time check above: no module of the offline designer names the table
    evaluator, the table loader or a table's accuracy columns."""
    forbidden = ("from training", "import training", "nb201_table", "Nb201Table", "load_release", "csv", "test_acc",
                 "open(", "read_text")
    for path in sorted((ROOT / "agents" / "offline").glob("*.py")):
        text = path.read_text()
        assert [w for w in forbidden if w in text] == [], path.name
