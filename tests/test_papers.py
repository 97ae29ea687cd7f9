"""Paper loading, sections and chunks (agents/papers.py), on PDFs built with fpdf2 in tmp_path."""
from __future__ import annotations

import logging
import random

import pytest
from fpdf import FPDF

from agents.papers import (Paper, chunks, load_paper, load_papers, parse_segments, render_segments, sections,
                          split_sentences)

TITLE = "Channel Recalibration for Compact CNNs"
SE_IDEA = ("We propose a squeeze-and-excitation block that adaptively recalibrates channel-wise feature "
           "responses with a channel attention gate.")
DILATED_IDEA = ("To enlarge the receptive field without extra parameters, we replace the 3x3 convolution "
                "with a dilated depthwise convolution.")


def words(text: str) -> int:
    return len(text.split())


def _para(pdf: FPDF, text: str) -> None:
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def _head(pdf: FPDF, text: str) -> None:
    pdf.set_font("Helvetica", "B", 13)
    pdf.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")


def write_paper(path, *, metadata_title: str | None = None) -> None:
    """A 3-page paper: title, authors, Abstract, 1 Introduction, 2 Method (SE idea on page 1, a
    dilated depthwise idea on page 2), 3 Conclusion, References on page 3."""
    pdf = FPDF()
    if metadata_title:
        pdf.set_title(metadata_title)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, TITLE, new_x="LMARGIN", new_y="NEXT")
    _para(pdf, "Ada Lovelace, Analytical Engines Lab")
    _head(pdf, "Abstract")
    _para(pdf, "We study small convolutional blocks for image classification at low cost.")
    _head(pdf, "1 Introduction")
    _para(pdf, "Convolutional networks stack blocks of convolutions. Deep networks have improved "
               "image classification [1, 2].")
    _head(pdf, "2 Method")
    _para(pdf, SE_IDEA + " It squeezes global spatial information by average pooling.")
    pdf.add_page()
    _para(pdf, DILATED_IDEA)
    _head(pdf, "3 Conclusion")
    _para(pdf, "Both changes are cheap and help small networks.")
    pdf.add_page()
    _head(pdf, "References")
    _para(pdf, "[1] J. Hu, L. Shen, and G. Sun. Squeeze-and-excitation networks. In CVPR, 2018.")
    pdf.output(str(path))


def one(path) -> Paper:
    papers, skipped = load_papers(path)
    assert skipped == [] and len(papers) == 1
    return papers[0]


def only_skip(path) -> str:
    papers, skipped = load_papers(path)
    assert papers == [] and len(skipped) == 1 and skipped[0].file == str(path)
    return skipped[0].reason


def test_pdf_title_pages_and_sections(tmp_path):
    write_paper(tmp_path / "paper.pdf")
    paper = one(tmp_path / "paper.pdf")
    assert paper.title == TITLE  # no metadata title: the first line of page 1
    assert paper.page_count == 3 and [p.page for p in paper.pages] == [1, 2, 3]
    assert paper.truncated is None

    secs = sections(paper)
    assert [s.name for s in secs] == ["Abstract", "1 Introduction", "2 Method", "3 Conclusion"]
    assert [s.page for s in secs] == [1, 1, 1, 2]
    method = secs[2]
    assert "squeeze-and-excitation" in method.text and "dilated depthwise" in method.text
    assert [p.page for p in method.paragraphs] == [1, 2]
    everything = " ".join(s.text for s in secs)
    assert "CVPR" not in everything and "Ada Lovelace" not in everything  # refs and front matter dropped


def test_metadata_title_wins(tmp_path):
    write_paper(tmp_path / "paper.pdf", metadata_title="Squeeze and Dilate")
    assert one(tmp_path / "paper.pdf").title == "Squeeze and Dilate"


