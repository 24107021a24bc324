"""Loader behaviour on real files built in tmp_path: every format, and every failure message."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from ingest.loaders import SUPPORTED_SUFFIXES, iter_files, load_document
from rag.errors import LoaderError
from rag.types import Page

PAGE_TEXTS = ("Alpha page talks about apples", "Beta page talks about bananas", "Gamma page about cherries")


def _pdf_bytes(texts: tuple[str, ...] = PAGE_TEXTS) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in texts:
        pdf.add_page()
        if text:
            pdf.cell(text=text)
    return bytes(pdf.output())


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _encrypted_pdf(user_password: str, owner_password: str | None = None) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf_bytes())))
    writer.encrypt(user_password, owner_password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --------------------------------------------------------------------------- PDF


def test_pdf_pages_have_numbers_and_offsets(tmp_path: Path) -> None:
    path = _write(tmp_path / "three.pdf", _pdf_bytes())
    doc = load_document(path)
    assert [p.number for p in doc.pages] == [1, 2, 3]
    for page, expected in zip(doc.pages, PAGE_TEXTS, strict=True):
        assert expected in doc.text[page.start : page.end]
    for before, after in zip(doc.pages, doc.pages[1:], strict=False):
        assert doc.text[before.end : after.start] == "\n\n"
    assert doc.pages[-1].end == len(doc.text)


def test_document_id_source_and_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "sub" / "a.txt", "hello")
    monkeypatch.chdir(tmp_path)
    doc = load_document(Path("sub/../sub/a.txt"))
    assert doc.id == (tmp_path / "sub" / "a.txt").resolve().as_posix()
    assert doc.source == "sub/../sub/a.txt"
    assert doc.metadata == {}
    assert load_document(Path("sub/a.txt"), doc_id="custom").id == "custom"


def test_pdf_with_empty_page_keeps_its_page_entry(tmp_path: Path) -> None:
    path = _write(tmp_path / "gap.pdf", _pdf_bytes(("First text", "", "Third text")))
    doc = load_document(path)
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert doc.pages[1].start == doc.pages[1].end
    assert "Third text" in doc.text[doc.pages[2].start : doc.pages[2].end]


def test_encrypted_pdf_with_password_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "locked.pdf", _encrypted_pdf("secret"))
    with pytest.raises(LoaderError, match=r"locked\.pdf.*password-protected.*decrypt it first"):
        load_document(path)


def test_encrypted_pdf_with_empty_user_password_loads(tmp_path: Path) -> None:
    path = _write(tmp_path / "owner_only.pdf", _encrypted_pdf("", "owner-secret"))
    assert PdfReader(path).is_encrypted
    doc = load_document(path)
    assert PAGE_TEXTS[1] in doc.text[doc.pages[1].start : doc.pages[1].end]


def test_corrupt_pdf(tmp_path: Path) -> None:
    data = _pdf_bytes()
    path = _write(tmp_path / "broken.pdf", data[: len(data) // 2])
    with pytest.raises(LoaderError, match=r"broken\.pdf.*corrupt or unreadable PDF \(\w+"):
        load_document(path)


def test_not_a_pdf_at_all(tmp_path: Path) -> None:
    path = _write(tmp_path / "fake.pdf", "just some text, no PDF header")
    with pytest.raises(LoaderError, match=r"fake\.pdf.*corrupt or unreadable PDF"):
        load_document(path)


def test_pdf_without_text_layer(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 50, style="F")
    path = _write(tmp_path / "scan.pdf", bytes(pdf.output()))
    with pytest.raises(LoaderError, match=r"scan\.pdf.*no extractable text.*run OCR first"):
        load_document(path)


# --------------------------------------------------------------------------- HTML

HTML = """<!DOCTYPE html>
<html><head><title>Page Title</title><meta charset="utf-8">
<style>.x { color: red } STYLE_MARKER</style>
<script>var s = "SCRIPT_MARKER";</script></head>
<body>
<nav><ul><li>Home</li><li>About</li></ul></nav>
<script>console.log("BODY_SCRIPT_MARKER")</script>
<noscript>NOSCRIPT_MARKER</noscript>
<template><p>TEMPLATE_MARKER</p></template>
<div hidden>HIDDEN_MARKER</div>
<h1>Main   heading</h1>
<p>First paragraph
   wraps here and has <b>bold</b> words.<br>Second line.</p>



<p>Caf&eacute; prices</p>
<pre>
def f():
    return 1
