"""Memory configuration, client construction, persistence and typed errors."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from tools.memory import (
    EmbedderMismatchError,
    ExperienceRecord,
    HashingEmbedder,
    KnowledgeStore,
    MemoryConfig,
    MemoryConfigError,
    MemoryConnectionError,
    StoreLockedError,
    load_starter_knowledge,
    make_client,
    open_memory,
)

ROOT = Path(__file__).resolve().parents[1]


def test_import_has_no_heavy_side_effects():
    code = textwrap.dedent("""
        import sys
        import tools.memory as m
        heavy = [x for x in ("qdrant_client", "sentence_transformers", "torch", "transformers") if x in sys.modules]
        assert not heavy, heavy
        m.MemoryConfig(); m.make_embedder("minilm")
        assert "sentence_transformers" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_config_defaults_and_modes():
    cfg = MemoryConfig()
    assert cfg.mode == "memory" and cfg.embedder == "minilm" and cfg.prefix == "nader"
    assert MemoryConfig(path=":memory:").mode == "memory"
    assert MemoryConfig(path="runs/x/memory").mode == "local"
    assert MemoryConfig(url="http://localhost:6333", path="").mode == "server"


@pytest.mark.parametrize("kwargs, words", [
    ({"url": "http://localhost:6333", "path": "/tmp/x"}, ["url", "path", "not both"]),
    ({"embedder": "word2vec"}, ["word2vec", "hashing", "minilm"]),
    ({"prefix": "bad prefix!"}, ["prefix"]),
    ({"urls": "http://x"}, ["urls"]),
])
def test_config_errors(kwargs, words):
    with pytest.raises(ValidationError) as ei:
        MemoryConfig(**kwargs)
    assert isinstance(ei.value, ValueError)
    for w in words:
        assert w in str(ei.value)


def test_unreachable_server_names_the_url_and_the_offline_mode():
    url = "http://127.0.0.1:9"
    with pytest.raises(MemoryConnectionError) as ei:
        open_memory(MemoryConfig(url=url, embedder="hashing", timeout_s=2))
    msg = str(ei.value)
    assert url in msg and "embedded" in msg and "offline" in msg
    assert isinstance(ei.value, MemoryConfigError)


def test_local_store_persists_across_reopen(tmp_path):
    cfg = MemoryConfig(path=str(tmp_path / "memory"), embedder="hashing")
    with open_memory(cfg, embedder=HashingEmbedder()) as mem:
        n = mem.knowledge.count()
        assert n == len(load_starter_knowledge())
        rid = mem.experience.add(ExperienceRecord(type="failure", error_code="E1", error_message="boom", trial=1))
    with open_memory(cfg, embedder=HashingEmbedder()) as mem:
        assert mem.knowledge.count() == n  # not loaded twice
        assert [r.id for r in mem.experience.all()] == [rid]
        assert mem.experience.search("boom", k=1)[0][0].error_code == "E1"
        mem.experience.add(ExperienceRecord(type="success", trial=2, metrics_delta={"val_acc": 0.01}))
    with open_memory(cfg) as mem:  # the embedder named by the config
        assert mem.experience.count() == 2 and mem.experience.count("success") == 1
        assert [r.trial for r in mem.experience.all()] == [1, 2]


def test_local_store_is_locked_while_open(tmp_path):
    cfg = MemoryConfig(path=str(tmp_path / "memory"), embedder="hashing", load_starter=False)
    mem = open_memory(cfg)
    try:
        with pytest.raises(StoreLockedError) as ei:
            open_memory(cfg)
        assert "memory.url" in str(ei.value) and str(tmp_path) in str(ei.value)
    finally:
        mem.close()
    open_memory(cfg).close()  # free again once closed


def test_local_path_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(MemoryConfigError):
        make_client(MemoryConfig(path=str(f)))


def test_embedder_mismatch_is_detected(tmp_path):
    client = make_client(MemoryConfig())
    try:
        KnowledgeStore(client, HashingEmbedder(dim=64), "k").add(load_starter_knowledge()[:3])
        with pytest.raises(EmbedderMismatchError, match="64"):
            KnowledgeStore(client, HashingEmbedder(dim=128), "k")

        class Other(HashingEmbedder):
            def __init__(self):
                super().__init__(dim=64)
                self.name = "other-64"

        with pytest.raises(EmbedderMismatchError, match="hashing-64"):
            KnowledgeStore(client, Other(), "k")
        assert KnowledgeStore(client, HashingEmbedder(dim=64), "k").count() == 3
    finally:
        client.close()


def test_prefix_separates_collections():
    client = make_client(MemoryConfig())
    try:
        a = open_memory(MemoryConfig(prefix="a", embedder="hashing"), client=client)
        b = open_memory(MemoryConfig(prefix="b", embedder="hashing", load_starter=False), client=client)
        assert a.knowledge.collection == "a_knowledge" and b.experience.collection == "b_experience"
        assert a.knowledge.count() > 0 and b.knowledge.count() == 0
    finally:
        client.close()