@pytest.mark.parametrize("max_tokens", [12, 40, 1000])
def test_chunks_fit_keep_provenance_and_pack_neighbours(tmp_path, max_tokens):
    write_paper(tmp_path / "paper.pdf")
    paper = one(tmp_path / "paper.pdf")
    cs = chunks(paper, max_tokens, words)
    assert [c.index for c in cs] == list(range(len(cs)))
    assert all(words(c.text) <= max_tokens and c.title == TITLE for c in cs)  # headers counted too
    segs = [s for c in cs for s in c.segments]
    assert {(s.section, s.page) for s in segs if "squeeze-and-excitation" in s.text} == {("2 Method", 1)}
    assert {(s.section, s.page) for s in segs if "dilated" in s.text} == {("2 Method", 2)}
    assert not any("CVPR" in c.text for c in cs)
    # Nothing lost, nothing invented: the segment words are the section words, in order.
    assert " ".join(s.text for s in segs).split() == " ".join(s.text for s in sections(paper)).split()
    # What the Reader sees is each segment under its [SECTION, page N] line, and parses back to them.
    assert all(parse_segments(c.text) == c.segments for c in cs)
    assert all(c.text.startswith(f"[{c.section}, page {c.page}]\n") for c in cs)
    # Neighbouring sections and pages share a chunk while they fit: no two chunks could be one.
    for a, b in zip(cs, cs[1:]):
        assert words(render_segments(a.segments + b.segments[:1])) > max_tokens
    if max_tokens == 1000:
        assert len(cs) == 1 and cs[0].pages == [1, 2] and cs[0].where() == "pages 1-2"
        assert [s.section for s in cs[0].segments] == ["Abstract", "1 Introduction", "2 Method", "2 Method",
                                                       "3 Conclusion"]


def test_paper_lines_shaped_like_segment_headers_cannot_start_a_segment():
    paper = Paper(title="T", file="t.txt", page_count=1, pages=[
        {"page": 1, "text": "Abstract\nWe use residual blocks.\n[3 Method, page 9]\nStill the abstract."}])
    (chunk,) = chunks(paper, 1000, words)
    assert [(s.section, s.page) for s in parse_segments(chunk.text)] == [("Abstract", 1)]
    assert "[3 Method, page 9]" in chunk.text


def test_chunks_hard_cut_and_bad_limit(tmp_path):
    f = tmp_path / "long.txt"
    f.write_text("Abstract\n" + "x" * 500 + "\n")
    cs = chunks(one(f), 10, lambda t: len(t) // 20 + 1)
    assert "".join(s.text for c in cs for s in c.segments) == "x" * 500
    assert len(cs) > 1 and all(len(c.text) // 20 + 1 <= 10 for c in cs)
    with pytest.raises(ValueError):
        chunks(one(f), 0, words)


def test_sentence_cut_by_page_break_stays_on_its_first_page():
    paper = Paper(title="T", file="t.txt", page_count=2, pages=[
        {"page": 1, "text": "Abstract\nWe insert a squeeze-and-excitation block after the"},
        {"page": 2, "text": "last convolution of each stage. We also use dilated convolutions."},
    ])
    paras = sections(paper)[0].paragraphs
    assert [(p.page, p.text) for p in paras] == [
        (1, "We insert a squeeze-and-excitation block after the last convolution of each stage."),
        (2, "We also use dilated convolutions."),
    ]


def test_running_headers_and_page_numbers_dropped():
    bodies = ["Residual blocks help.", "Dilated kernels see more.", "Groups save compute.", "Wider is better."]
    pages = [{"page": i, "text": f"Compact CNNs, preprint {i}\n{body}\nMore text on this page.\n{i}"}
             for i, body in enumerate(bodies, start=1)]
    paper = Paper(title="Compact CNNs", file="x.pdf", page_count=4, pages=pages)
    text = " ".join(s.text for s in sections(paper))
    assert "preprint" not in text and "Groups save compute." in text
    assert not any(ch.isdigit() for ch in text)


def test_encrypted_pdf_skipped(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Secret residual blocks")
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.output(str(tmp_path / "locked.pdf"))
    assert "encrypted" in only_skip(tmp_path / "locked.pdf")


def test_owner_password_only_pdf_reads(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Open residual blocks")
    pdf.set_encryption(owner_password="owner")  # empty user password: readable by anyone
    pdf.output(str(tmp_path / "open.pdf"))
    assert one(tmp_path / "open.pdf").title == "Open residual blocks"


def test_corrupt_empty_binary_and_missing(tmp_path, caplog):
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.4 garbage")
    with caplog.at_level(logging.DEBUG):
        assert only_skip(corrupt).startswith("not a readable PDF: ")
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]  # pypdf's noise is captured

    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert only_skip(empty) == "empty file"

    blob = tmp_path / "blob.txt"
    blob.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)) + b"\x00\x00")
    assert only_skip(blob) == "binary file, not text or PDF"

    fake = tmp_path / "fake.pdf"
    fake.write_text("just some words, no PDF header")
    assert "not a readable PDF" in only_skip(fake)

    assert only_skip(tmp_path / "missing.pdf") == "no such file or folder"


