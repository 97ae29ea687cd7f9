"""The Reader's ingestion: papers in (PDF, text, Markdown, a folder, or arXiv), inspirations out,
into the knowledge base with provenance. Each chunk of a paper goes to a fresh Reader whose only
tool stores one inspiration; the tool deduplicates by embedding similarity. Paper text reaches the
model as quoted data, and nothing the model writes is executed."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autogen_core.models import ChatCompletionClient
from pydantic import BaseModel, Field

from tools.base import ToolResult, TypedTool
from tools.memory import Inspiration, KnowledgeStore
from .papers import Chunk, Paper, Segment, Skipped, chunks, load_papers

from .offline.concepts import addresses_agent
from .protocol import DONE, quote_excerpt, reader_task
from .llm.errors import server_message
from .team import reader_team
from .transcript import Transcript

log = logging.getLogger("nader.reader")


class ReaderSettings(BaseModel):
    chunk_tokens: int = Field(1500, ge=100, description="paper text per Reader call")
    max_pages: int = Field(60, ge=1, description="longer papers are truncated, with a note")
    dedup_threshold: float = Field(0.92, gt=0, le=1, description="cosine similarity above which an idea is known")
    attempts: int = Field(2, ge=1, description="tries per chunk when the Reader's output is malformed")
    max_per_chunk: int = Field(3, ge=1)
    recursive: bool = False
    arxiv_max_results: int = Field(3, ge=1)
    arxiv_api: str = Field("https://export.arxiv.org/api/query", description="the arXiv API's query endpoint")
    arxiv_timeout_s: float = Field(60.0, gt=0, description="per request to arXiv")


MODEL_ERROR = "model error"
GIVE_UP_AFTER = 3  # chunks in a row that failed because the model failed: the rest of the paper is skipped


class ReaderError(RuntimeError):
    """The source cannot be read at all (missing path, arXiv unreachable)."""


class NewPaperInspiration(BaseModel):
    text: str = Field(min_length=20, max_length=1200,
                      description="two to four sentences in your own words: what to change in a block and why")
    tags: list[str] = Field(default_factory=list, max_length=8, description="tags from the list in your instructions")
    section: str = Field("", max_length=200, description="the section the idea comes from")
    page: int | None = Field(None, ge=1, description="the page the idea comes from")


class StoredResult(ToolResult):
    id: str | None = None
    duplicate_of: str | None = None


class PaperReport(BaseModel):
    file: str
    title: str
    pages: int
    truncated: str | None = None
    chunks: int = 0
    already_read: int = Field(0, description="chunks this model had read before: not sent again")
    added: list[str] = []
    duplicates: int = 0
    refused: list[str] = Field([], description="tool calls refused in chunks that stored other ideas")
    skipped_chunks: list[str] = []


class IngestReport(BaseModel):
    papers: list[PaperReport] = []
    skipped: list[Skipped] = []

    @property
    def added(self) -> int:
        return sum(len(p.added) for p in self.papers)

    def lines(self) -> list[str]:
        out = [f"Reader: {len(self.papers)} paper(s) read, {len(self.skipped)} skipped; {self.added} inspiration(s) "
               f"added, {sum(p.duplicates for p in self.papers)} already known"]
        for p in self.papers:
            note = f" ({p.truncated})" if p.truncated else ""
            again = f", {p.already_read} of {p.chunks} chunk(s) read before" if p.already_read else ""
            out.append(f"  {Path(p.file).name}: \"{p.title}\", {len(p.added)} added, {p.duplicates} known{again}{note}")
            out += [f"    call refused: {r}" for r in p.refused]
            out += [f"    chunk skipped: {r}" for r in p.skipped_chunks]
        out += [f"  skipped {Path(s.file).name}: {s.reason}" for s in self.skipped]
        return out


def store_tool(knowledge: KnowledgeStore, chunk: Chunk, model: str, settings: ReaderSettings,
               tally: PaperReport) -> TypedTool:
    """The Reader's one tool, bound to the chunk it reads. Provenance (title, file, section, page)
    comes from the chunk: the model's section and page only choose among the chunk's own segments.
    An idea close to a stored one is not stored again; an excerpt gives at most
    `settings.max_per_chunk` ideas; text addressed to an agent is never stored."""
    taken = 0

    def run(n: NewPaperInspiration) -> StoredResult:
        nonlocal taken
        if taken >= settings.max_per_chunk:
            return _refuse(tally, f"this excerpt's limit of {settings.max_per_chunk} ideas is reached; reply {DONE}")
        if addresses_agent(n.text):
            return _refuse(tally, "the text reads as an instruction to an agent, not an architecture idea")
        origin = _origin(chunk, n.section, n.page, n.text)
        ident = "paper-" + hashlib.blake2b(f"{chunk.title}\n{n.text.strip()}".encode(), digest_size=8).hexdigest()
        item = Inspiration(id=ident, text=n.text, source=chunk.title, tags=n.tags,
                           file=str(Path(chunk.file).resolve()), page=origin.page, section=origin.section, model=model)
        taken += 1
        # Compared as stored (text, tags and source), so the same idea scores 1.0 however it is embedded.
        known = knowledge.get(ident)
        if known is None:
            hits = knowledge.search(item.embedding_text(), k=1)
            known = hits[0] if hits and hits[0].score >= settings.dedup_threshold else None
        if known is not None:
            tally.duplicates += 1
            return StoredResult(duplicate_of=known.id)
        knowledge.add([item])
        tally.added.append(ident)
        return StoredResult(id=ident)

    return TypedTool("add_inspiration", "Store one architecture idea from the excerpt in the knowledge base.",
                     NewPaperInspiration, StoredResult, run)


def _refuse(tally: PaperReport, why: str) -> StoredResult:
    tally.refused.append(why)
    return StoredResult(ok=False, error=f"not stored: {why}")


def _origin(chunk: Chunk, section: str, page: int | None, text: str) -> Segment:
    """The chunk segment an idea comes from: the one on the model's page and section when there is
    one, else the segment (on that page, if any) sharing most words with the idea."""
    on_page = [s for s in chunk.segments if s.page == page] or chunk.segments
    named = [s for s in on_page if " ".join(s.section.split()).lower() == " ".join(section.split()).lower()]
    pool = named or on_page
    words = _words(text)
    return max(pool, key=lambda s: len(words & _words(s.text)))  # the first of equals: reading order


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]{3,}", text)}


def _quoted(text: str, one_line: bool = False) -> str:
    """Paper text cannot close or open the fence around it, nor start a header line of its own."""
    text = quote_excerpt(text)
    return " ".join(text.split()) if one_line else text


def chunk_task(chunk: Chunk, max_per_chunk: int) -> str:
    # Fences make the excerpt data: the instructions around it are the only ones that count.
    return reader_task(chunk.index + 1, chunk.where(), _quoted(chunk.title, True), _quoted(chunk.text), max_per_chunk)


def chunk_key(chunk: Chunk, model: str) -> str:
    """What makes a chunk 'already read': the same text of the same paper, by the same model."""
    return hashlib.sha256(f"{model}\n{chunk.title}\n{chunk.text}".encode()).hexdigest()


async def read_chunk(client: ChatCompletionClient, tool: TypedTool, chunk: Chunk, settings: ReaderSettings,
                     log_dir: Path, redact: Callable[[str], str], events: Callable[[], list[dict]] = lambda: [],
                     tally: PaperReport | None = None) -> str | None:
    """Run the Reader on one chunk, retrying when its output was malformed; the reason when the
    chunk is skipped, else None. A malformed call never stores anything: the tool validates first.
    Calls that failed in an attempt that stored other ideas are noted in `tally.refused`."""
    errors: list[str] = []
    for attempt in range(1, settings.attempts + 1):
        transcript = Transcript()
        before = len(errors)
        stored = 0
        try:
            async for item in reader_team(client, [tool]).run_stream(task=chunk_task(chunk, settings.max_per_chunk)):
                transcript.add(item)
        except Exception as exc:  # noqa: BLE001 - a failing model skips this chunk, not the paper
            errors.append(f"{MODEL_ERROR}: {server_message(exc)[:200]}")
        for r in transcript.records:
            if r["type"] != "ToolCallExecutionEvent":
                continue
            for res in r["content"]:
                body = res.get("content")
                if res.get("is_error") or (isinstance(body, dict) and body.get("ok") is False):
                    errors.append(str(body if not isinstance(body, dict) else body.get("error"))[:200])
                else:
                    stored += 1
        transcript.merge_events(events())  # retries and model errors inside the Reader's calls
        transcript.write(log_dir / f"chunk{chunk.index:03d}" / f"attempt{attempt}",
                         f"Reader: {chunk.title}, {chunk.where()}", redact=redact)
        if len(errors) == before or stored:
            if tally is not None:  # refusals by the tool itself are noted there already
                tally.refused += [e for e in errors[before:] if not e.startswith("not stored: ")]
            return None  # clean, or some ideas stored: the malformed calls among them stored nothing
    what = "the model failed" if errors[-1].startswith(MODEL_ERROR) else "malformed Reader output"
    return f"{chunk.where()}, {chunk.section}: {what} after {settings.attempts} attempt(s): {errors[-1]}"


def fetch_arxiv(spec: str, dest: Path, settings: ReaderSettings) -> Path:
    """`arxiv:QUERY` or `arxiv:ID,ID`: look the papers up with the arxiv package and download
    their PDFs into dest (needs the network)."""
    try:
        import arxiv
    except ImportError:
        raise ReaderError(f"read={spec} needs the arxiv package: pip install arxiv") from None
    body = spec.split(":", 1)[1].strip()
    if not body:
        raise ReaderError("read=arxiv: needs a query or ids, e.g. read=arxiv:1709.01507 or read='arxiv:squeeze excitation'")
    ids = [x.strip() for x in body.split(",")]
    is_ids = all(re.fullmatch(r"(\d{4}\.\d{4,5}|[a-z\-]+/\d{7})(v\d+)?", x) for x in ids)
    search = arxiv.Search(id_list=ids) if is_ids else arxiv.Search(query=body, max_results=settings.arxiv_max_results)
    client = arxiv.Client(num_retries=1)  # the package's default delay keeps to arXiv's request rate
    client.query_url_format = settings.arxiv_api + "?{}"
    dest.mkdir(parents=True, exist_ok=True)
    try:
        results = list(client.results(search))
        for result in results:
            if not result.pdf_url:
                raise ReaderError(f"arXiv lists no PDF for {result.get_short_id()}")
            _download_pdf(result.pdf_url, dest / f"{result.get_short_id().replace('/', '_')}.pdf", settings.arxiv_timeout_s)
    except ReaderError:
        raise
    except Exception as exc:  # noqa: BLE001 - no network, a refused request, a bad id: all one message
        raise ReaderError(f"cannot fetch {spec} from arXiv ({type(exc).__name__}: {server_message(exc)[:200]}); "
                          f"without network, download the PDFs and use read=PATH") from None
    if not results:
        raise ReaderError(f"arXiv found nothing for {spec}")
    return dest


def _download_pdf(url: str, path: Path, timeout_s: float) -> None:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "nader-autogen"}),
                                timeout=timeout_s) as resp:
        data = resp.read()
    if b"%PDF-" not in data[:1024]:
        raise ReaderError(f"{url} did not return a PDF")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)  # never a half-written PDF under the final name


async def ingest(sources: list[str] | str, client: ChatCompletionClient, knowledge: KnowledgeStore, run_dir: Path,
                 settings: ReaderSettings, count_tokens: Callable[[str], int], model: str,
                 redact: Callable[[str], str] = lambda s: s, progress: Callable[[str], None] = lambda _: None,
                 events: Callable[[], list[dict]] = lambda: [], should_stop: Callable[[], str | None] = lambda: None,
                 ) -> IngestReport:
    """Read every source (a path or arxiv:...) into `knowledge`. `should_stop` names a reached run
    cap, checked between chunks; `events` yields the model-call events to put in chunk transcripts.
    Chunks this model has read into this knowledge base before are not sent again."""
    out = run_dir / "reader"
    report = IngestReport()
    paths = []
    for source in [sources] if isinstance(sources, str) else sources:
        if source.startswith("arxiv:"):  # fetched first: an unreachable arXiv costs no model call
            paths.append(fetch_arxiv(source, out / "arxiv" / _slug(source[6:]), settings))
        else:
            path = Path(source).expanduser()
            if not path.exists():
                raise ReaderError(f"read={source}: no such file or folder")
            paths.append(path)
    streak = _FailureStreak()
    try:
        for path in paths:
            papers, skipped = load_papers(path, recursive=settings.recursive, max_pages=settings.max_pages)
            report.skipped += skipped
            for s in skipped:
                log.warning("Reader skipped %s: %s", s.file, s.reason)
            for paper in papers:
                log_dir = out / f"{len(report.papers):02d}-{_slug(paper.title)}"
                report.papers.append(await _read_paper(paper, client, knowledge, log_dir, settings, count_tokens,
                                                       model, redact, progress, events, should_stop, streak))
    finally:  # also when reading stopped half-way: what was done is on record
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(redact(json.dumps(report.model_dump(), indent=2)))
    return report


@dataclass
class _FailureStreak:
    """Chunks in a row, across papers, that failed because the model failed."""

    chunks: int = 0


async def _read_paper(paper: Paper, client, knowledge: KnowledgeStore, log_dir: Path, settings: ReaderSettings,
                      count_tokens, model: str, redact, progress, events, should_stop,
                      streak: _FailureStreak) -> PaperReport:
    parts = chunks(paper, settings.chunk_tokens, count_tokens)
    rep = PaperReport(file=paper.file, title=paper.title, pages=paper.page_count, truncated=paper.truncated,
                      chunks=len(parts))
    if paper.truncated:
        log.warning("Reader truncated %s: %s", paper.file, paper.truncated)
    for i, chunk in enumerate(parts, 1):
        key = chunk_key(chunk, model)
        if knowledge.was_read(key):
            rep.already_read += 1
            continue
        stop = should_stop()
        if stop or streak.chunks >= GIVE_UP_AFTER:
            why = stop or f"the model failed on {streak.chunks} chunks in a row"
            rep.skipped_chunks.append(f"chunks {i}-{len(parts)} not read: {why}")
            log.warning("Reader stopped reading %s: %s", paper.file, why)
            break
        progress(f"Reader: {paper.title[:60]}: chunk {i}/{len(parts)}")
        tool = store_tool(knowledge, chunk, model, settings, rep)
        reason = await read_chunk(client, tool, chunk, settings, log_dir, redact, events, tally=rep)
        streak.chunks = streak.chunks + 1 if reason and ": the model failed after" in reason else 0
        if reason:
            rep.skipped_chunks.append(reason)
            log.warning("Reader skipped a chunk of %s: %s", paper.file, reason)
        else:  # read to the end: a later run with this model need not send it again
            knowledge.mark_read(key, {"title": chunk.title, "file": str(Path(chunk.file).resolve()),
                                      "chunk": chunk.index, "pages": chunk.pages, "model": model})
    return rep


def _slug(title: str) -> str:
    return (re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower() or "paper")[:60]
