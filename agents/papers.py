"""Paper text for the Reader: load PDFs and text/Markdown files, cut them into sections and chunks.

Pure text handling, no LLM. Bad files never raise: each one comes back as a `Skipped` with a
sentence saying what is wrong with it. Token counting is injected (`chunks(..., count_tokens)`), so
this module needs no tokenizer. Paper text is data: nothing here interprets it.
"""
from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pydantic import BaseModel, Field

__all__ = [
    "MAX_CHARS",
    "MAX_PAGES",
    "PAPER_SUFFIXES",
    "Chunk",
    "PageText",
    "Paper",
    "Section",
    "Segment",
    "Skipped",
    "chunks",
    "load_paper",
    "load_papers",
    "parse_segments",
    "render_segments",
    "sections",
    "split_sentences",
]

MAX_PAGES = 60
MAX_CHARS = 400_000  # about 100k tokens: more than a Reader pass should ever need
MAX_BYTES = 100 * 1024 * 1024
PAPER_SUFFIXES: tuple[str, ...] = (".pdf", ".txt", ".md", ".markdown", ".text")


class PageText(BaseModel):
    """Text of one page (1-based), or of one paragraph and the page it is on."""

    page: int = Field(ge=1)
    text: str


class Paper(BaseModel):
    title: str
    file: str
    pages: list[PageText]
    page_count: int = Field(description="pages in the file, including any not kept")
    truncated: str | None = Field(default=None, description="why and how the text was cut, if it was")


class Skipped(BaseModel):
    file: str
    reason: str


class Section(BaseModel):
    name: str
    page: int = Field(description="page where the section starts")
    text: str
    paragraphs: list[PageText] = Field(description="the section's paragraphs, each with its page")


class Segment(BaseModel):
    """A run of a chunk's text from one section on one page: the unit of provenance."""

    section: str
    page: int = Field(ge=1)
    text: str


class Chunk(BaseModel):
    """Consecutive sections and pages of a paper, packed up to a token budget. `text` is what the
    Reader reads: each segment under a `[SECTION, page N]` line, so that an idea can be traced to
    the section and page it came from."""

    title: str
    file: str
    segments: list[Segment] = Field(min_length=1)
    text: str
    index: int = Field(description="position of the chunk in the paper, from 0")

    @property
    def pages(self) -> list[int]:
        return sorted({s.page for s in self.segments})

    @property
    def page(self) -> int:
        return self.segments[0].page

    @property
    def section(self) -> str:
        return self.segments[0].section

    def where(self) -> str:
        """'pages 1-2' or 'page 3', for reports."""
        first, last = self.pages[0], self.pages[-1]
        return f"page {first}" if first == last else f"pages {first}-{last}"


# --------------------------------------------------------------------------------------------------
# Loading


