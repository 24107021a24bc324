"""Turn a file on disk into a :class:`rag.types.Document`.

Every failure is a :class:`rag.errors.LoaderError` whose message names the file, the reason and,
where there is one, the fix: ingest runs over whole folders, and one vague "failed" line per file
would leave the user guessing which file to fix and how.

Formats are dispatched by suffix through ``_LOADERS``; a loader gets the file's bytes and returns
the text plus the page spans in it. Reading, size limits and id/source naming are shared here so
each loader only has to know its format.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
from bs4.dammit import EncodingDetector
from bs4.element import NavigableString, PreformattedString, Tag
from pypdf import PasswordType, PdfReader

from rag.errors import LoaderError
from rag.types import Document, Page

Loader = Callable[[bytes, Path], tuple[str, list[Page]]]

# How much of a file is inspected to decide "text or binary"; the same window git and grep use.
SNIFF_BYTES = 8192
# Share of control characters above which a NUL-free sample is still treated as binary.
MAX_CONTROL_SHARE = 0.05
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\b\x1b")
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),  # before UTF-16 LE: its BOM is a prefix of this one
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
PAGE_SEPARATOR = "\n\n"
SETTING_HINT = "ingest.max_file_mb (env RAG_INGEST__MAX_FILE_MB)"
# Part of every file fingerprint: bump it when a loader's output changes for the same bytes, so
# the next ingest re-parses files it would otherwise skip as unchanged.
PARSER_VERSION = "1"
_HASH_BLOCK = 1 << 20


# --------------------------------------------------------------------------- public API


def load_document(path: Path, *, doc_id: str | None = None, max_bytes: int | None = None) -> Document:
    """Load one file. ``doc_id`` defaults to the resolved POSIX path, so the same file reached
    through different relative paths is one document; ``max_bytes`` guards memory on huge files."""
    path = Path(path)
    size = _file_size(path)
    loader = _loader_for(path)
    data = _read_bytes(path, size, max_bytes)
    text, pages = loader(data, path)
    if not text.strip():
        raise LoaderError(
            f"{_name(path)}: no text left after extraction (only whitespace); nothing to index."
        )
    return Document(
        id=doc_id if doc_id is not None else default_document_id(path),
        source=path.as_posix(),
        text=text,
        pages=pages,
    )


def file_fingerprint(path: Path, max_bytes: int | None = None) -> str | None:
    """A hash of the file's raw bytes and the parser version, or None when the file cannot be
    read or is over ``max_bytes`` (parsing it then reports why).

    Same bytes and same parser give the same text, so re-ingest skips parsing a file whose
    fingerprint is the one stored with its document: hashing a file costs milliseconds, parsing a
    PDF seconds (a no-op re-ingest of the sample corpus was 99 % PDF parsing before this).
    """
    digest = hashlib.sha256(PARSER_VERSION.encode() + b"\0")
    try:
        if not path.is_file() or (max_bytes is not None and path.stat().st_size > max_bytes):
            return None
        with open(path, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def default_document_id(path: Path) -> str:
    """The normalised absolute path: stable across runs and relative spellings of the path."""
    return Path(path).resolve().as_posix()


def iter_files(paths: Iterable[Path], suffixes: Iterable[str] | None = None) -> Iterator[Path]:
    """Expand files and folders into the files to ingest, in a stable order.

    Paths named directly are yielded whatever their suffix (or even if missing) so the caller
    reports them as failures instead of silently skipping what the user asked for; inside folders
    only supported suffixes are taken and hidden entries (``.git``, ``.DS_Store``) are skipped.
    Directory symlinks are not followed, which rules out cycles. Each file is yielded once.
    """
    wanted = {s.lower() for s in (SUPPORTED_SUFFIXES if suffixes is None else suffixes)}
    seen: set[Path] = set()
    for given in paths:
        given = Path(given)
        found = _walk(given, wanted) if given.is_dir() else iter([given])
        for path in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                yield path


# --------------------------------------------------------------------------- shared plumbing


def _name(path: Path) -> str:
    return path.as_posix()


def _loader_for(path: Path) -> Loader:
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        kind = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
        raise LoaderError(
            f"{_name(path)}: unsupported file type ({kind}); supported: {', '.join(SUPPORTED_SUFFIXES)}. "
            "Convert it to one of these or leave it out."
        )
    return loader


def _read_bytes(path: Path, size: int, max_bytes: int | None) -> bytes:
    """Check size and readability before parsing, so each gets its own message."""
    if size == 0:
        raise LoaderError(f"{_name(path)}: file is empty (0 bytes); nothing to index.")
    if max_bytes is not None and size > max_bytes:
        raise _too_large(path, size, max_bytes)
    try:
        with path.open("rb") as fh:
            # Read one byte past the limit: the file may have grown since stat().
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except PermissionError as exc:
        raise _unreadable(path) from exc
    except OSError as exc:
        raise LoaderError(f"{_name(path)}: cannot be read ({exc.strerror or exc}).") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise _too_large(path, len(data), max_bytes)
    return data


def _file_size(path: Path) -> int:
    """Checked before the suffix, so a folder or a typo gets the message that actually helps."""
    try:
        if path.is_dir():
            raise LoaderError(f"{_name(path)}: is a directory, not a file; pass the files inside it.")
        if not path.exists():
            raise LoaderError(f"{_name(path)}: file does not exist; check the path.")
        if not path.is_file():
            raise LoaderError(f"{_name(path)}: not a regular file (device, socket or pipe); skip it.")
        return path.stat().st_size
    except PermissionError as exc:
        raise _unreadable(path) from exc


def _unreadable(path: Path) -> LoaderError:
    return LoaderError(
        f"{_name(path)}: permission denied; make it readable (e.g. chmod a+r) "
        "or run as a user who can read it."
    )


def _too_large(path: Path, size: int, max_bytes: int) -> LoaderError:
    return LoaderError(
        f"{_name(path)}: file is {_mb(size)} ({size} bytes), over the limit of {_mb(max_bytes)} "
        f"({max_bytes} bytes); raise {SETTING_HINT} to ingest it."
    )


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.3g} MB"


def _walk(root: Path, wanted: set[str]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                yield Path(dirpath) / name


# --------------------------------------------------------------------------- text decoding


def _clean(text: str) -> str:
    """One newline convention and no NULs, so offsets and chunking see the same text everywhere."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _decode(data: bytes, path: Path, declared: str | None = None) -> str:
    """Decode bytes as text: BOM, then a declared charset, then UTF-8, then cp1252/latin-1.

    The single-byte fallback accepts any byte string, so it is only tried once the bytes have
    passed the binary sniff; otherwise a PNG renamed to .txt would be "decoded" into garbage.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _decode_with(data, codec, path)
    _reject_binary(data, path)
    for codec in (declared, "utf-8"):
        if codec:
            try:
                return data.decode(codec)
            except (UnicodeDecodeError, LookupError):
                continue
    try:
        return data.decode("cp1252")  # latin-1 plus the curly quotes Windows editors write
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_with(data: bytes, codec: str, path: Path) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise LoaderError(
            f"{_name(path)}: starts with a {codec} byte-order mark but is not valid {codec} "
            f"(byte {exc.start}); re-save it as UTF-8."
        ) from exc


def _reject_binary(data: bytes, path: Path) -> None:
    sample = data[:SNIFF_BYTES]
    controls = sum(1 for b in sample if b < 0x20 and b not in _TEXT_CONTROLS) + sample.count(0x7F)
    if b"\x00" in sample or controls > MAX_CONTROL_SHARE * len(sample):
        raise LoaderError(
            f"{_name(path)}: looks like a binary file, not text (NUL bytes or many control characters "
            f"in the first {SNIFF_BYTES // 1024} KB); check the file's type and extension."
        )


# --------------------------------------------------------------------------- plain text / markdown


def _load_text(data: bytes, path: Path) -> tuple[str, list[Page]]:
    """Plain text and Markdown are indexed verbatim; Markdown syntax is harmless to embeddings."""
    text = _clean(_decode(data, path))
    return text, [Page(number=None, start=0, end=len(text))]


# --------------------------------------------------------------------------- PDF


def _load_pdf(data: bytes, path: Path) -> tuple[str, list[Page]]:
    """One Page per PDF page (even empty ones) so citations can give real page numbers."""
    texts = _pdf_page_texts(data, path)
    if not any(texts):
        raise LoaderError(
            f"{_name(path)}: PDF has {len(texts)} page(s) but no extractable text; it may be scanned "
            "images, run OCR first (e.g. ocrmypdf) and ingest the result."
        )
    pages: list[Page] = []
    offset = 0
    for number, text in enumerate(texts, start=1):
        pages.append(Page(number=number, start=offset, end=offset + len(text)))
        offset += len(text) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(texts), pages


def _pdf_page_texts(data: bytes, path: Path) -> list[str]:
    """Any pypdf failure becomes a LoaderError: broken PDFs raise a zoo of exception types."""
    try:
        reader = PdfReader(io.BytesIO(data))
        _unlock(reader, path)
        return [_clean(page.extract_text() or "").strip() for page in reader.pages]
    except LoaderError:
        raise
    except Exception as exc:
        raise LoaderError(
            f"{_name(path)}: corrupt or unreadable PDF ({type(exc).__name__}: {exc}); "
            "re-export or repair it (e.g. qpdf in.pdf out.pdf)."
        ) from exc


def _unlock(reader: PdfReader, path: Path) -> None:
    """Many PDFs are "encrypted" only with an owner password; the empty user password opens them."""
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise LoaderError(
            f"{_name(path)}: PDF is encrypted with a password; decrypt it first "
            "(e.g. qpdf --decrypt --password=PASSWORD in.pdf out.pdf) and ingest the copy."
        )


# --------------------------------------------------------------------------- HTML

_DROP_TAGS = ("script", "style", "noscript", "template", "head", "meta", "link", "iframe", "svg", "canvas")
# Elements that end a paragraph (blank line) vs. ones that only end a line.
_PARA_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "details", "dialog", "div",
        "dl", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "html", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "ul",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"dd", "dt", "li", "option", "tr"})
_CELL_TAGS = frozenset(("td", "th"))
_PRE_TAGS = frozenset(("pre", "textarea"))
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\n\r\f]+")  # HTML collapses ASCII whitespace only; NBSP survives
_BLANK_RUNS = re.compile(r"\n{3,}")

# Markers pushed on the walk stack; distinct objects, so they cannot collide with page text.
_PARA, _LINE, _BR, _CELL, _PRE_ON, _PRE_OFF = (object() for _ in range(6))


def _load_html(data: bytes, path: Path) -> tuple[str, list[Page]]:
    """Visible text only: scripts, styles and hidden elements would pollute retrieval."""
    declared = EncodingDetector.find_declared_encoding(data[:SNIFF_BYTES], is_html=True)
    with warnings.catch_warnings():  # XHTML parsed as HTML is what we want: visible text only
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(_clean(_decode(data, path, declared)), "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    _drop_invisible(soup)
    text = _html_text(soup)
    if not text.strip():
        text = title  # a page with nothing but a <title> is better than no document
    return text, [Page(number=None, start=0, end=len(text))]


def _drop_invisible(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(list(_DROP_TAGS)):
        tag.decompose()
    for tag in soup.find_all(_is_hidden):
        if not tag.decomposed:  # a hidden ancestor may already have removed it
            tag.decompose()


def _is_hidden(tag: Tag) -> bool:
    return tag.has_attr("hidden") or bool(_HIDDEN_STYLE.search(str(tag.get("style") or "")))


def _html_text(soup: BeautifulSoup) -> str:
    lines = _HtmlLines()
    for item in _html_events(soup):
        lines.feed(item)
    lines.flush()
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines.lines)).strip("\n")


def _html_events(root: Tag) -> Iterator[object]:
    """Yield strings and layout markers in document order; iterative, so deep markup can't
    exhaust Python's recursion limit."""
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, Tag):
            stack.extend(_expand(item))
        elif isinstance(item, NavigableString) and not isinstance(item, PreformattedString):
            yield str(item)
        elif not isinstance(item, NavigableString):
            yield item


