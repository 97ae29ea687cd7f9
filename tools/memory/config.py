"""Memory configuration and Qdrant client construction."""
from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .embedders import EMBEDDER_NAMES
from .errors import MemoryConfigError, MemoryConnectionError, StoreLockedError

__all__ = ["MemoryConfig", "collection_name", "is_local_client", "make_client"]


class MemoryConfig(BaseModel):
    """Where the memory lives and how texts are embedded.

    - `url` set: a Qdrant server (share one store between several processes).
    - `path` set: an embedded local store persisted in that folder (one process at a time).
    - neither, or `path=":memory:"`: an embedded in-memory store that lives as long as the client.
    """

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    path: str | None = None
    api_key: str | None = None
    embedder: str = "minilm"
    embedder_options: dict[str, Any] = Field(default_factory=dict)
    prefix: str = "nader"
    timeout_s: int = Field(default=5, ge=1)
    load_starter: bool = True
    starter_cache: bool = True  # the starter set's vectors from the vector cache (embedded once per embedder)
    cache_dir: str | None = None  # that cache's folder; None: tools.memory.vector_cache.default_cache_dir()

    @field_validator("url", "path", "api_key")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = str(v).strip()
        return v or None

    @field_validator("embedder")
    @classmethod
    def _known_embedder(cls, v: str) -> str:
        key = v.strip().lower()
        if key not in EMBEDDER_NAMES:
            raise ValueError(f"unknown embedder {v!r}; valid names: {', '.join(EMBEDDER_NAMES)}")
        return key

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip()
        if v and not all(ch.isalnum() or ch in "_-" for ch in v):
            raise ValueError(f"prefix {v!r} may hold only letters, digits, '_' and '-'")
        return v

    @model_validator(mode="after")
    def _one_location(self) -> "MemoryConfig":
        if self.url and self.path:
            raise ValueError(
                f"memory.url ({self.url}) and memory.path ({self.path}) are both set; "
                "set url for a Qdrant server or path for an embedded local store, not both"
            )
        return self

    @property
    def mode(self) -> str:
        if self.url:
            return "server"
        if self.path and self.path != ":memory:":
            return "local"
        return "memory"


def collection_name(prefix: str, base: str) -> str:
    return f"{prefix}_{base}" if prefix else base


def is_local_client(client: Any) -> bool:
    """True for an embedded (local-mode) Qdrant client."""
    try:
        from qdrant_client.local.qdrant_local import QdrantLocal
    except ImportError:  # pragma: no cover - layout of a future qdrant-client
        return False
    return isinstance(getattr(client, "_client", None), QdrantLocal)


def make_client(config: MemoryConfig) -> Any:
    """Build a `QdrantClient` for the configuration, checking that it is usable.

    Raises `MemoryConnectionError` when a server URL cannot be reached and `StoreLockedError`
    when a local store folder is already open elsewhere.
    """
    from qdrant_client import QdrantClient

    if config.url:
        try:
            client = QdrantClient(url=config.url, api_key=config.api_key, timeout=config.timeout_s,
                                  check_compatibility=False)
        except Exception as exc:  # noqa: BLE001 - bad URL syntax and the like
            raise MemoryConnectionError(
                f"cannot use the Qdrant server URL {config.url!r}: {type(exc).__name__}: {exc}. "
                "Leave memory.url unset to use the embedded local store, which works offline."
            ) from exc
        try:
            client.get_collections()
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, timeout, auth...
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
            raise MemoryConnectionError(
                f"cannot reach the Qdrant server at {config.url}: {type(exc).__name__}: {exc}. "
                "Start the server or fix memory.url, or leave memory.url unset to use the embedded "
                "local store (memory.path or in-memory), which works offline."
            ) from exc
        return client

    if config.mode == "local":
        path = os.path.abspath(os.path.expanduser(config.path or ""))
        if os.path.exists(path) and not os.path.isdir(path):
            raise MemoryConfigError(f"memory.path {path} exists and is not a folder")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise MemoryConfigError(f"cannot create the memory folder {path}: {exc}") from exc
        try:
            return QdrantClient(path=path)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreLockedError(
                    f"the local memory store {path} is already open in another client or process; "
                    "an embedded store serves one process at a time. Close the other client, use "
                    "another memory.path, or run a Qdrant server and set memory.url to share it."
                ) from exc
            raise MemoryConfigError(f"cannot open the local memory store {path}: {exc}") from exc

    return QdrantClient(location=":memory:")
