"""`python -m tools.memory export|import`: knowledge and experience to and from a JSON-lines file.

    python -m tools.memory export --path MEMORY_DIR -o FILE.jsonl     (-o omitted: stdout)
    python -m tools.memory import FILE.jsonl --path MEMORY_DIR [--embedder hashing|minilm]

`--url URL` instead of `--path` reaches a Qdrant server. The file format is in tools/memory/exchange.py.
A summary line goes to stderr. Exit status 0, 1 for a store or file problem (one line), 2 for
a usage error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .config import MemoryConfig, collection_name, make_client
from .embedders import EMBEDDER_NAMES, make_embedder
from .errors import MemoryStoreError
from .exchange import import_records, read_export, write_export
from .stores import ExperienceStore, KnowledgeStore, Memory, open_memory

PROG = "python -m tools.memory"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write every knowledge, experience and read-log record to a JSONL file")
    im = sub.add_parser("import", help="add the records of a JSONL export file to a memory")
    im.add_argument("file", help="an export file (python -m tools.memory export)")
    for s in (ex, im):
        where = s.add_mutually_exclusive_group(required=True)
        where.add_argument("--path", help="a local memory folder (a run's memory/, or memory.path)")
        where.add_argument("--url", help="a Qdrant server, e.g. http://127.0.0.1:6333")
        s.add_argument("--prefix", default="nader", help="collection name prefix (memory.prefix; default nader)")
    ex.add_argument("-o", "--out", default="-", help="the file to write (default: stdout)")
    im.add_argument("--embedder", choices=EMBEDDER_NAMES, default=None,
                    help="embedder of a new store (default: the store's own; minilm for a new one)")
    return p


def stored_embedder(client: Any, prefix: str) -> str | None:
    """The embedder an existing store was built with (as make_embedder reads it), or None for a new
    store. Read from the collections themselves, so that exporting needs no choice of embedder."""
    for base in (KnowledgeStore.BASE_NAME, ExperienceStore.BASE_NAME):
        name = collection_name(prefix, base)
        if not client.collection_exists(name):
            continue
        points, _ = client.scroll(name, limit=1, with_payload=["_embedder"])
        if points and (points[0].payload or {}).get("_embedder"):
            return str(points[0].payload["_embedder"])
        size = getattr(client.get_collection(name).config.params.vectors, "size", None)
        if size is not None:  # an empty collection: its vector size tells the embedder
            return "minilm" if int(size) == 384 else f"hashing-{int(size)}"
    return None


def _open(a: argparse.Namespace, embedder: str | None, existing: bool) -> Memory:
    if a.path and existing and not Path(a.path).expanduser().is_dir():
        raise MemoryStoreError(f"no memory folder at {a.path}")
    cfg = MemoryConfig(url=a.url, path=a.path, prefix=a.prefix, load_starter=False)
    client = make_client(cfg)
    try:
        stored = stored_embedder(client, a.prefix)
        if existing and stored is None:
            raise MemoryStoreError(f"{a.path or a.url} holds no knowledge or experience collection "
                                   f"(prefix {a.prefix!r})")
        return open_memory(cfg, embedder=make_embedder(embedder or stored or "minilm"), client=client)
    except BaseException:
        client.close()
        raise


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        if a.command == "export":
            with _open(a, None, existing=True) as memory:
                counts = write_export(memory, sys.stdout if a.out == "-" else a.out)
            where = "stdout" if a.out == "-" else a.out
            print(f"exported {_counts(counts)} to {where}", file=sys.stderr)
        else:
            records = read_export(a.file)  # the whole file is checked before the store is touched
            with _open(a, a.embedder, existing=False) as memory:
                result = import_records(memory, records)
            print(f"imported {a.file}: " + ", ".join(f"{c} {r['records']} ({r['new']} new)"
                                                    for c, r in result.items()), file=sys.stderr)
    except MemoryStoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 0


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{c} {n}" for c, n in counts.items())


if __name__ == "__main__":
    raise SystemExit(main())