def _expand(tag: Tag) -> list[object]:
    """Children plus markers, reversed for the stack."""
    name = tag.name
    if name == "br":
        return [_BR]
    before: list[object] = []
    after: list[object] = []
    if name in _PARA_TAGS or name in _LINE_TAGS:
        marker = _PARA if name in _PARA_TAGS else _LINE
        before, after = [marker], [marker]
    elif name in _CELL_TAGS:
        before = [_CELL]
    if name in _PRE_TAGS:
        # Toggle inside the block markers so the last <pre> line is flushed with indentation kept.
        before, after = [*before, _PRE_ON], [*after, _PRE_OFF]
    return list(reversed([*before, *tag.contents, *after]))


class _HtmlLines:
    """Accumulates walk events into lines: inline whitespace collapses, <pre> keeps its own."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current: list[str] = []
        self.pre_depth = 0

    def feed(self, item: object) -> None:
        if isinstance(item, str):
            self._text(item)
        elif item is _PRE_ON or item is _PRE_OFF:
            self.pre_depth += 1 if item is _PRE_ON else -1
        elif item is _CELL:
            if "".join(self.current).strip():
                self.current.append(" | ")
        elif item is _BR:
            self.flush(force=True)
        else:
            self.flush()
            if item is _PARA:
                self.lines.append("")

    def _text(self, text: str) -> None:
        if self.pre_depth == 0:
            self.current.append(_SPACES.sub(" ", text))
            return
        first, *rest = text.split("\n")
        self.current.append(first)
        for part in rest:
            self.flush(force=True)
            self.current.append(part)

    def flush(self, force: bool = False) -> None:
        line = "".join(self.current)
        line = line.rstrip() if self.pre_depth else line.strip()
        if line or force:
            self.lines.append(line)
        self.current = []


_LOADERS: dict[str, Loader] = {
    ".pdf": _load_pdf,
    ".txt": _load_text,
    ".md": _load_text,
    ".markdown": _load_text,
    ".html": _load_html,
    ".htm": _load_html,
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_LOADERS)