def load_papers(
    path: str | Path,
    *,
    recursive: bool = False,
    max_pages: int = MAX_PAGES,
    max_chars: int = MAX_CHARS,
) -> tuple[list[Paper], list[Skipped]]:
    """Papers read from `path` (a PDF, a text/Markdown file, or a folder of them) and the files
    skipped with a reason. In a folder, files are taken in sorted order; hidden files are ignored
    and files of other types are reported as skipped. Never raises on a bad file."""
    root = Path(path)
    if root.is_dir():
        files = sorted(
            (p for p in (root.rglob("*") if recursive else root.iterdir())
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)),
            key=lambda p: str(p.relative_to(root)),
        )
    elif root.exists():
        files = [root]
    else:
        return [], [Skipped(file=str(root), reason="no such file or folder")]

    papers: list[Paper] = []
    skipped: list[Skipped] = []
    if root.is_dir() and not recursive:  # said, not silently passed over
        skipped += [Skipped(file=str(d), reason="sub-folder not read (reader.recursive=true reads sub-folders)")
                    for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    for f in files:
        if root.is_dir() and f.suffix.lower() not in PAPER_SUFFIXES:
            skipped.append(Skipped(file=str(f), reason=_unsupported(f)))
            continue
        result = load_paper(f, max_pages=max_pages, max_chars=max_chars)
        (papers if isinstance(result, Paper) else skipped).append(result)
    return papers, skipped


def load_paper(path: str | Path, *, max_pages: int = MAX_PAGES, max_chars: int = MAX_CHARS) -> Paper | Skipped:
    """One file as a Paper, or a Skipped saying why not. The type is sniffed from the content (a
    `%PDF-` header), not trusted from the name."""
    f = Path(path)
    try:
        size = f.stat().st_size
        if size > MAX_BYTES:
            return Skipped(file=str(f), reason=f"file too large ({size // (1024 * 1024)} MiB; the limit is "
                                                 f"{MAX_BYTES // (1024 * 1024)} MiB)")
        data = f.read_bytes()
    except OSError as exc:
        return Skipped(file=str(f), reason=f"cannot read the file: {exc.strerror or exc}")
    if not data.strip():
        return Skipped(file=str(f), reason="empty file" if not data else "empty file (only whitespace)")
    # The PDF spec lets the header sit anywhere in the first 1024 bytes.
    if b"%PDF-" in data[:1024]:
        return _load_pdf(f, data, max_pages, max_chars)
    if f.suffix.lower() == ".pdf":
        return Skipped(file=str(f), reason="not a readable PDF: no %PDF header")
    return _load_text(f, data, max_pages, max_chars)


def _unsupported(f: Path) -> str:
    kind = f"'{f.suffix}'" if f.suffix else "without an extension"
    return f"unsupported file type {kind}; expected .pdf, .txt or .md"


def _load_pdf(f: Path, data: bytes, max_pages: int, max_chars: int) -> Paper | Skipped:
    import io

    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    def skip(reason: str) -> Skipped:
        return Skipped(file=str(f), reason=reason)

    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                # Many PDFs are encrypted only against editing, with an empty user password.
                try:
                    if not reader.decrypt(""):
                        return skip("encrypted PDF (needs a password; none is available)")
                except DependencyError:
                    return skip("encrypted PDF (AES; decrypting it needs the 'cryptography' package)")
            page_count = len(reader.pages)
        except Exception as exc:  # pypdf raises many types on broken files; all mean "unreadable"
            return skip(f"not a readable PDF: {_first_line(exc)}")
        if page_count == 0:
            return skip("not a readable PDF: it has no pages")

        pages: list[PageText] = []
        first_error: str | None = None
        for i in range(min(page_count, max_pages)):
            try:
                text = reader.pages[i].extract_text() or ""
            except Exception as exc:  # one bad page should not lose the paper
                first_error = first_error or _first_line(exc)
                text = ""
            pages.append(PageText(page=i + 1, text=_clean(text)))
        meta_title = _pdf_title(reader)

    if not any(p.text.strip() for p in pages):
        if first_error:
            return skip(f"not a readable PDF: {first_error}")
        return skip("no extractable text (scanned PDF?)")
    return _make_paper(f, pages, page_count, meta_title, max_pages, max_chars)


def _pdf_title(reader) -> str | None:
    try:
        meta = reader.metadata
        return str(meta.title) if meta is not None and meta.title else None
    except Exception:  # a broken info dictionary just means no metadata title
        return None


def _load_text(f: Path, data: bytes, max_pages: int, max_chars: int) -> Paper | Skipped:
    text = _decode(data)
    if isinstance(text, Skipped):
        return Skipped(file=str(f), reason=text.reason)
    meta_title = None
    if f.suffix.lower() in (".md", ".markdown"):
        text, meta_title = _front_matter(text)
    # A form feed is the page break of plain-text exports; otherwise the file is one page.
    parts = text.split("\f")
    pages = [PageText(page=i + 1, text=_clean(t)) for i, t in enumerate(parts[:max_pages])]
    if not any(p.text.strip() for p in pages):
        return Skipped(file=str(f), reason="empty file (only whitespace)")
    return _make_paper(f, pages, len(parts), meta_title, max_pages, max_chars)


_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(?P<body>.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)


def _front_matter(text: str) -> tuple[str, str | None]:
    """Markdown without its YAML front matter, and the title it gives (read as text, not YAML)."""
    m = _FRONT_MATTER.match(text)
    if not m:
        return text, None
    title = re.search(r"^title:[ \t]*(?P<t>.+?)[ \t]*$", m.group("body"), re.M)
    return text[m.end():], title.group("t").strip("'\"") if title else None


_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),  # before UTF-16 LE: its BOM starts the same way
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_UNKNOWN_ENCODING = "unknown text encoding (not UTF-8/UTF-16/Latin-1 text)"


