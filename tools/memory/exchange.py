"""Knowledge and experience as a plain JSON-lines file: the way to share or back up a memory.

A memory folder is Qdrant's embedded store, which unpickles what it holds, so opening someone
else's folder runs whatever its author put there. This file holds JSON only, and every record is
validated before anything is written.

The first line is a header, `{"format": "nader-memory", "version": 1, "embedder": ..., "counts": ...}`;
then one record per line, `{"collection": C, "text": T, "payload": P}`: C is `knowledge` (P an
Inspiration), `experience` (P an ExperienceRecord) or `read_log` (P the Reader's note that a paper
excerpt was read: `key` and where it came from); T is the text that is embedded, for readers of the
file. Hand-written files may leave out the header and the texts.

Vectors are not carried: the importing store embeds each record with its own embedder. A collection
holds the vectors of one embedder, so vectors made elsewhere (another embedder, another model
version) could not be mixed in; and a file cannot plant a vector that disagrees with its text.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import MemoryImportError
from .records import ExperienceRecord, Inspiration
from .stores import Memory

__all__ = ["FORMAT", "VERSION", "MemoryRecord", "export_lines", "import_records", "read_export", "write_export"]

FORMAT = "nader-memory"
VERSION = 1
Collection = Literal["knowledge", "experience", "read_log"]


class MemoryRecord(BaseModel):
    """One line of an export file, validated: its payload is a record its collection accepts."""

    model_config = ConfigDict(extra="forbid")

    collection: Collection
    payload: dict[str, Any]
    text: str = ""

    def checked(self) -> "MemoryRecord":
        """The record with its payload validated (and normalised) by its collection's model."""
        if self.collection == "knowledge":
            payload = Inspiration.model_validate(self.payload).model_dump()
        elif self.collection == "experience":
            payload = ExperienceRecord.model_validate(self.payload).with_id().model_dump()
        else:
            if not isinstance(self.payload.get("key"), str) or not self.payload["key"]:
                raise ValueError("a read_log payload needs a non-empty string 'key'")
            payload = dict(self.payload)
        return self.model_copy(update={"payload": payload})


# ------------------------------------------------------------------------------ export
def export_lines(memory: Memory) -> list[str]:
    """The export file of `memory`, line by line: the header, then every inspiration (by id), every
    experience record (in the order they were added), every read-log entry (by key)."""
    records = [MemoryRecord(collection="knowledge", text=i.embedding_text(), payload=i.model_dump())
               for i in memory.knowledge.list()]
    records += [MemoryRecord(collection="experience", text=r.embedding_text(), payload=r.model_dump())
                for r in memory.experience.all()]
    records += [MemoryRecord(collection="read_log", text=str(e["key"]), payload=e)
                for e in memory.knowledge.read_log()]
    counts = {c: sum(r.collection == c for r in records) for c in ("knowledge", "experience", "read_log")}
    header = {"format": FORMAT, "version": VERSION, "embedder": memory.embedder.name, "counts": counts,
              "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return [json.dumps(header)] + [json.dumps(r.model_dump(), ensure_ascii=False) for r in records]


def write_export(memory: Memory, out: str | Path | IO[str]) -> dict[str, int]:
    """Write the export file of `memory` to a path or an open text stream; returns the counts."""
    lines = export_lines(memory)
    text = "\n".join(lines) + "\n"
    if isinstance(out, (str, Path)):
        from graphs.atomic import atomic_write

        atomic_write(out, text)
    else:
        out.write(text)
    return json.loads(lines[0])["counts"]


# ------------------------------------------------------------------------------ import
def read_export(path: str | Path) -> list[MemoryRecord]:
    """Every record of an export file, validated; MemoryImportError naming the file and the first
    bad line. Blank lines are skipped; a header may only open the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MemoryImportError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    records: list[MemoryRecord] = []
    first = True
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise MemoryImportError(f"{where}: not JSON ({exc})") from None
        if not isinstance(entry, dict):
            raise MemoryImportError(f"{where}: expected a JSON object, got {type(entry).__name__}")
        if "format" in entry:
            _check_header(entry, where, first)
        else:
            records.append(_record(entry, where))
        first = False
    return records


def _check_header(entry: dict, where: str, first: bool) -> None:
    if not first:
        raise MemoryImportError(f"{where}: a header line may only open the file")
    if entry.get("format") != FORMAT:
        raise MemoryImportError(f"{where}: format {entry.get('format')!r} is not {FORMAT!r}")
    if entry.get("version") != VERSION:
        raise MemoryImportError(f"{where}: version {entry.get('version')!r} of {FORMAT}; this program reads "
                                f"version {VERSION}")


def _record(entry: dict, where: str) -> MemoryRecord:
    try:
        return MemoryRecord.model_validate(entry).checked()
    except ValidationError as exc:
        e = exc.errors()[0]
        field = ".".join(str(x) for x in e["loc"]) or "record"
        raise MemoryImportError(f"{where}: {entry.get('collection', '?')} record: {field}: {e['msg']}") from None
    except ValueError as exc:
        raise MemoryImportError(f"{where}: {entry.get('collection', '?')} record: {exc}") from None


def import_records(memory: Memory, records: Iterable[MemoryRecord]) -> dict[str, dict[str, int]]:
    """Add the records to `memory` (re-embedded by its embedder). Records with an id or key the
    store holds replace it, so importing a file twice adds nothing. Returns, per collection, how
    many records the file held and how many of them were new."""
    records = list(records)
    by = {c: [r.payload for r in records if r.collection == c] for c in ("knowledge", "experience", "read_log")}
    before = {"knowledge": memory.knowledge.count(), "experience": memory.experience.count(),
              "read_log": len(memory.knowledge.read_log())}
    if by["knowledge"]:
        memory.knowledge.add(by["knowledge"])
    memory.experience.add_many(by["experience"])  # one by one: they keep their order
    for entry in by["read_log"]:
        memory.knowledge.mark_read(entry["key"], {k: v for k, v in entry.items() if k != "key"})
    after = {"knowledge": memory.knowledge.count(), "experience": memory.experience.count(),
             "read_log": len(memory.knowledge.read_log())}
    return {c: {"records": len(by[c]), "new": after[c] - before[c]} for c in by}
