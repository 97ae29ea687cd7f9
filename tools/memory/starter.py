"""The starter knowledge base shipped with the package (`starter_knowledge.jsonl`)."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from .errors import MemoryStoreError
from .records import DESIGN_TAGS, Inspiration

__all__ = ["STARTER_FILE", "load_starter_knowledge", "read_inspirations"]

STARTER_FILE = "starter_knowledge.jsonl"


def read_inspirations(path: str | Path, *, allowed_tags: frozenset[str] | None = None) -> list[Inspiration]:
    """Read inspirations from a JSON-lines file (one object per line; blank lines and lines starting
    with `#` are skipped). Ids must be unique; with `allowed_tags`, every tag must be one of them."""
    text = Path(path).read_text(encoding="utf-8")
    return _parse(text, str(path), allowed_tags)


def load_starter_knowledge() -> list[Inspiration]:
    """The starter inspirations, validated: unique ids, a source each, tags from `DESIGN_TAGS`."""
    text = resources.files(__package__).joinpath(STARTER_FILE).read_text(encoding="utf-8")
    return _parse(text, STARTER_FILE, DESIGN_TAGS)


def _parse(text: str, where: str, allowed_tags: frozenset[str] | None) -> list[Inspiration]:
    items: list[Inspiration] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            item = Inspiration.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise MemoryStoreError(f"{where}:{lineno}: not a valid inspiration: {exc}") from exc
        if item.id in seen:
            raise MemoryStoreError(f"{where}:{lineno}: duplicate inspiration id {item.id!r}")
        if not item.tags:
            raise MemoryStoreError(f"{where}:{lineno}: inspiration {item.id!r} has no tags")
        if allowed_tags is not None:
            bad = [t for t in item.tags if t not in allowed_tags]
            if bad:
                raise MemoryStoreError(
                    f"{where}:{lineno}: inspiration {item.id!r} has unknown tags {bad}; "
                    f"allowed: {', '.join(sorted(allowed_tags))}"
                )
        seen.add(item.id)
        items.append(item)
    return items