def _decode(data: bytes) -> str | Skipped:
    """Text of a file that is not a PDF, or a Skipped (the file field filled in by the caller)."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                return Skipped(file="", reason=_UNKNOWN_ENCODING)
            return Skipped(file="", reason="binary file, not text or PDF") if _controls_share(text) > 0.05 else text
    head = data[:65536]
    if b"\x00" in head:
        utf16 = _bomless_utf16(data)  # ASCII-range text in UTF-16: every other byte is NUL
        if utf16 is not None:
            return utf16
        return Skipped(file="", reason="binary file, not text or PDF")
    if _controls_share(head.decode("latin-1")) > 0.05:
        return Skipped(file="", reason="binary file, not text or PDF")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # UTF-8 with a few broken bytes (a bad copy, a truncated character) is still UTF-8, when the
    # rest of it holds real multi-byte characters; Western 8-bit text almost never does.
    lossy = data.decode("utf-8", errors="replace")
    bad = lossy.count("\ufffd")
    if re.search(r"[\u0080-\U0010ffff]", lossy.replace("\ufffd", "")) and bad <= max(2, len(lossy) // 1000):
        return lossy
    # Windows-1252 first (curly quotes and dashes in 0x80-0x9F), then Latin-1, which decodes any byte
    # string: accept either only when it looks like Western text, mostly ASCII with no C1 controls.
    for codec in ("cp1252", "latin-1"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        visible = [c for c in text if not c.isspace()]
        non_ascii = sum(1 for c in visible if ord(c) > 127)
        c1 = sum(1 for c in visible if 0x80 <= ord(c) <= 0x9F)
        if visible and non_ascii / len(visible) <= 0.2 and c1 / len(visible) <= 0.01:
            return text
    return Skipped(file="", reason=_UNKNOWN_ENCODING)


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 text without a byte-order mark, told by where its NUL bytes are; else None."""
    head = data[:65536]
    even, odd = head[0::2], head[1::2]
    for codec, zeros, other in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if len(head) >= 4 and zeros.count(0) >= 0.7 * len(zeros) and other.count(0) <= 0.01 * len(other):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                return None
            return text if _controls_share(text) <= 0.05 else None
    return None


def _controls_share(text: str) -> float:
    if not text:
        return 0.0
    bad = sum(1 for c in text if (ord(c) < 32 and c not in "\t\n\r\f") or ord(c) == 127)
    return bad / len(text)


def _make_paper(f: Path, pages: list[PageText], page_count: int, meta_title: str | None,
                max_pages: int, max_chars: int) -> Paper:
    reasons: list[str] = []
    if page_count > max_pages:
        reasons.append(f"{page_count} pages; kept the first {max_pages}")
    total = sum(len(p.text) for p in pages)
    if total > max_chars:
        kept: list[PageText] = []
        left = max_chars
        for p in pages:
            if left <= 0:
                break
            kept.append(PageText(page=p.page, text=p.text[:left]))
            left -= len(p.text)
        reasons.append(f"{total} characters in the pages read; kept the first {max_chars}")
        pages = kept
    return Paper(title=_title(meta_title, pages, f), file=str(f), pages=pages, page_count=page_count,
                 truncated="; ".join(reasons) or None)


