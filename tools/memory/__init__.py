"""Memory of the design team: the knowledge base of inspirations and the experience base, stored in
Qdrant (embedded local mode by default, a server by URL), with pluggable text embedders.

Importing this package has no side effects: nothing is loaded, connected or created until a store
or embedder is built.
"""
from .config import MemoryConfig, collection_name, make_client
from .embedders import EMBEDDER_NAMES, Embedder, HashingEmbedder, MiniLMEmbedder, make_embedder
from .errors import (
    EmbedderMismatchError,
    EmbedderUnavailableError,
    MemoryConfigError,
    MemoryConnectionError,
    MemoryImportError,
    MemoryStoreError,
    StoreLockedError,
    UnknownEmbedderError,
)
from .exchange import MemoryRecord, export_lines, import_records, read_export, write_export
from .records import (
    DESIGN_TAGS,
    EXPERIENCE_TYPES,
    ExperienceRecord,
    ExperienceType,
    Inspiration,
    ScoredInspiration,
)
from .starter import load_starter_knowledge, read_inspirations
from .stores import ExperienceStore, KnowledgeStore, Memory, open_memory

__all__ = [
    "DESIGN_TAGS",
    "EMBEDDER_NAMES",
    "EXPERIENCE_TYPES",
    "Embedder",
    "EmbedderMismatchError",
    "EmbedderUnavailableError",
    "ExperienceRecord",
    "ExperienceStore",
    "ExperienceType",
    "HashingEmbedder",
    "Inspiration",
    "KnowledgeStore",
    "Memory",
    "MemoryConfig",
    "MemoryConfigError",
    "MemoryConnectionError",
    "MemoryImportError",
    "MemoryRecord",
    "MemoryStoreError",
    "MiniLMEmbedder",
    "ScoredInspiration",
    "StoreLockedError",
    "UnknownEmbedderError",
    "collection_name",
    "export_lines",
    "import_records",
    "load_starter_knowledge",
    "make_client",
    "make_embedder",
    "open_memory",
    "read_export",
    "read_inspirations",
    "write_export",
]
