"""The experience store: add, filtered search, counts, order, idempotence."""
from __future__ import annotations

import pytest

from tools.memory import ExperienceRecord, ExperienceStore, HashingEmbedder, MemoryConfig, make_client


@pytest.fixture()
def client():
    client = make_client(MemoryConfig(embedder="hashing"))
    yield client
    client.close()


@pytest.fixture()
def store(client):
    return ExperienceStore(client, HashingEmbedder(), "test_experience")


def _records() -> list[ExperienceRecord]:
    return [
        ExperienceRecord(type="failure", error_code="ADD_ARITY", trial=1,
                         error_message="node 5: Add got 1 input; Add needs two or more inputs of equal shape"),
        ExperienceRecord(type="fix", error_code="ADD_ARITY", trial=1, node=3, parent_node=0,
                         error_message="node 5: Add got 1 input; Add needs two or more inputs of equal shape",
                         change="added the edge 0->5 so the Add sums the block input and the BN output",
                         advice="an Add node needs a second input; connect the shortcut from the input node"),
        ExperienceRecord(type="failure", error_code="SHAPE_MISMATCH", trial=2,
                         error_message="node 7: concat output has 2*C channels; a base block must output C channels"),
        ExperienceRecord(type="fix", error_code="SHAPE_MISMATCH", trial=2,
                         change="inserted a 1x1 Conv2d(out_channels=C) after the concat",
                         advice="after a concat, project back to C channels with a 1x1 conv"),
        ExperienceRecord(type="success", trial=3, node=4, parent_node=0, metrics={"val_acc": 0.91},
                         metrics_delta={"val_acc": 0.012}, inspiration="se-channel-attention",
                         change="added a squeeze-excitation gate before the residual add"),
        ExperienceRecord(type="regression", trial=4, node=5, parent_node=4, metrics_delta={"val_acc": -0.03},
                         inspiration="dilated-context", change="set dilation=4 on both 3x3 convs"),
    ]


def test_add_returns_deterministic_ids_and_is_idempotent(store, client):
    recs = _records()
    ids = [store.add(r) for r in recs]
    assert len(set(ids)) == len(ids)
    assert store.count() == 6
    assert store.add(recs[0]) == ids[0] and store.count() == 6  # same content, same id
    again = ExperienceStore(client, HashingEmbedder(), "test_experience")  # another handle on the collection
    assert again.add(recs[1].model_dump()) == ids[1]
    explicit = store.add(ExperienceRecord(id="my-id", type="failure", error_code="X"))
    assert explicit == "my-id" and store.get("my-id").error_code == "X"


def test_counts_and_order(store):
    ids = store.add_many(_records())
    assert store.count() == 6
    assert store.count("failure") == 2 and store.count("fix") == 2
    assert store.count("success") == 1 and store.count("regression") == 1
    everything = store.all()
    assert [r.id for r in everything] == ids
    assert everything[4].metrics_delta == {"val_acc": 0.012}


def test_search_by_meaning_and_type_filter(store):
    store.add_many(_records())
    hits = store.search("Add node has only one input", k=5, types=["fix"])
    assert hits and all(r.type == "fix" for r, _ in hits)
    assert hits[0][0].error_code == "ADD_ARITY"
    assert "shortcut" in hits[0][0].advice
    outcome = store.search("squeeze excitation gate", k=2, types=("success", "regression"))
    assert outcome[0][0].type == "success" and outcome[0][0].inspiration == "se-channel-attention"
    assert all(r.type in ("success", "regression") for r, _ in outcome)
    assert outcome[0][1] >= outcome[-1][1]


def test_search_by_error_code(store):
    store.add_many(_records())
    hits = store.search("channels do not match", k=10, error_code="SHAPE_MISMATCH")
    assert {r.type for r, _ in hits} == {"failure", "fix"}
    assert all(r.error_code == "SHAPE_MISMATCH" for r, _ in hits)
    only_fix = store.search("channels do not match", k=10, types="fix", error_code="SHAPE_MISMATCH")
    assert len(only_fix) == 1 and only_fix[0][0].advice.startswith("after a concat")
    assert store.search("x", k=5, error_code="NO_SUCH_CODE") == []


def test_empty_query_lists_recent_records(store):
    store.add_many(_records())
    recent = store.search("", k=2, types="fix")
    assert [r.trial for r, _ in recent] == [2, 1] and all(s == 0.0 for _, s in recent)


def test_bad_type_is_rejected(store):
    with pytest.raises(ValueError):
        store.count("oops")
    with pytest.raises(ValueError):
        store.search("x", types=["failure", "oops"])
    with pytest.raises(ValueError):
        ExperienceRecord(type="oops")


def test_embedding_text_from_fields():
    rec = _records()[1]
    text = rec.embedding_text()
    assert "ADD_ARITY" in text and "shortcut" in text and "fix" in text
    assert ExperienceRecord(type="failure", text="custom").embedding_text() == "custom"