_TRIVIAL_TITLE = re.compile(r"^(untitled|title|document|paper|slides?|microsoft word\b.*|.*\.(pdf|docx?|tex|dvi|ps))$", re.I)


def _title(meta_title: str | None, pages: list[PageText], f: Path) -> str:
    if meta_title:
        t = " ".join(meta_title.split())
        if len(t) >= 4 and any(c.isalpha() for c in t) and not _TRIVIAL_TITLE.match(t):
            return t[:200]
    for p in pages[:1]:
        for line in p.text.splitlines():
            line = _strip_markup(line)
            if any(c.isalpha() for c in line) and not line.lower().startswith("arxiv:"):
                return line if len(line) <= 200 else f.stem
    return f.stem


# pypdf reports recoverable problems of bad files through logging and warnings; the Skipped reason
# is what the user needs, so both are captured and dropped while pypdf runs.
@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    logger = logging.getLogger("pypdf")
    saved = (logger.propagate, logger.level, list(logger.handlers))
    logger.handlers = [logging.NullHandler()]
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.propagate, level, logger.handlers = saved
        logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    first = msg[0].strip() if msg else ""
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__


_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                            "\ufb05": "st", "\ufb06": "st", "\u00a0": " ", "\u00ad": None, "\t": " "})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _clean(text: str) -> str:
    """Light normalisation of extracted text: newlines, ligatures, no control characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_LIGATURES)
    return _CONTROL.sub("", text)


def _strip_markup(line: str) -> str:
    return re.sub(r"^#{1,6}\s+", "", line.strip()).strip("*_ ").strip()


# --------------------------------------------------------------------------------------------------
# Sentences


_ABBREVIATIONS = frozenset({
    "e.g", "i.e", "al", "etc", "fig", "figs", "eq", "eqs", "sec", "secs", "tab", "vs", "cf", "resp",
    "approx", "no", "nos", "ref", "refs", "ch", "viz", "dr", "prof", "mr", "ms", "st",
})
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, whitespace collapsed. Blank lines always end a sentence; a period ends
    one unless it closes a common abbreviation ("e.g.", "et al.", "Fig.") or an initial ("J.")."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        start = 0
        for m in _SENTENCE_END.finditer(block):
            nxt = block[m.end():m.end() + 1]
            if not nxt or not (nxt.isupper() or nxt.isdigit() or nxt in "\"'([“"):
                continue
            before = block[start:m.start() + 1]
            word = re.search(r"(\S+)\.$", before)
            if word:
                w = word.group(1).lower().lstrip("([\"'")
                if w in _ABBREVIATIONS or (len(w) == 1 and w.isalpha()):
                    continue
            out.append(block[start:m.end()].strip())
            start = m.end()
        if block[start:].strip():
            out.append(block[start:].strip())
    return out


# --------------------------------------------------------------------------------------------------
# Sections


_KNOWN_HEADINGS = (
    "abstract", "introduction", "related work", "related works", "background", "preliminaries",
    "method", "methods", "methodology", "approach", "our approach", "proposed method", "the proposed method",
    "model", "architecture", "network architecture", "experiments", "experiment", "experimental results",
    "experimental setup", "results", "evaluation", "discussion", "ablation study", "ablation studies",
    "analysis", "implementation details", "conclusion", "conclusions", "conclusion and future work",
    "conclusions and future work", "limitations", "future work", "acknowledgments", "acknowledgements",
    "acknowledgment", "acknowledgement", "appendix", "supplementary material",
    "references", "reference", "bibliography", "works cited", "literature cited",
)
_REFERENCE_HEADINGS = frozenset({"references", "reference", "bibliography", "works cited", "literature cited"})
_NUMBER = r"(?-i:\d{1,2}(?:\.\d{1,2}){0,3}|[IVX]{1,5}|[A-H])"  # section numbers: 2, 3.1, IV, A
_KNOWN_RE = re.compile(
    rf"^(?:{_NUMBER}\.?\s+)?(?P<name>{'|'.join(re.escape(h) for h in _KNOWN_HEADINGS)})\s*:?$", re.I)
# "3.1 Squeeze-and-Excitation Blocks": a short capitalised title with no sentence punctuation.
_NUMBERED_RE = re.compile(r"^(?P<num>\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+(?P<name>[A-Z][^.!?;:,%=()\[\]{}<>|_/#*+]{1,80})$")
_ABSTRACT_INLINE = re.compile(r"^abstract\s*[.:\u2014\u2013-]\s*(?P<rest>\S.*)$", re.I)


def _heading(line: str, markdown: bool = False) -> tuple[str, str, tuple[int, ...] | None, bool] | None:
    """(section name, text after the heading on the same line, its section number if numbered in
    digits, whether the name is a well-known one) when `line` looks like a heading."""
    if markdown and re.match(r"^#{1,6}\s+\S", line) and len(line) <= 120:  # Markdown says so itself
        return _strip_markup(line), "", None, True
    bare = line.strip().strip("*_").strip()
    if len(bare) > 90:
        return None
    if _KNOWN_RE.match(bare):
        return bare.rstrip(":").strip(), "", _section_number(bare), True
    if m := _NUMBERED_RE.match(bare):
        name = m.group("name").strip()
        letters = sum(c.isalpha() for c in name)
        if len(name.split()) <= 10 and letters >= 0.6 * len(name.replace(" ", "")):
            return bare, "", _section_number(bare), False
    if m := _ABSTRACT_INLINE.match(line.strip()):
        return "Abstract", m.group("rest"), None, True
    return None


def _section_number(name: str) -> tuple[int, ...] | None:
    m = re.match(r"^(\d{1,2}(?:\.\d{1,2}){0,3})\.?\s", name)
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def _plausible(heads: list) -> list:
    """Drop numbered headings that break the numbering (a number not above the previous one, or a
    jump of more than two chapters): those are list items and table rows. Well-known names
    ("3 Experiments") are kept whatever their number and reset it."""
    out, prev = [], (0,)
    for h in heads:
        if h and h[2] is not None:
            if not h[3] and not (h[2] > prev and h[2][0] <= prev[0] + 2):
                h = None
            else:
                prev = h[2]
        out.append(h)
    return out


# Headings that stay unnumbered in papers whose other sections are numbered.
_UNNUMBERED_HEADINGS = frozenset({"abstract", "acknowledgments", "acknowledgements", "acknowledgment",
                                  "acknowledgement", "appendix", "supplementary material", *_REFERENCE_HEADINGS})
_NUMBER_PREFIX = re.compile(rf"^{_NUMBER}\.?\s+\S")


def _numbered_style(heads: list) -> list:
    """In a paper that numbers its sections ("3 Experiments", "IV. RESULTS"), a bare "Method" or
    "Results" line is a table cell or a figure label, not a heading; Abstract, References and the
    like stay headings, since such papers leave them unnumbered."""
    numbered = sum(1 for h in heads if h and _NUMBER_PREFIX.match(h[0]))
    if numbered < 2:
        return heads
    return [None if h and h[3] and not _NUMBER_PREFIX.match(h[0])
            and _core(h[0]) not in _UNNUMBERED_HEADINGS else h for h in heads]


def _fenced(lines: list[tuple[int, str]]) -> set[int]:
    """Indexes of Markdown lines inside ``` or ~~~ code fences (their '#' lines are code comments)."""
    inside, fence, out = False, "", set()
    for i, (_, text) in enumerate(lines):
        marker = re.match(r"^(`{3,}|~{3,})", text)
        if marker and (not inside or text.startswith(fence)):
            inside, fence = not inside, marker.group(1)[:3]
            out.add(i)
        elif inside:
            out.add(i)
    return out


