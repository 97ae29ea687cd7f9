"""The knowledge store and the starter knowledge base."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from tools.memory import (
    DESIGN_TAGS,
    HashingEmbedder,
    Inspiration,
    KnowledgeStore,
    MemoryConfig,
    ScoredInspiration,
    load_starter_knowledge,
    make_client,
)


@pytest.fixture()
def store():
    client = make_client(MemoryConfig(embedder="hashing"))
    yield KnowledgeStore(client, HashingEmbedder(), "test_knowledge")
    client.close()


@pytest.fixture()
def starter_store(store):
    store.ensure_starter()
    return store


def test_starter_file_is_complete():
    items = load_starter_knowledge()
    assert len(items) >= 44
    assert len({i.id for i in items}) == len(items)
    year = re.compile(r"\b(19|20)\d\d\b")
    for item in items:
        assert item.tags and set(item.tags) <= DESIGN_TAGS, item.id
        assert item.title and item.source and year.search(item.source), item.id
        assert 2 <= len(re.findall(r"[.!?](\s|$)", item.text)) <= 5, item.id  # 2-4 sentences (+ abbreviations)
    counts = Counter(t for i in items for t in i.tags)
    assert set(counts) == DESIGN_TAGS
    assert min(counts.values()) >= 2, counts


def test_ensure_starter_loads_once(store):
    n = store.ensure_starter()
    assert n == store.count() == len(load_starter_knowledge())
    assert store.ensure_starter() == 0
    assert store.count() == n
    store.add([store.get("se-channel-attention")])  # re-adding by id replaces, never duplicates
    assert store.count() == n


def test_ensure_starter_skips_a_non_empty_store(store):
    store.add([Inspiration(id="mine", text="Try something.", source="Me (Someone, 2024)", tags=["width"])])
    assert store.ensure_starter() == 0
    assert store.count() == 1


@pytest.mark.parametrize("query, expected", [
    ("squeeze excitation channel attention", "se-channel-attention"),
    ("depthwise separable convolution", "mobilenet-depthwise-separable"),
    ("replace ReLU with GELU activation", "gelu-activation"),
    ("inverted residual linear bottleneck", "mobilenetv2-inverted-residual"),
    ("stochastic depth drop path", "stochastic-depth-droppath"),
    ("dilated convolution context", "dilated-context"),
])
def test_search_ranks_the_relevant_item_high(starter_store, query, expected):
    hits = starter_store.search(query, k=3)
    assert len(hits) == 3 and all(isinstance(h, ScoredInspiration) for h in hits)
    assert expected in [h.id for h in hits], [h.id for h in hits]
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_search_with_tag_filter(starter_store):
    hits = starter_store.search("attention", k=10, tags=["spatial-attention"])
    assert hits and all("spatial-attention" in h.tags for h in hits)
    either = starter_store.search("block", k=50, tags=["dense", "self-attention"])
    assert either and all({"dense", "self-attention"} & set(h.tags) for h in either)
    assert {t for h in either for t in h.tags} >= {"dense", "self-attention"}
    assert starter_store.search("anything", k=5, tags="Stochastic Depth")  # normalised tag name
    assert starter_store.search("anything", k=5, tags=["no-such-tag"]) == []


def test_list_get_tag_counts_and_empty_query(starter_store):
    dense = starter_store.list(tags="dense")
    assert len(dense) >= 2 and [i.id for i in dense] == sorted(i.id for i in dense)
    item = starter_store.get("resnet-identity-shortcut")
    assert item is not None and "residual" in item.tags and "He" in item.source
    assert starter_store.get("no-such-id") is None
    counts = starter_store.tag_counts()
    assert set(counts) == DESIGN_TAGS and min(counts.values()) >= 2
    listed = starter_store.search("   ", k=4, tags="activation")
    assert len(listed) == 4 and all(h.score == 0.0 and "activation" in h.tags for h in listed)


def test_add_custom_items_and_tag_normalisation(store):
    ids = store.add([
        {"id": "x1", "text": "Use octave convolutions to split high and low frequency maps.",
         "source": "Drop an Octave (Chen et al., 2019)", "tags": ["Multi Branch", "multi_branch"]},
        Inspiration(id="x2", text="Widen the block.", source="Wide Residual Networks (Zagoruyko, 2016)", tags=["width"]),
    ])
    assert ids == ["x1", "x2"] and store.count() == 2
    assert store.get("x1").tags == ["multi-branch"]
    assert store.search("octave frequency", k=1)[0].id == "x1"


# ---------------------------------------------------------------- the starter set's vectors, kept (issue 11)
class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting the texts it embeds."""

    def __init__(self, dim: int = 256):
        super().__init__(dim)
        self.embedded = 0

    def embed(self, texts):
        self.embedded += len(texts)
        return super().embed(texts)


def _open(tmp_path, embedder, **kw):
    from tools.memory import open_memory

    return open_memory(MemoryConfig(embedder="hashing", cache_dir=str(tmp_path / "cache"), **kw), embedder=embedder)


def test_the_starter_set_is_embedded_once_per_embedder_and_kept(tmp_path):
    first = CountingEmbedder()
    with _open(tmp_path, first) as memory:
        n = memory.knowledge.count()
        hits = [h.id for h in memory.knowledge.search("squeeze and excitation channel attention", k=3)]
    assert first.embedded == n + 1 == len(load_starter_knowledge()) + 1  # the set, then the query
    again = CountingEmbedder()
    with _open(tmp_path, again) as memory:
        assert memory.knowledge.count() == n
        assert [h.id for h in memory.knowledge.search("squeeze and excitation channel attention", k=3)] == hits
    assert again.embedded == 1  # only the query: the set's vectors came from the cache
    other = CountingEmbedder(dim=128)  # another embedder never reads those vectors
    with _open(tmp_path, other):
        pass
    assert other.embedded == n
    off = CountingEmbedder()
    with _open(tmp_path, off, starter_cache=False):
        pass
    assert off.embedded == n


def test_a_changed_text_is_embedded_again_and_a_corrupt_cache_is_ignored(tmp_path):
    from tools.memory.vector_cache import embed_cached

    emb, folder = CountingEmbedder(), tmp_path / "cache"
    first = embed_cached(emb, ["a dilated 3x3 conv", "a 1x1 projection"], folder)
    assert emb.embedded == 2 and first == emb.embed(["a dilated 3x3 conv", "a 1x1 projection"])
    emb.embedded = 0
    assert embed_cached(emb, ["a 1x1 projection", "a dilated 5x5 conv"], folder) == \
        HashingEmbedder().embed(["a 1x1 projection", "a dilated 5x5 conv"])
    assert emb.embedded == 1  # only the changed text
    for f in folder.iterdir():
        f.write_text("{not json")
    emb.embedded = 0
    assert embed_cached(emb, ["a 1x1 projection"], folder) == HashingEmbedder().embed(["a 1x1 projection"])
    assert emb.embedded == 1


def test_a_repeated_query_is_embedded_once(tmp_path):
    emb = CountingEmbedder()
    with _open(tmp_path, emb) as memory:
        emb.embedded = 0
        first = memory.knowledge.search("dilated convolution for a larger receptive field", k=3)
        again = memory.knowledge.search("dilated convolution for a larger receptive field", k=3)
        other = memory.knowledge.search("channel attention", k=3)
    assert first == again and other != first and emb.embedded == 2
