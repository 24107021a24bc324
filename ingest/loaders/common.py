"""Turn a file on disk into a :class:`rag.types.Document`.

Every failure is a :class:`rag.errors.LoaderError` whose message names the file, the reason and,
where there is one, the fix: ingest runs over whole folders, and one vague "failed" line per file
would leave the user guessing which file to fix and how.

Formats are dispatched by suffix through ``_LOADERS``; a loader gets the file's bytes and returns
the text plus the page spans in it. Reading, size limits and id/source naming are shared here so
each loader only has to know its format.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
from bs4.dammit import EncodingDetector
from bs4.element import NavigableString, PreformattedString, Tag
from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

from rag.errors import LoaderError
from rag.types import Document, Page
from rag.units import format_mib

log = logging.getLogger(__name__)

Loader = Callable[[bytes, Path], tuple[str, list[Page]]]

# The window in which the share of control characters decides "text or binary" (the window git
# and grep use). Every window of the file is checked, not just the first: binary data appended to
# a text file would otherwise be decoded into hundreds of junk chunks.
SNIFF_BYTES = 8192
# Share of control characters in one window above which NUL-free data is still treated as binary.
MAX_CONTROL_SHARE = 0.05
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\b\x1b")
# Bytes that count as control characters (NUL included), for bytes.translate's C-speed counting.
_BINARY_CONTROLS = bytes(b for b in range(0x20) if b not in _TEXT_CONTROLS) + b"\x7f"
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
    return _resolved(Path(path)).as_posix()


@dataclass
class FileScan:
    """What expanding the given paths found: the files to ingest, the folders walked (``--sync``
    deletes only under these) and the paths that could not be read, with why.

    Nothing under an unreadable path may be deleted by ``--sync``: its files are not gone, they
    just could not be listed this time.
    """

    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, LoaderError]] = field(default_factory=list)


def scan_files(paths: Iterable[Path], suffixes: Iterable[str] | None = None) -> FileScan:
    """Expand files and folders into the files to ingest, in a stable order.

    Paths named directly are taken whatever their suffix (or even if missing) so the caller
    reports them as failures instead of silently skipping what the user asked for; inside folders
    only supported suffixes are taken and hidden entries (``.git``, ``.DS_Store``) are skipped.
    Directory symlinks are not followed, which rules out cycles. Each file is listed once. A
    folder that cannot be listed is recorded in ``unreadable``; the walk goes on around it.
    """
    wanted = {s.lower() for s in (SUPPORTED_SUFFIXES if suffixes is None else suffixes)}
    scan = FileScan()
    seen: set[Path] = set()
    for given in paths:
        given = Path(given)
        if _is_dir(given):
            scan.folders.append(given)
            found: Iterable[Path] = _walk(given, wanted, scan.unreadable)
        else:  # a file, or something the loader will explain (missing, unreadable, a FIFO)
            found = [given]
        for path in found:
            key = _resolved(path)
            if key not in seen:
                seen.add(key)
                scan.files.append(path)
    return scan


def iter_files(paths: Iterable[Path], suffixes: Iterable[str] | None = None) -> Iterator[Path]:
    """The files of :func:`scan_files`; raises the first folder that could not be listed, so a
    caller that only wants files never silently misses some."""
    scan = scan_files(paths, suffixes)
    if scan.unreadable:
        raise scan.unreadable[0][1]
    yield from scan.files


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
        mode, size = (st := path.stat()).st_mode, st.st_size
    except OSError as exc:
        raise _stat_error(path, exc) from exc
    if stat.S_ISDIR(mode):
        raise LoaderError(f"{_name(path)}: is a directory, not a file; pass the files inside it.")
    if not stat.S_ISREG(mode):
        raise LoaderError(f"{_name(path)}: not a regular file (device, socket or pipe); skip it.")
    return size


def _stat_error(path: Path, exc: OSError) -> LoaderError:
    """Every way looking a file up can fail, as a message for that file (never an abort)."""
    if isinstance(exc, PermissionError):
        return _unreadable(path)
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return LoaderError(
                f"{_name(path)}: broken symbolic link (its target {os.readlink(path)!r} does not "
                "exist); fix or remove the link."
            )
        return LoaderError(f"{_name(path)}: file does not exist; check the path.")
    if exc.errno == errno.ELOOP:
        return LoaderError(f"{_name(path)}: symbolic link loop; fix or remove the link.")
    return LoaderError(f"{_name(path)}: cannot be read ({exc.strerror or exc}); check the path.")


def _unreadable(path: Path) -> LoaderError:
    return LoaderError(
        f"{_name(path)}: permission denied; make it (and the folders above it) readable "
        "(e.g. chmod a+r, folders a+rx) or run as a user who can read it."
    )


def _unlistable(path: Path, exc: OSError) -> LoaderError:
    return LoaderError(
        f"{_name(path)}: cannot list this folder ({exc.strerror or exc}); its files were not "
        "ingested and their indexed documents are kept (also with --sync). Make it readable "
        "(e.g. chmod a+rx) or run as a user who can read it."
    )


def _is_dir(path: Path) -> bool:
    """Path.is_dir() raises on EACCES and ENAMETOOLONG; such a path is left to the loader,
    which says why it cannot be read."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except OSError:
        return False