def _core(name: str) -> str:
    """A heading name without its number or trailing colon, lower case."""
    return re.sub(rf"^(?:{_NUMBER}\.?\s+)", "", name.strip(), flags=re.I).strip().lower().rstrip(":")


def _kind(name: str) -> str:
    """'abstract', 'references' or 'other' for a heading name ("2. References" -> 'references')."""
    core = _core(name)
    if core == "abstract":
        return "abstract"
    return "references" if core in _REFERENCE_HEADINGS else "other"


def sections(paper: Paper) -> list[Section]:
    """The paper from its abstract (or its beginning, without an "Abstract" heading) up to, not
    including, its References/Bibliography heading (or its end), cut at section headings. Sections
    with no text are left out; the text before the first heading, when kept, is called "Body"."""
    lines = _lines(paper)
    markdown = paper.file.lower().endswith((".md", ".markdown"))
    fenced = _fenced(lines) if markdown else set()
    heads = _plausible([_heading(text, markdown) if text and i not in fenced else None
                        for i, (_, text) in enumerate(lines)])
    if not markdown:
        heads = _numbered_style(heads)
    start = next((i for i, h in enumerate(heads) if h and _kind(h[0]) == "abstract"), None)
    if start is None:
        start = _skip_title(lines, paper.title)
    end = next((i for i in range(start, len(lines)) if heads[i] and _kind(heads[i][0]) == "references"),
               len(lines))

    typical = _typical_line_length(lines)
    out: list[Section] = []
    name, page, body = "Body", None, []
    for i in range(start, end):
        pg, text = lines[i]
        if heads[i]:
            out.append(_section(name, page, body, typical))
            (name, rest, _, _), page, body = heads[i], pg, []
            if rest:
                body.append((pg, rest))
        else:
            body.append((pg, text))
    out.append(_section(name, page, body, typical))
    return [s for s in out if s.text]


