"""The knowledge and experience stores over qdrant-client.

Both stores take their Qdrant client and embedder from the caller; `open_memory` builds both from a
`MemoryConfig`. Point ids are deterministic (uuid5), so adding the same content twice is a no-op.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import MemoryConfig, collection_name, is_local_client, make_client
from .embedders import Embedder, make_embedder
from .errors import EmbedderMismatchError, MemoryStoreError
from .records import (
    EXPERIENCE_TYPES,
    ExperienceRecord,
    Inspiration,
    ScoredInspiration,
    normalise_tag,
    point_id,
)
from .starter import load_starter_knowledge
from .vector_cache import embed_cached

__all__ = ["ExperienceStore", "KnowledgeStore", "Memory", "open_memory"]

_EMBEDDER_KEY = "_embedder"
_SEQ_KEY = "_seq"
_PRIVATE = (_EMBEDDER_KEY, _SEQ_KEY)
# Query vectors kept per collection: the designers ask the same questions again and again (the same
# strategy, the same validator error), and with MiniLM each embedding is most of a search's time.
_RECENT_QUERIES = 256


class _Collection:
    """One Qdrant collection whose vectors come from one embedder."""

    def __init__(self, client: Any, embedder: Embedder, name: str, keyword_fields: Sequence[str]):
        from qdrant_client import models

        self._m = models
        self.client = client
        self.embedder = embedder
        self.name = name
        self._recent: OrderedDict[str, list[float]] = OrderedDict()  # query text -> vector, least recent first
        self._ensure(keyword_fields)

    def _ensure(self, keyword_fields: Sequence[str]) -> None:
        m = self._m
        if self.client.collection_exists(self.name):
            vectors = self.client.get_collection(self.name).config.params.vectors
            size = getattr(vectors, "size", None)
            if size is not None and int(size) != int(self.embedder.dim):
                raise EmbedderMismatchError(
                    f"collection {self.name!r} holds {size}-dim vectors but embedder {self.embedder.name!r} "
                    f"gives {self.embedder.dim}; use the embedder it was built with, another memory.prefix, "
                    "or another memory.path"
                )
            points, _ = self.client.scroll(self.name, limit=1, with_payload=[_EMBEDDER_KEY])
            if points:
                used = (points[0].payload or {}).get(_EMBEDDER_KEY)
                if used and used != self.embedder.name:
                    raise EmbedderMismatchError(
                        f"collection {self.name!r} was built with embedder {used!r}, not {self.embedder.name!r}; "
                        "use the embedder it was built with, another memory.prefix, or another memory.path"
                    )
            return
        self.client.create_collection(
            self.name, vectors_config=m.VectorParams(size=int(self.embedder.dim), distance=m.Distance.COSINE)
        )
        if not is_local_client(self.client):  # payload indexes only matter (and only work) on a server
            for field in keyword_fields:
                self.client.create_payload_index(self.name, field, field_schema=m.PayloadSchemaType.KEYWORD)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self.embedder.embed(texts)
        if len(vectors) != len(texts) or any(len(v) != self.embedder.dim for v in vectors):
            raise MemoryStoreError(f"embedder {self.embedder.name!r} returned vectors of the wrong shape")
        return vectors

    def _upsert(self, ids: list[str], texts: list[str], payloads: list[dict[str, Any]],
                vectors: list[list[float]] | None = None) -> None:
        """`vectors`: the texts' vectors when the caller has them (from the vector cache)."""
        if not ids:
            return
        vectors = self._embed(texts) if vectors is None else vectors
        if len(vectors) != len(texts) or any(len(v) != self.embedder.dim for v in vectors):
            raise MemoryStoreError(f"{len(vectors)} vectors given for {len(texts)} texts, or not {self.embedder.dim}-dim")
        points = [
            self._m.PointStruct(id=i, vector=v, payload={**p, _EMBEDDER_KEY: self.embedder.name})
            for i, v, p in zip(ids, vectors, payloads)
        ]
        self.client.upsert(self.name, points=points, wait=True)

    def _query(self, query: str, k: int, flt: Any) -> list[tuple[dict[str, Any], float]]:
        if k <= 0:
            return []
        vector = self._query_vector(query)
        res = self.client.query_points(self.name, query=vector, query_filter=flt, limit=int(k), with_payload=True)
        return [(dict(p.payload or {}), float(p.score)) for p in res.points]

    def _query_vector(self, query: str) -> list[float]:
        vector = self._recent.pop(query, None)
        if vector is None:
            vector = self._embed([query])[0]
        self._recent[query] = vector
        if len(self._recent) > _RECENT_QUERIES:
            self._recent.popitem(last=False)
        return vector

    def _scroll_all(self, flt: Any = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.name, scroll_filter=flt, limit=256, offset=offset, with_payload=True
            )
            out.extend(dict(p.payload or {}) for p in points)
            if offset is None:
                return out

    def _count(self, flt: Any = None) -> int:
        return int(self.client.count(self.name, count_filter=flt, exact=True).count)

    def _filter(self, **conditions: Any) -> Any:
        """AND of conditions; a list/tuple value matches any of its items, None is skipped."""
        m = self._m
        must = []
        for key, value in conditions.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple, set, frozenset)):
                must.append(m.FieldCondition(key=key, match=m.MatchAny(any=sorted(value))))
            else:
                must.append(m.FieldCondition(key=key, match=m.MatchValue(value=value)))
        return m.Filter(must=must) if must else None


