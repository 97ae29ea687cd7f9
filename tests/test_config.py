"""Bad configuration values: each one stops main.py with exit code 2 and one line naming the key,
before any training or model call, and without a traceback. The table runs through main.py's real
entry point (Hydra included) in one interpreter (tests/config_driver.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _files(tmp: Path) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    files = {
        "invalid_block": tmp / "invalid.txt",
        "empty_block": tmp / "empty.txt",
        "binary_block": tmp / "binary.txt",
        "huge_block": tmp / "huge.txt",
        "not_a_block": tmp / "prose.txt",
        "a_file": tmp / "plain_file",
        "negative_ids": tmp / "negative.txt",
    }
    files["invalid_block"].write_text("##Bad##\n0:input\n1:output\n2:Conv2d(out_channels=2*C,kernel_size=3)\n"
                                      "3:Add\n0->2\n2,0->3\n3->1\n")  # Add of C and 2C channels
    files["empty_block"].write_text("")
    files["binary_block"].write_bytes(bytes(range(256)) * 8)
    files["huge_block"].write_text("# padding\n" * 1_100_000)
    files["not_a_block"].write_text("This is a paper abstract, not a block.\n")
    files["a_file"].write_text("x")
    files["negative_ids"].write_text("##Neg##\n-5:input\n-4:output\n-3:ReLU\n-5->-3\n-3->-4\n")
    return files


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cases(tmp: Path, silent_port: int) -> list[tuple[str, list[str]]]:
    """(the key the message must name, the overrides). `silent_port`: a server that accepts
    connections and never answers."""
    f = _files(tmp)
    dead = f"http://127.0.0.1:{_closed_port()}"
    return [
        ("trials", ["trials=abc"]),
        ("trials", ["trials=-1"]),
        ("trials", ["trials=1.5"]),
        ("trials", ["trials=true"]),
        ("seed", ["seed=abc"]),
        ("seed", ["seed=-1"]),
        ("max_rounds", ["max_rounds=-1"]),
        ("max_rounds", ["max_rounds=abc"]),
        ("budget.max_params", ["budget.max_params=abc"]),
        ("budget.max_params", ["budget.max_params=0"]),
        ("budget.max_flops", ["budget.max_flops=-5"]),
        ("budget.max_usd", ["budget.max_usd=-1"]),
        ("budget.max_tokens", ["budget.max_tokens=abc"]),
        ("root_block", [f"root_block={f['invalid_block']}"]),
        ("root_block", [f"root_block={f['empty_block']}"]),
        ("root_block", [f"root_block={f['binary_block']}"]),
        ("root_block", [f"root_block={f['huge_block']}"]),
        ("root_block", [f"root_block={f['not_a_block']}"]),
        ("root_block", [f"root_block={f['negative_ids']}"]),
        ("root_block", [f"root_block={tmp / 'missing.txt'}"]),
        ("memory.path", ["memory.path=/proc/x"]),
        ("memory.path", [f"memory.path={f['a_file']}"]),
        ("memory.embedder", ["memory.embedder=nosuch"]),
        ("memory.url", ["memory=server", f"memory.url={dead}"]),
        ("memory.url", ["memory=server", "memory.url=ftp://example"]),
        ("evaluator.name", ["evaluator.name=nosuch"]),
        ("evaluator", ["evaluator.name=nb201_table"]),
        ("evaluator", ["evaluator.name=nb201_table", f"evaluator.table={tmp / 'no.csv'}"]),
        ("evaluator.out_of_space", ["evaluator.out_of_space=bogus"]),
        ("launcher.name", ["launcher.name=nosuch"]),
        ("launcher.workers", ["launcher.workers=0"]),
        ("launcher.time_limit_s", ["launcher.time_limit_s=-1"]),
        ("trainer.epochs", ["trainer.epochs=0"]),
        ("trainer.batch_size", ["trainer.batch_size=0"]),
        ("trainer.lr", ["trainer.lr=nan"]),
        ("trainer.momentum", ["trainer.momentum=abc"]),
        ("trainer.label_smoothing", ["trainer.label_smoothing=1.5"]),
        ("trainer.subset", ["trainer.subset=0"]),
        ("search.options.max_children", ["search.options.max_children=0"]),
        ("search.options.c", ["search=ucb", "search.options.c=-1"]),
        ("search.policy", ["search.policy=bogus"]),
        ("progress", ["progress=maybe"]),
        ("export", ["export=maybe"]),
        ("dataset", ["dataset=nosuch"]),
        ("dataset.root", ["dataset=cifar10", f"dataset.root={f['a_file']}"]),
        ("llm.cache_mode", ["llm.cache_mode=bogus"]),
        ("llm.cache", [f"llm.cache={f['a_file']}"]),
        ("llm.timeout_s", ["llm.timeout_s=0"]),
        ("llm.retry.attempts", ["llm.retry.attempts=0"]),
        ("llm.model", ["llm=openai_compatible"]),
        ("reader.chunk_tokens", ["reader.chunk_tokens=5"]),
        ("reader.dedup_threshold", ["reader.dedup_threshold=2"]),
        ("read", ["read=''"]),
        ("read", [f"read={tmp / 'no-such-paper.pdf'}"]),
        ("agents.proposer.llm", ["agents.proposer.llm=nosuchprovider"]),
        ("llm.base_url", ["llm=openai_compatible", "llm.model=m", f"llm.base_url={dead}/v1"]),
        ("llm.base_url", ["llm=openai_compatible", "llm.model=m", f"llm.base_url=http://127.0.0.1:{silent_port}/v1",
                          "llm.timeout_s=1"]),
        ("screen.k", ["screen.k=0"]),
        ("screen.k", ["screen.k=33"]),
        ("screen.k", ["screen.k=two"]),
        ("screen.proxy", ["screen.proxy=nosuch"]),
        ("proxies.names", ["proxies.names=[synflow,nosuch]"]),
        ("proxies.names", ["proxies.names=[synflow,synflow]"]),
        ("proxies.batch", ["proxies.batch=0"]),
        ("parallel", ["parallel=0"]),
        ("parallel", ["parallel=many"]),
        ("launcher.time_limit_s", ["launcher.time_limit_s=soon"]),
        ("launcher.threads", ["launcher.threads=0"]),
        ("launcher.resources", ["launcher.resources={num_gpus:-1}"]),
        ("launcher.address", ["launcher.name=ray", "launcher.address=nohost"]),
        ("tracking.experiment", ["tracking=mlflow", "tracking.experiment=''"]),
        ("space.blind", ["space.blind=true"]),                     # the open space has no op names to hide
        ("space.blind", ["space=nb201", "space.blind=maybe"]),
        ("designer.knowledge", ["designer=random", "+designer.knowledge=false"]),  # a part of the team only
        ("designer.feedback", ["designer.feedback=sometimes"]),
    ]


CASES = 75


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    import socket

    tmp = tmp_path_factory.mktemp("badcfg")
    silent = socket.socket()  # listens, never accepts: a model server that does not answer
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    cases = _cases(tmp / "files", silent.getsockname()[1])
    args = [[*over, f"hydra.run.dir={tmp / f'run{i}'}"] for i, (_, over) in enumerate(cases)]
    res = subprocess.run([sys.executable, str(REPO / "tests" / "config_driver.py")], input=json.dumps(args),
                         capture_output=True, text=True, cwd=tmp, env={**os.environ, "HYDRA_FULL_ERROR": ""})
    silent.close()
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == len(cases), res.stdout[-3000:] + res.stderr[-3000:]
    slowest = max(rows, key=lambda r: r["seconds"])
    print(f"\n{len(rows)} bad configurations; slowest {slowest['seconds']:.2f} s ({slowest['args'][:-1]})")
    return [(key, tmp / f"run{i}", row) for i, ((key, _), row) in enumerate(zip(cases, rows))]


@pytest.mark.slow
def test_the_table_has_at_least_40_values(outcomes):
    assert len(outcomes) == CASES >= 40


@pytest.mark.parametrize("i", range(CASES))
def test_bad_value_exits_2_with_one_line_naming_the_key(outcomes, i):
    key, run_dir, row = outcomes[i]
    lines = [line for line in row["stderr"].splitlines() if line.strip()]
    assert row["code"] == 2, row
    assert "Traceback" not in row["stderr"] + row["stdout"], row
    assert len(lines) == 1, row
    assert key in lines[0], (key, lines[0])
    # before any training or model call: nothing trained, no tree, no usage
    assert not (run_dir / "tree.json").exists() and not (run_dir / "trials").exists(), row
    assert not (run_dir / "usage.json").exists() and not (run_dir / "usage.jsonl").exists(), row


def test_a_good_config_passes_the_schema():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from agents.config import validate_config

    for overrides in ([], ["dataset=cifar10"], ["search=ucb", "macro=nader", "trainer=nb201"], ["memory=server"]):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        run = validate_config(OmegaConf.to_container(cfg, resolve=True))
        assert run.trials == 10 and run.dataset.name == cfg.dataset.name


def test_python_models_keep_the_yaml_defaults():
    """Defaults live in conf/; the library models that carry their own (reader, caps) must agree."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from agents.reader import ReaderSettings

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config"), resolve=True)
    assert ReaderSettings().model_dump() == cfg["reader"]