def _lines(paper: Paper) -> list[tuple[int, str]]:
    """(page, stripped line) for every line, running headers/footers and page numbers removed.
    Blank lines stay (as "") because they separate paragraphs."""
    per_page = [(p.page, [ln.strip() for ln in p.text.split("\n")]) for p in paper.pages]
    junk = _running_lines(per_page)
    out: list[tuple[int, str]] = []
    for page, lines in per_page:
        edges = _edge_indexes(lines)
        for j, ln in enumerate(lines):
            if j in edges and (_is_page_number(ln) or _edge_key(ln) in junk):
                continue
            out.append((page, ln))
    return out


def _edge_indexes(lines: list[str]) -> set[int]:
    filled = [j for j, ln in enumerate(lines) if ln]
    return set(filled[:2] + filled[-2:])


def _edge_key(line: str) -> str:
    return re.sub(r"\d+", "#", line.lower())


def _is_page_number(line: str) -> bool:
    return bool(re.fullmatch(r"[-\u2013\s]*(?:page\s+)?\d{1,4}(?:\s+(?:of|/)\s+\d{1,4})?[-\u2013\s]*", line, re.I))


def _running_lines(per_page: list[tuple[int, list[str]]]) -> set[str]:
    """Lines at the top or bottom of many pages (running titles, footers): not paper text."""
    if len(per_page) < 3:
        return set()
    counts: Counter[str] = Counter()
    for _, lines in per_page:
        counts.update({_edge_key(lines[j]) for j in _edge_indexes(lines)})
    need = max(3, len(per_page) // 2)
    return {k for k, n in counts.items() if n >= need}


def _skip_title(lines: list[tuple[int, str]], title: str) -> int:
    """Index of the first line after a leading title line, so the title is not body text."""
    for i, (_, text) in enumerate(lines):
        if text:
            return i + 1 if _strip_markup(text) == title else i
    return 0


def _typical_line_length(lines: list[tuple[int, str]]) -> dict[int, int]:
    """Per page, the 90th-percentile line length: a line much shorter than it that ends a sentence
    most likely ends a paragraph (pypdf emits no blank lines between PDF paragraphs)."""
    by_page: dict[int, list[int]] = {}
    for page, text in lines:
        if text:
            by_page.setdefault(page, []).append(len(text))
    return {p: sorted(v)[int(0.9 * (len(v) - 1))] for p, v in by_page.items()}


def _section(name: str, page: int | None, body: list[tuple[int, str]], typical: dict[int, int]) -> Section:
    """A section from its body lines; `page` is None for the text before any heading."""
    paras = _paragraphs(body, typical)
    if page is None:
        page = paras[0].page if paras else 1
    return Section(name=name, page=page, text="\n\n".join(p.text for p in paras), paragraphs=paras)


def _paragraphs(body: list[tuple[int, str]], typical: dict[int, int]) -> list[PageText]:
    paras: list[list] = []  # [page, lines, starts_at_page_break]
    prev = ""
    for page, text in body:
        if not text:
            prev = ""
            continue
        cur = paras[-1] if paras else None
        if cur is None or not prev:
            paras.append([page, [text], False])
        elif cur[0] != page:
            paras.append([page, [text], True])
        elif prev[-1] in ".!?:" and len(prev) < 0.75 * typical.get(page, 0):
            paras.append([page, [text], False])
        else:
            cur[1].append(text)
        prev = text
    out = [PageText(page=p, text=_join_lines(ls)) for p, ls, _ in paras]
    return _mend_page_breaks(out, [brk for _, _, brk in paras])


def _join_lines(lines: list[str]) -> str:
    text = lines[0]
    for ln in lines[1:]:
        # A line ending in a hyphen inside a word is joined without a space. The hyphen is kept:
        # without a dictionary, "squeeze-and-|excitation" and "convolu-|tion" look the same.
        text += ln if re.search(r"[A-Za-z]-$", text) and ln[:1].isalpha() else " " + ln
    return text


def _mend_page_breaks(paras: list[PageText], at_break: list[bool]) -> list[PageText]:
    """A sentence cut by a page break belongs to the page where it starts: move the head of the
    next page's first paragraph, up to its first sentence end, back onto the previous paragraph."""
    out: list[PageText] = []
    for para, brk in zip(paras, at_break):
        if brk and out and not re.search(r"[.!?:][\"')\]]*$", out[-1].text):
            sentences = split_sentences(para.text)
            head, tail = sentences[0], " ".join(sentences[1:])
            last = out[-1]
            joiner = "" if re.search(r"[A-Za-z]-$", last.text) and head[:1].isalpha() else " "
            out[-1] = PageText(page=last.page, text=last.text + joiner + head)
            if not tail:
                continue
            para = PageText(page=para.page, text=tail)
        out.append(para)
    return out


# --------------------------------------------------------------------------------------------------
# Chunks


SEGMENT_HEADER = re.compile(r"^\[(?P<section>.*), page (?P<page>\d+)\]$", re.M)


def segment_header(section: str, page: int) -> str:
    return f"[{' '.join(section.split())}, page {page}]"


def render_segments(segments: list[Segment]) -> str:
    """Each segment under its header line. A line of paper text that looks like a header is
    indented, so that only our headers start a segment."""
    parts = []
    for seg in segments:
        body = SEGMENT_HEADER.sub(lambda m: " " + m.group(0), seg.text)
        parts.append(f"{segment_header(seg.section, seg.page)}\n{body}")
    return "\n\n".join(parts)


def parse_segments(text: str) -> list[Segment]:
    """The segments of a rendered chunk (the inverse of `render_segments`); text before the first
    header, if any, is dropped."""
    heads = list(SEGMENT_HEADER.finditer(text))
    out = []
    for m, nxt in zip(heads, heads[1:] + [None]):
        body = text[m.end():nxt.start() if nxt else len(text)].strip("\n")
        out.append(Segment(section=m.group("section"), page=int(m.group("page")), text=body))
    return out


def chunks(paper: Paper, max_tokens: int, count_tokens: Callable[[str], int]) -> list[Chunk]:
    """The paper from abstract to references in chunks of at most `max_tokens` tokens (as
    `count_tokens` counts them, segment headers included). Consecutive sections and pages share a
    chunk while they fit, so that a paper takes few model calls; a section too long for one chunk is
    cut at paragraph, then sentence, then word boundaries. Only a header longer than the whole
    budget can make a chunk exceed it."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    segments: list[Segment] = []
    for sec in sections(paper):
        for page, text in _by_page(sec.paragraphs):
            room = max(1, max_tokens - count_tokens(segment_header(sec.name, page) + "\n"))
            segments += [Segment(section=sec.name, page=page, text=piece)
                         for piece in _fit(text, room, count_tokens, 0)]
    out: list[Chunk] = []
    group: list[Segment] = []
    for seg in segments:
        if group and count_tokens(render_segments(group + [seg])) > max_tokens:
            out.append(_chunk(paper, group, len(out)))
            group = []
        group.append(seg)
    if group:
        out.append(_chunk(paper, group, len(out)))
    return out


def _chunk(paper: Paper, segments: list[Segment], index: int) -> Chunk:
    return Chunk(title=paper.title, file=paper.file, segments=segments, text=render_segments(segments), index=index)


def _by_page(paras: list[PageText]) -> list[tuple[int, str]]:
    groups: list[tuple[int, list[str]]] = []
    for p in paras:
        if groups and groups[-1][0] == p.page:
            groups[-1][1].append(p.text)
        else:
            groups.append((p.page, [p.text]))
    return [(page, "\n\n".join(texts)) for page, texts in groups]


# Levels at which a too-long text is cut, coarse to fine, with the separator to re-join pieces.
_LEVELS: tuple[tuple[Callable[[str], list[str]], str], ...] = (
    (lambda t: [p for p in t.split("\n\n") if p.strip()], "\n\n"),
    (split_sentences, " "),
    (str.split, " "),
)


def _fit(text: str, max_tokens: int, count: Callable[[str], int], level: int) -> list[str]:
    if count(text) <= max_tokens:
        return [text]
    if level >= len(_LEVELS):
        return _hard_cut(text, max_tokens, count)
    split, sep = _LEVELS[level]
    parts = split(text)
    if len(parts) <= 1:
        return _fit(text, max_tokens, count, level + 1)
    pieces = [q for p in parts for q in _fit(p, max_tokens, count, level + 1)]
    return _pack(pieces, sep, max_tokens, count)


def _pack(pieces: list[str], sep: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Greedy packing of pieces that each fit. The sum of piece counts guides the packing (cheap);
    every packed chunk is then counted exactly, since tokens do not add up exactly across a join."""
    sizes = [count(p) for p in pieces]
    sep_n = max(1, count(sep))
    out: list[str] = []
    group: list[int] = []
    total = 0
    for i, n in enumerate(sizes):
        if group and total + sep_n + n > max_tokens:
            out.extend(_flush(group, pieces, sep, max_tokens, count))
            group, total = [], 0
        total += n + (sep_n if group else 0)
        group.append(i)
    if group:
        out.extend(_flush(group, pieces, sep, max_tokens, count))
    return out


def _flush(group: list[int], pieces: list[str], sep: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    text = sep.join(pieces[i] for i in group)
    if len(group) == 1 or count(text) <= max_tokens:
        return [text]
    half = len(group) // 2
    return (_flush(group[:half], pieces, sep, max_tokens, count)
            + _flush(group[half:], pieces, sep, max_tokens, count))


def _hard_cut(text: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Last resort for a single "word" longer than the limit: cut it by characters."""
    out: list[str] = []
    while text:
        n = max(1, int(len(text) * max_tokens / max(1, count(text))))
        while n > 1 and count(text[:n]) > max_tokens:
            n = max(1, int(n * 0.8))
        out.append(text[:n])
        text = text[n:]
    return out