def _public(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in _PRIVATE}


class KnowledgeStore:
    """Inspirations (`knowledge` collection): add, search by meaning with an optional tag filter."""

    BASE_NAME = "knowledge"

    def __init__(self, client: Any, embedder: Embedder, collection: str = BASE_NAME):
        self._c = _Collection(client, embedder, collection, keyword_fields=("tags", "id"))
        self._read_log = f"{collection}_read"  # which paper excerpts were read, and by which model
        if not client.collection_exists(self._read_log):
            client.create_collection(self._read_log, vectors_config={})  # payload only: nothing to search

    @property
    def collection(self) -> str:
        return self._c.name

    def was_read(self, key: str) -> bool:
        """Whether the excerpt with this key (agents.reader: model and excerpt text) was read before."""
        return bool(self._c.client.retrieve(self._read_log, ids=[point_id("read", key)], with_payload=False))

    def mark_read(self, key: str, info: dict[str, Any]) -> None:
        point = self._c._m.PointStruct(id=point_id("read", key), vector={}, payload={"key": key, **info})
        self._c.client.upsert(self._read_log, points=[point], wait=True)

    def read_log(self) -> list[dict[str, Any]]:
        """Every excerpt marked read: {"key": ..., and what mark_read was given}, sorted by key."""
        entries: list[dict[str, Any]] = []
        offset = None
        while True:
            points, offset = self._c.client.scroll(self._read_log, limit=256, offset=offset, with_payload=True)
            entries.extend(dict(p.payload or {}) for p in points)
            if offset is None:
                return sorted(entries, key=lambda e: str(e.get("key")))

    def add(self, items: Iterable[Inspiration | dict[str, Any]], *, cache_dir: str | Path | None = None,
            cached: bool = False) -> list[str]:
        """Add (or replace, by id) inspirations; returns their ids. `cached`: take their vectors
        from the vector cache in `cache_dir` (tools.memory.vector_cache; default the user's cache)
        and keep the new ones there: for fixed texts such as the starter set."""
        insp = [i if isinstance(i, Inspiration) else Inspiration.model_validate(i) for i in items]
        insp = [Inspiration.model_validate(i.model_dump(exclude={"score"})) for i in insp]
        texts = [i.embedding_text() for i in insp]
        vectors = embed_cached(self._c.embedder, texts, cache_dir) if cached and texts else None
        self._c._upsert([point_id("knowledge", i.id) for i in insp], texts, [i.model_dump() for i in insp], vectors)
        return [i.id for i in insp]

    def search(self, query: str, k: int = 5, tags: Sequence[str] | str | None = None) -> list[ScoredInspiration]:
        """The `k` inspirations closest to `query`, best first; with `tags`, only those carrying at
        least one of them. An empty query lists inspirations by id with score 0."""
        tag_list = self._tags_arg(tags)
        flt = self._c._filter(tags=tag_list)
        if not query.strip():
            return [ScoredInspiration(**i.model_dump(), score=0.0) for i in self.list(tag_list)[: max(k, 0)]]
        return [ScoredInspiration(**_public(p), score=s) for p, s in self._c._query(query, k, flt)]

    def get(self, item_id: str) -> Inspiration | None:
        points = self._c.client.retrieve(self._c.name, ids=[point_id("knowledge", item_id)], with_payload=True)
        return Inspiration.model_validate(_public(points[0].payload or {})) if points else None

    def list(self, tags: Sequence[str] | str | None = None) -> list[Inspiration]:
        """All inspirations (optionally those with any of `tags`), sorted by id."""
        flt = self._c._filter(tags=self._tags_arg(tags))
        items = [Inspiration.model_validate(_public(p)) for p in self._c._scroll_all(flt)]
        return sorted(items, key=lambda i: i.id)

    def tag_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.list():
            for t in item.tags:
                counts[t] = counts.get(t, 0) + 1
        return dict(sorted(counts.items()))

    def count(self) -> int:
        return self._c._count()

    def ensure_starter(self, items: Iterable[Inspiration] | None = None, *, cache: bool = True,
                       cache_dir: str | Path | None = None) -> int:
        """Load the starter knowledge base when the collection is empty; returns how many items
        were added (0 when it already held anything). With `cache`, their vectors come from the
        vector cache (embedded once per embedder and text, then kept in `cache_dir`)."""
        if self.count() > 0:
            return 0
        return len(self.add(load_starter_knowledge() if items is None else items, cache_dir=cache_dir, cached=cache))

    @staticmethod
    def _tags_arg(tags: Sequence[str] | str | None) -> list[str] | None:
        if tags is None:
            return None
        if isinstance(tags, str):
            tags = [tags]
        out = sorted({normalise_tag(t) for t in tags if normalise_tag(t)})
        return out or None


