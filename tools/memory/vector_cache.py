"""Vectors of fixed texts (the starter knowledge base) kept on disk, so that opening a memory does
not embed the same texts again in every run: with MiniLM that was about a quarter of a short run.

One JSON file per embedder in the cache folder, holding {sha256(text): vector}. The file is named
and checked by the embedder's identity (its class, name, dimension and settings, from its repr), so
another embedder or another model folder never reads it; a text that changed has another key and is
embedded again. A cache that cannot be read or written is ignored: it only saves time.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from graphs.atomic import atomic_write

from .embedders import Embedder

__all__ = ["CACHE_ENV", "default_cache_dir", "embed_cached", "embedder_identity"]

CACHE_ENV = "NADER_CACHE_DIR"  # overrides the folder (default: $XDG_CACHE_HOME or ~/.cache, /nader-autogen)


def default_cache_dir() -> Path:
    """Where vectors are kept: $NADER_CACHE_DIR, else $XDG_CACHE_HOME/nader-autogen, else
    ~/.cache/nader-autogen; the `vectors` folder under it."""
    base = os.environ.get(CACHE_ENV)
    if not base:
        base = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nader-autogen")
    return Path(base).expanduser() / "vectors"


def embedder_identity(embedder: Embedder) -> str | None:
    """What makes an embedder's vectors the same from run to run, or None when it cannot be told
    (a repr holding a memory address): such an embedder is never cached."""
    text = f"{type(embedder).__module__}.{type(embedder).__qualname__}|{embedder.name}|{embedder.dim}|{embedder!r}"
    return None if " at 0x" in text else text


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed_cached(embedder: Embedder, texts: list[str], cache_dir: str | Path | None = None) -> list[list[float]]:
    """`embedder.embed(texts)`, taking the vectors already in the cache and embedding (then keeping)
    only the others. `cache_dir`: the folder (default: default_cache_dir())."""
    identity = embedder_identity(embedder)
    if identity is None:
        return embedder.embed(texts)
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / f"{_key(identity)[:24]}.json"
    kept = _read(path, identity, embedder.dim)
    keys = [_key(t) for t in texts]
    missing = [i for i, k in enumerate(keys) if k not in kept]
    if missing:
        fresh = embedder.embed([texts[i] for i in missing])
        for i, v in zip(missing, fresh):
            kept[keys[i]] = [float(x) for x in v]
        try:
            atomic_write(path, json.dumps({"embedder": identity, "dim": embedder.dim, "vectors": kept}))
        except OSError:
            pass  # a read-only or full disk: the vectors are still right, only not kept
    return [kept[k] for k in keys]


def _read(path: Path, identity: str, dim: int) -> dict[str, list[float]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("embedder") != identity or not isinstance(doc.get("vectors"), dict):
        return {}
    return {k: v for k, v in doc["vectors"].items() if isinstance(v, list) and len(v) == dim}