</pre>
<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>30</td></tr></table>
<!-- COMMENT_MARKER -->
</body></html>
"""


def test_html_keeps_visible_text_only(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path / "page.html", HTML))
    for marker in ("SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "HIDDEN", "COMMENT", "BODY_SCRIPT"):
        assert f"{marker}_MARKER" not in doc.text
    assert "Page Title" not in doc.text  # head is dropped when the body has text
    assert "Home\nAbout" in doc.text
    assert "Main heading" in doc.text
    assert "First paragraph wraps here and has bold words.\nSecond line." in doc.text
    assert "Café prices" in doc.text
    assert "def f():\n    return 1" in doc.text
    assert "Name | Age\nAnn | 30" in doc.text
    assert "\n\n\n" not in doc.text
    assert doc.text == doc.text.strip()
    assert doc.pages[0].number is None
    assert (doc.pages[0].start, doc.pages[0].end) == (0, len(doc.text))


def test_html_title_used_only_without_body_text(tmp_path: Path) -> None:
    html = "<html><head><title>Only a title</title></head><body><script>x()</script></body></html>"
    doc = load_document(_write(tmp_path / "t.htm", html))
    assert doc.text == "Only a title"


def test_html_with_nothing_visible(tmp_path: Path) -> None:
    path = _write(tmp_path / "blank.html", "<html><body><script>x()</script>  </body></html>")
    with pytest.raises(LoaderError, match=r"blank\.html.*no text"):
        load_document(path)


def test_html_declared_charset_is_honoured(tmp_path: Path) -> None:
    html = '<html><head><meta charset="windows-1251"></head><body><p>Привет</p></body></html>'
    doc = load_document(_write(tmp_path / "ru.html", html.encode("windows-1251")))
    assert doc.text == "Привет"


# --------------------------------------------------------------------------- text and markdown


def test_txt_normalises_newlines_bom_and_nul(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", b"\xef\xbb\xbfline one\r\nline two\rline\x00 three\n")
    doc = load_document(path)
    assert doc.text == "line one\nline two\nline three\n"
    assert doc.pages == [Page(number=None, start=0, end=len(doc.text))]


def test_markdown_kept_verbatim(tmp_path: Path) -> None:
    text = "# Title\n\nSome *emphasis* and a [link](http://x).\n"
    for suffix in (".md", ".markdown", ".MD"):
        assert load_document(_write(tmp_path / f"notes{suffix}", text)).text == text


def test_latin1_fallback(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path / "old.txt", "Crème brûlée “quoted”".encode("cp1252")))
    assert doc.text == "Crème brûlée “quoted”"


def test_utf16_with_bom(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path / "wide.txt", "wide text\r\n".encode("utf-16")))
    assert doc.text == "wide text\n"


def test_whitespace_only_text(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"ws\.txt.*only whitespace"):
        load_document(_write(tmp_path / "ws.txt", " \n\t\n"))


# --------------------------------------------------------------------------- failures


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"empty\.md.*empty \(0 bytes\)"):
        load_document(_write(tmp_path / "empty.md", b""))


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n" + b"\x00\x01\x02" * 100, b"text\x01\x02\x03\x04" * 50],
)
def test_binary_file_with_text_suffix(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(LoaderError, match=r"image\.txt.*binary file.*extension"):
        load_document(_write(tmp_path / "image.txt", data))


def test_unknown_suffix_lists_supported(tmp_path: Path) -> None:
    path = _write(tmp_path / "sheet.xlsx", b"PK\x03\x04")
    with pytest.raises(LoaderError) as info:
        load_document(path)
    message = str(info.value)
    assert "sheet.xlsx" in message
    assert "'.xlsx'" in message
    assert all(suffix in message for suffix in SUPPORTED_SUFFIXES)


def test_no_suffix(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"README.*no suffix"):
        load_document(_write(tmp_path / "README", "hi"))


def test_oversize_file_names_size_limit_and_setting(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.txt", "x" * 2000)
    with pytest.raises(LoaderError) as info:
        load_document(path, max_bytes=1000)
    message = str(info.value)
    for part in ("big.txt", "2000 bytes", "1000 bytes", "ingest.max_file_mb", "RAG_INGEST__MAX_FILE_MB"):
        assert part in message
    assert load_document(path, max_bytes=2000).text == "x" * 2000


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"nope\.txt.*does not exist"):
        load_document(tmp_path / "nope.txt")


def test_directory_path(tmp_path: Path) -> None:
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    with pytest.raises(LoaderError, match=r"folder\.txt.*is a directory"):
        load_document(folder)


def test_unreadable_file_chmod(tmp_path: Path) -> None:
    path = _write(tmp_path / "secret.txt", "classified")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root (or with CAP_DAC_OVERRIDE): chmod 000 does not stop reads")
        with pytest.raises(LoaderError, match=r"secret\.txt.*permission denied.*chmod"):
            load_document(path)
    finally:
        path.chmod(0o644)


def test_unreadable_file_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root can read chmod-000 files, so also force the PermissionError the OS would raise."""
    path = _write(tmp_path / "secret.txt", "classified")

    def deny(self: Path, *args: object, **kwargs: object) -> io.BufferedReader:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(LoaderError, match=r"secret\.txt.*permission denied.*chmod"):
        load_document(path)


# --------------------------------------------------------------------------- iter_files


def test_iter_files_walks_sorted_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    for rel in ("b.md", "a.txt", "z/deep/c.pdf", "y/d.html", "y/notes.xlsx", ".hidden.txt"):
        _write(root / rel, "x")
    _write(root / ".git" / "config.txt", "x")
    _write(root / "y" / ".cache" / "e.txt", "x")
    found = [p.relative_to(root).as_posix() for p in iter_files([root])]
    assert found == ["a.txt", "b.md", "y/d.html", "z/deep/c.pdf"]
    assert found == [p.relative_to(root).as_posix() for p in iter_files([root])]  # deterministic


def test_iter_files_yields_named_files_even_if_unsupported(tmp_path: Path) -> None:
    data = _write(tmp_path / "data.xlsx", b"x")
    missing = tmp_path / "missing.txt"
    folder = tmp_path / "dir"
    _write(folder / "a.txt", "x")
    assert list(iter_files([data, missing, folder])) == [data, missing, folder / "a.txt"]


def test_iter_files_respects_suffixes_and_dedupes(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.txt", "x")
    _write(tmp_path / "b.MD", "x")
    assert list(iter_files([tmp_path, a], suffixes=[".md"])) == [tmp_path / "b.MD", a]
    assert list(iter_files([tmp_path, a])) == [a, tmp_path / "b.MD"]