class ExperienceStore:
    """Design experience (`experience` collection): failures, fixes, successes and regressions."""

    BASE_NAME = "experience"

    def __init__(self, client: Any, embedder: Embedder, collection: str = BASE_NAME):
        self._c = _Collection(client, embedder, collection, keyword_fields=("type", "error_code", "block_kind"))

    @property
    def collection(self) -> str:
        return self._c.name

    def add(self, record: ExperienceRecord | dict[str, Any]) -> str:
        """Store one record; its id is derived from its content unless given. Returns the id."""
        rec = record if isinstance(record, ExperienceRecord) else ExperienceRecord.model_validate(record)
        rec = rec.with_id()
        assert rec.id is not None
        payload = rec.model_dump()
        existing = self._c.client.retrieve(self._c.name, ids=[point_id("experience", rec.id)], with_payload=[_SEQ_KEY])
        payload[_SEQ_KEY] = (existing[0].payload or {}).get(_SEQ_KEY, 0) if existing else self._c._count()
        self._c._upsert([point_id("experience", rec.id)], [rec.embedding_text()], [payload])
        return rec.id

    def add_many(self, records: Iterable[ExperienceRecord | dict[str, Any]]) -> list[str]:
        return [self.add(r) for r in records]

    def search(
        self,
        query: str,
        k: int = 5,
        types: Sequence[str] | str | None = None,
        error_code: str | None = None,
        block_kind: str | None = None,
    ) -> list[tuple[ExperienceRecord, float]]:
        """The `k` records closest to `query`, best first, filtered by type(s), error code and block
        kind. An empty query returns the most recent matching records with score 0."""
        type_list = self._types_arg(types)
        flt = self._c._filter(type=type_list, error_code=error_code, block_kind=block_kind)
        if not query.strip():
            recent = sorted(self._c._scroll_all(flt), key=lambda p: p.get(_SEQ_KEY, 0), reverse=True)
            return [(ExperienceRecord.model_validate(_public(p)), 0.0) for p in recent[: max(k, 0)]]
        return [(ExperienceRecord.model_validate(_public(p)), s) for p, s in self._c._query(query, k, flt)]

    def count(self, type: str | None = None) -> int:  # noqa: A002 - the record field is called type
        return self._c._count(self._c._filter(type=self._types_arg(type)))

    def all(self) -> list[ExperienceRecord]:
        """Every record, in the order they were added."""
        payloads = sorted(self._c._scroll_all(), key=lambda p: (p.get(_SEQ_KEY, 0), p.get("id") or ""))
        return [ExperienceRecord.model_validate(_public(p)) for p in payloads]

    def get(self, record_id: str) -> ExperienceRecord | None:
        points = self._c.client.retrieve(self._c.name, ids=[point_id("experience", record_id)], with_payload=True)
        return ExperienceRecord.model_validate(_public(points[0].payload or {})) if points else None

    @staticmethod
    def _types_arg(types: Sequence[str] | str | None) -> list[str] | None:
        if types is None:
            return None
        if isinstance(types, str):
            types = [types]
        bad = [t for t in types if t not in EXPERIENCE_TYPES]
        if bad:
            raise ValueError(f"unknown experience type(s) {bad}; valid: {', '.join(EXPERIENCE_TYPES)}")
        return sorted(set(types)) or None


@dataclass
class Memory:
    """Both stores over one Qdrant client. Close it (or use it as a context manager) to release a
    local store folder."""

    config: MemoryConfig
    client: Any
    embedder: Embedder
    knowledge: KnowledgeStore
    experience: ExperienceStore

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing twice or a dead server is not worth a crash
            pass

    def __enter__(self) -> "Memory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_memory(config: MemoryConfig | dict[str, Any] | None = None, *, embedder: Embedder | None = None,
                client: Any = None) -> Memory:
    """Open both stores for `config` (default: in-memory store, MiniLM embedder). `embedder` and
    `client` override what the config would build. With `config.load_starter`, the starter knowledge
    base is loaded into an empty knowledge collection."""
    cfg = config if isinstance(config, MemoryConfig) else MemoryConfig.model_validate(config or {})
    emb = embedder if embedder is not None else make_embedder(cfg.embedder, **cfg.embedder_options)
    cli = client if client is not None else make_client(cfg)
    try:
        knowledge = KnowledgeStore(cli, emb, collection_name(cfg.prefix, KnowledgeStore.BASE_NAME))
        experience = ExperienceStore(cli, emb, collection_name(cfg.prefix, ExperienceStore.BASE_NAME))
        if cfg.load_starter:
            knowledge.ensure_starter(cache=cfg.starter_cache, cache_dir=cfg.cache_dir)
    except BaseException:
        if client is None:
            try:
                cli.close()
            except Exception:  # noqa: BLE001
                pass
        raise
    return Memory(config=cfg, client=cli, embedder=emb, knowledge=knowledge, experience=experience)
