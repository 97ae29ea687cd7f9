"""Knowledge and experience exported to a JSON-lines file and imported into another store, through
`python -m tools.memory` and the functions behind it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from tools.memory import (ExperienceRecord, HashingEmbedder, Inspiration, MemoryConfig, MemoryImportError,
                          export_lines, import_records, open_memory, read_export)

READ_KEY = "model-x:0f3a9c"  # what the Reader marks an excerpt read by


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.memory", *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def _memory(path: Path | None = None):
    cfg = MemoryConfig(path=str(path) if path else None, embedder="hashing", load_starter=False)
    return open_memory(cfg, embedder=HashingEmbedder())


def _fill(memory) -> None:
    memory.knowledge.ensure_starter()
    memory.knowledge.add([Inspiration(id="paper-idea", title="Gated shortcut", text="Gate the shortcut with a "
                                      "sigmoid of the pooled input.", source="Someone et al. 2024",
                                      tags=["residual", "a-new-tag"], file="/papers/x.pdf", page=3,
                                      section="3 Method", model="gpt-4o")])
    memory.experience.add_many([
        ExperienceRecord(type="failure", error_code="arity", error_message="node 5: Add needs 2 inputs",
                         change="inserted Add", trial=1, node=None),
        ExperienceRecord(type="fix", error_code="arity", advice="connect the shortcut to node 5", trial=1),
        ExperienceRecord(type="success", change="SE branch", trial=2, node=2, parent_node=0,
                         metrics={"valid_acc": 91.5}, metrics_delta={"valid_acc": 0.7}, inspiration="paper-idea"),
    ])
    memory.knowledge.mark_read(READ_KEY, {"title": "X", "file": "/papers/x.pdf", "model": "model-x"})


def _contents(memory) -> dict:
    return {"knowledge": [i.model_dump() for i in memory.knowledge.list()],
            "experience": [r.model_dump() for r in memory.experience.all()],
            "read_log": memory.knowledge.read_log()}


def test_export_then_import_into_a_fresh_store_round_trips_every_record(tmp_path: Path):
    src, dst, file = tmp_path / "src", tmp_path / "dst", tmp_path / "memory.jsonl"
    with _memory(src) as memory:
        _fill(memory)
        before = _contents(memory)
    assert len(before["knowledge"]) > 40 and len(before["experience"]) == 3 and len(before["read_log"]) == 1

    out = _cli("export", "--path", src, "-o", file)
    assert out.returncode == 0, out.stderr
    lines = file.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "nader-memory" and header["embedder"] == "hashing-256"
    assert header["counts"] == {"knowledge": len(before["knowledge"]), "experience": 3, "read_log": 1}
    assert len(lines) == 1 + sum(header["counts"].values())
    assert all("vector" not in json.loads(line) for line in lines[1:])  # vectors are made again on import

    got = _cli("import", file, "--path", dst, "--embedder", "hashing")
    assert got.returncode == 0, got.stderr
    assert f"knowledge {len(before['knowledge'])} ({len(before['knowledge'])} new)" in got.stderr
    with _memory(dst) as memory:
        assert _contents(memory) == before  # every payload, the experience in its order
        assert memory.knowledge.was_read(READ_KEY)  # the Reader will not read that excerpt again
        best = memory.knowledge.search("gate the shortcut with a sigmoid of the pooled input", k=1)
        assert best[0].id == "paper-idea"  # searchable: the vectors were recomputed

    again = _cli("import", file, "--path", dst, "--embedder", "hashing")
    assert again.returncode == 0 and "experience 3 (0 new)" in again.stderr  # importing twice adds nothing


def test_a_malformed_line_is_an_error_naming_the_line_and_nothing_is_written(tmp_path: Path):
    with _memory() as memory:
        _fill(memory)
        lines = export_lines(memory)
    file = tmp_path / "memory.jsonl"
    file.write_text("\n".join(lines[:3] + ['{"collection": "knowledge", "payload": {"id": "x"'] + lines[3:]) + "\n")
    res = _cli("import", file, "--path", tmp_path / "dst", "--embedder", "hashing")
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"python -m tools.memory: {file} line 4: not JSON (")
    assert not (tmp_path / "dst").exists()  # the file is checked before the store is opened


@pytest.mark.parametrize("line,why", [
    ('{"collection": "knowledge", "payload": {"id": "x", "source": "s"}}', "knowledge record: text: Field required"),
    ('{"collection": "wisdom", "payload": {}}', "wisdom record: collection: Input should be 'knowledge', "
                                                "'experience' or 'read_log'"),
    ('{"collection": "experience", "payload": {"type": "guess"}}', "experience record: type: Input should be"),
    ('{"collection": "read_log", "payload": {"title": "no key"}}', "read_log record: a read_log payload needs"),
    ('{"collection": "knowledge", "payload": {"id": "x", "text": "t", "source": "s"}, "vector": [1]}',
     "knowledge record: vector: Extra inputs are not permitted"),
    ('["knowledge"]', "expected a JSON object, got list"),
    ('{"format": "nader-memory", "version": 1}', "a header line may only open the file"),
])
def test_bad_records_name_their_line_and_what_is_wrong(tmp_path: Path, line: str, why: str):
    file = tmp_path / "bad.jsonl"
    good = '{"collection": "knowledge", "payload": {"id": "ok", "text": "t", "source": "s"}}'
    file.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(MemoryImportError) as err:
        read_export(file)
    assert str(err.value).startswith(f"{file} line 3: ") and why in str(err.value), str(err.value)


def test_a_hand_written_file_needs_no_header_and_a_newer_version_is_refused(tmp_path: Path):
    file = tmp_path / "mine.jsonl"
    file.write_text('{"collection": "knowledge", "payload": {"id": "mine", "text": "Widen the last stage.", '
                    '"source": "Me 2025", "tags": ["Width"]}}\n')
    with _memory() as memory:
        result = import_records(memory, read_export(file))
        assert result["knowledge"] == {"records": 1, "new": 1} and memory.knowledge.get("mine").tags == ["width"]
    file.write_text('{"format": "nader-memory", "version": 2}\n')
    with pytest.raises(MemoryImportError, match=r"line 1: version 2 of nader-memory; this program reads version 1"):
        read_export(file)


def test_exporting_a_folder_that_holds_no_memory_is_a_one_line_error(tmp_path: Path):
    res = _cli("export", "--path", tmp_path / "nothing-here")
    assert res.returncode == 1 and res.stderr == f"python -m tools.memory: no memory folder at {tmp_path / 'nothing-here'}\n"
    assert not (tmp_path / "nothing-here").exists()