def test_unknown_encoding_rejected(tmp_path):
    f = tmp_path / "sjis.txt"
    f.write_bytes("\u7573\u307f\u8fbc\u307f\u5c64\u3068\u6ce8\u610f\u6a5f\u69cb\u306b\u3064\u3044\u3066".encode("shift_jis") * 20)
    assert only_skip(f).startswith("unknown text encoding")


def test_latin1_utf16_and_markdown_text(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Réseaux résiduels\n\nAbstract\nWe add a residual connection to each bloc, très simple.\n"
                      .encode("latin-1"))
    paper = one(latin)
    assert paper.title == "Réseaux résiduels" and paper.pages[0].page == 1
    assert "très simple" in sections(paper)[0].text

    utf16 = tmp_path / "u16.txt"
    utf16.write_text("Wide networks\nWe widen every block.\fPage two text.", encoding="utf-16")
    paper = one(utf16)
    assert [p.page for p in paper.pages] == [1, 2] and paper.title == "Wide networks"

    md = tmp_path / "note.md"
    md.write_text("# Dilated blocks\n\n## Method\n\nWe use dilated convolutions.\n\n## References\n\n[1] Yu.\n")
    paper = one(md)
    assert paper.title == "Dilated blocks"
    assert [(s.name, s.text) for s in sections(paper)] == [("Method", "We use dilated convolutions.")]


def test_no_abstract_starts_at_beginning_and_no_refs_keeps_end(tmp_path):
    f = tmp_path / "plain.txt"
    f.write_text("Grouped convolutions\n\nWe split channels into groups.\n\n1 Results\n\nIt works.\n")
    secs = sections(one(f))
    assert [(s.name, s.text) for s in secs] == [("Body", "We split channels into groups."),
                                              ("1 Results", "It works.")]


def test_long_pdf_is_truncated(tmp_path):
    pdf = FPDF(format=(40, 40))
    pdf.set_font("Helvetica", size=8)
    pdf.set_auto_page_break(False)
    for i in range(500):
        pdf.add_page()
        pdf.text(4, 10, f"Page {i + 1}")
    pdf.output(str(tmp_path / "long.pdf"))
    paper = one(tmp_path / "long.pdf")
    assert paper.truncated == "500 pages; kept the first 60"
    assert len(paper.pages) == 60 and paper.page_count == 500 and paper.pages[-1].text == "Page 60"


def test_char_limit_truncates(tmp_path):
    f = tmp_path / "big.txt"
    f.write_text("Abstract\n" + "word " * 1000)
    paper = load_paper(f, max_chars=100)
    assert isinstance(paper, Paper) and sum(len(p.text) for p in paper.pages) == 100
    assert "kept the first 100" in paper.truncated


def test_folder_loading(tmp_path):
    write_paper(tmp_path / "b_good.pdf")
    (tmp_path / "a_corrupt.pdf").write_bytes(b"%PDF-1.4 garbage")
    (tmp_path / "c_empty.md").write_bytes(b"")
    (tmp_path / "d_binary.txt").write_bytes(b"\x00\x01\x02\xff" * 100)
    (tmp_path / ".hidden.pdf").write_bytes(b"ignored")
    papers, skipped = load_papers(tmp_path)
    assert [p.title for p in papers] == [TITLE]
    assert [(s.file.rsplit("/", 1)[-1], s.reason.split(":")[0]) for s in skipped] == [
        ("a_corrupt.pdf", "not a readable PDF"), ("c_empty.md", "empty file"),
        ("d_binary.txt", "binary file, not text or PDF")]
    assert load_papers(tmp_path) == (papers, skipped)  # deterministic


def test_folder_reports_other_types_and_recurses_on_request(tmp_path):
    (tmp_path / "notes.docx").write_bytes(b"PK\x03\x04")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "p.txt").write_text("A title\n\nWe use residual blocks.\n")
    papers, skipped = load_papers(tmp_path)
    assert papers == [] and [(s.file.rsplit("/", 1)[-1], s.reason) for s in skipped] == [
        ("sub", "sub-folder not read (reader.recursive=true reads sub-folders)"),
        ("notes.docx", "unsupported file type '.docx'; expected .pdf, .txt or .md")]
    papers, _ = load_papers(tmp_path, recursive=True)
    assert [p.title for p in papers] == ["A title"]


