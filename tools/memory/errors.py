"""Typed errors of the memory package. Every error the package raises on purpose is a
`MemoryStoreError`; configuration problems are also `ValueError`s."""
from __future__ import annotations


class MemoryStoreError(Exception):
    """Base class of every error raised by `tools.memory`."""


class MemoryConfigError(MemoryStoreError, ValueError):
    """The memory configuration cannot be used (bad values, unreachable server, locked store...)."""


class UnknownEmbedderError(MemoryConfigError):
    """`make_embedder` got a name it does not know; the message lists the valid names."""

    def __init__(self, name: str, valid: tuple[str, ...]):
        self.name = name
        self.valid = valid
        super().__init__(f"unknown embedder {name!r}; valid names: {', '.join(valid)}")


class MemoryConnectionError(MemoryConfigError):
    """A Qdrant server given by URL could not be reached."""


class StoreLockedError(MemoryConfigError):
    """A local (embedded) Qdrant store folder is already open in another client or process."""


class EmbedderMismatchError(MemoryConfigError):
    """An existing collection was built with another embedder (name or vector size)."""


class EmbedderUnavailableError(MemoryStoreError, RuntimeError):
    """The sentence-embedding model or its packages are missing or failed to load."""


class MemoryImportError(MemoryStoreError, ValueError):
    """A memory export file cannot be imported; the message names the file and the line."""