def _resolved(path: Path) -> Path:
    """Path.resolve() raises on a symlink loop; the absolute path still names the file."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _too_large(path: Path, size: int, max_bytes: int) -> LoaderError:
    return LoaderError(
        f"{_name(path)}: file is {format_mib(size)} ({size} bytes), over the limit of "
        f"{format_mib(max_bytes)} ({max_bytes} bytes); raise {SETTING_HINT} to ingest it."
    )


def _walk(root: Path, wanted: set[str], unreadable: list[tuple[Path, LoaderError]]) -> Iterator[Path]:
    """os.walk drops folders it cannot list unless told; each one is recorded in ``unreadable``."""

    def failed(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        unreadable.append((where, _unlistable(where, exc)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=failed):
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
    start = _binary_start(data)
    if start is not None:
        raise LoaderError(
            f"{_name(path)}: looks like a binary file, not text (NUL bytes or many control characters "
            f"from byte {start} of {len(data)}); check the file's type and extension, or cut the "
            "binary part off."
        )


def _binary_start(data: bytes) -> int | None:
    """Offset of the first NUL or control byte in the first window of ``SNIFF_BYTES`` that has a
    NUL or too many control characters; None for text. Counting uses bytes.translate (C speed),
    so a 50 MiB file costs milliseconds, and clean text (no control bytes at all) one pass."""
    if len(data.translate(None, _BINARY_CONTROLS)) == len(data):
        return None
    for lo in range(0, len(data), SNIFF_BYTES):
        lo = max(0, min(lo, len(data) - SNIFF_BYTES))  # the last window is full-size too
        window = data[lo : lo + SNIFF_BYTES]
        controls = len(window) - len(window.translate(None, _BINARY_CONTROLS))
        if b"\x00" in window or controls > MAX_CONTROL_SHARE * len(window):
            return lo + min(i for i in (window.find(bytes([b])) for b in _BINARY_CONTROLS) if i >= 0)
    return None


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
    """Any pypdf failure becomes a LoaderError: broken PDFs raise a zoo of exception types.

    The two failures that are not the file's fault get their own message: a password the user
    must supply, and a missing decryption library (AES PDFs need ``cryptography``)."""
    try:
        with _pypdf_to_debug(path):
            reader = PdfReader(io.BytesIO(data))
            _unlock(reader, path)
            return [_clean(page.extract_text() or "").strip() for page in reader.pages]
    except LoaderError:
        raise
    except FileNotDecryptedError as exc:
        raise _password_protected(path) from exc
    except DependencyError as exc:
        raise LoaderError(
            f"{_name(path)}: PDF is encrypted with AES and cannot be decrypted without the "
            f"'cryptography' package ({exc}); install it (pip install cryptography) and ingest again."
        ) from exc
    except Exception as exc:
        raise LoaderError(
            f"{_name(path)}: corrupt or unreadable PDF ({type(exc).__name__}: {exc}); "
            "re-export or repair it (e.g. qpdf in.pdf out.pdf)."
        ) from exc


def _unlock(reader: PdfReader, path: Path) -> None:
    """Many PDFs are "encrypted" only with an owner password (permissions-only: any viewer opens
    them); the empty user password opens them, and they are indexed like any other PDF."""
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise _password_protected(path)


def _password_protected(path: Path) -> LoaderError:
    return LoaderError(
        f"{_name(path)}: PDF is password-protected (it needs a password to open); decrypt it first "
        "(e.g. qpdf --decrypt --password=PASSWORD in.pdf out.pdf) and ingest the copy."
    )


class _DebugRelay(logging.Handler):
    """Re-logs pypdf's records at DEBUG under this module's logger, naming the file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("%s: pypdf %s: %s", _name(self.path), record.levelname.lower(), record.getMessage())


@contextlib.contextmanager
def _pypdf_to_debug(path: Path) -> Iterator[None]:
    """pypdf reports the malformations it works around ("Ignoring wrong pointing object") as
    warnings on its logger, which with no handler configured Python prints on stderr, over the
    CLI's progress bar. They are not the user's problem (the text was read), so they go to our
    log at DEBUG; pypdf's warnings.warn calls likewise."""
    pypdf_log = logging.getLogger("pypdf")
    relay = _DebugRelay(path)
    propagate = pypdf_log.propagate
    pypdf_log.addHandler(relay)
    pypdf_log.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            log.debug("%s: pypdf warning: %s", _name(path), warning.message)
    finally:
        pypdf_log.removeHandler(relay)
        pypdf_log.propagate = propagate


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