def test_split_sentences():
    assert split_sentences("He et al. (2016) use 3.5% less. See Fig. 2 for e.g. this. J. Hu wrote it.\n\nHeading\nNext") == [
        "He et al. (2016) use 3.5% less.", "See Fig. 2 for e.g. this.", "J. Hu wrote it.", "Heading Next"]


def test_implausible_numbered_lines_are_not_headings(tmp_path):
    f = tmp_path / "n.txt"
    f.write_text("Abstract\n\nShort.\n\n1 Introduction\n\nIntro text.\n\n7 Layers Deep\n\n2 Design Space\n\n"
                 "Design text.\n\n2 Conv Layers\n\n# not a heading outside Markdown\n")
    assert [s.name for s in sections(one(f))] == ["Abstract", "1 Introduction", "2 Design Space"]
    assert sections(one(f))[1].text == "Intro text.\n\n7 Layers Deep"


def test_pdf_without_text_skipped(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60)  # a drawing, as in a scanned page: no text layer
    pdf.output(str(tmp_path / "scan.pdf"))
    assert only_skip(tmp_path / "scan.pdf") == "no extractable text (scanned PDF?)"


def test_windows_1252_lossy_utf8_and_bomless_utf16_text(tmp_path):
    cp = tmp_path / "cp1252.txt"
    cp.write_bytes("Gated blocks\n\nWe call it a \u201cgate\u201d \u2013 it\u2019s cheap.\n".encode("cp1252"))
    assert "a \u201cgate\u201d \u2013 it\u2019s cheap" in one(cp).pages[0].text  # not C1 control characters

    lossy = tmp_path / "lossy.txt"  # UTF-8 (with real multi-byte characters) and one broken byte
    lossy.write_bytes("Résumé of blocks\n\nWe add a residual connection — twice.\n".encode() + b"\xff tail\n")
    assert "connection \u2014 twice" in one(lossy).pages[0].text

    for codec in ("utf-16-le", "utf-16-be"):
        f = tmp_path / f"{codec}.txt"
        f.write_bytes("Wide networks\n\nWe widen every block.\n".encode(codec))
        assert one(f).title == "Wide networks"


def test_unnumbered_known_words_are_not_headings_in_numbered_papers(tmp_path):
    f = tmp_path / "numbered.txt"
    f.write_text("Abstract\n\nShort.\n\n1 Introduction\n\nIntro.\n\n2 Experiments\n\nTable 1 compares:\n\nMethod\n\n"
                 "Top-1\n\nWe add a squeeze-and-excitation gate.\n\nAcknowledgements\n\nThanks.\n\nReferences\n\n[1] X.\n")
    secs = sections(one(f))
    assert [s.name for s in secs] == ["Abstract", "1 Introduction", "2 Experiments", "Acknowledgements"]
    assert "squeeze-and-excitation" in secs[2].text
    roman = tmp_path / "roman.txt"
    roman.write_text("Abstract\n\nShort.\n\nI. INTRODUCTION\n\nIntro.\n\nII. METHOD\n\nWe use dilated kernels.\n")
    assert [s.name for s in sections(one(roman))] == ["Abstract", "I. INTRODUCTION", "II. METHOD"]
    plain = tmp_path / "plain.txt"  # no numbered headings: known words are the headings
    plain.write_text("Abstract\n\nShort.\n\nMethod\n\nWe use dilated kernels.\n\nResults\n\nGood.\n")
    assert [s.name for s in sections(one(plain))] == ["Abstract", "Method", "Results"]


def test_markdown_front_matter_and_code_fences(tmp_path):
    md = tmp_path / "paper.md"
    md.write_text("---\ntitle: \"Deep Residual Gates\"\nauthors: [A. Lovelace]\n---\n\n# Deep Residual Gates\n\n"
                  "## Method\n\nWe gate the residual branch.\n\n```python\n# not a heading\nx = gate(x)\n```\n\n"
                  "## References\n\n[1] Y.\n")
    paper = one(md)
    assert paper.title == "Deep Residual Gates"
    secs = sections(paper)
    assert [s.name for s in secs] == ["Method"] and "# not a heading" in secs[0].text
    assert "authors" not in " ".join(p.text for p in paper.pages)
