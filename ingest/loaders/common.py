"""The plumbing every format loader shares: size and readability checks, binary sniffing,
decoding, folder walking, fingerprints and document ids.

Every failure is a :class:`rag.errors.LoaderError` whose message names the file, the reason and,
where there is one, the fix: ingest runs over whole folders, and one vague "failed" line per file
would leave the user guessing which file to fix and how.

A format is a :class:`BytesLoader` subclass in its own module (pdf.py, html.py, text.py) that
turns the file's bytes into text plus page spans; reading, size limits and id/source naming are
done here once, so each format only has to know its format. The suffix -> loader table is in
``ingest/loaders/__init__.py``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import LoaderError
from rag.types import Document, Page
from rag.units import format_mib

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


# --------------------------------------------------------------------------- public API


class BytesLoader(ABC):
    """Implements rag.protocols.Loader for a format parsed from the file's bytes: subclasses set
    ``suffixes`` and write ``parse``; the checks every format needs happen here, before and after.
    Instances must be module-level (picklable): the parse worker gets its loader by pickle."""

    suffixes: tuple[str, ...] = ()

    @abstractmethod
    def parse(self, data: bytes, path: Path) -> tuple[str, list[Page]]:
        """The text and where each page lies in it; raises LoaderError naming the file and the fix."""

    def load(self, path: Path, *, doc_id: str | None = None, max_bytes: int | None = None) -> Document:
        """``doc_id`` defaults to the resolved POSIX path, so the same file reached through
        different relative paths is one document; ``max_bytes`` guards memory on huge files."""
        path = Path(path)
        data = read_bytes(path, file_size(path), max_bytes)
        return make_document(path, *self.parse(data, path), doc_id)


def make_document(path: Path, text: str, pages: list[Page], doc_id: str | None) -> Document:
    """The Document for parsed text; text that is only whitespace is a failure, not a document."""
    if not text.strip():
        raise LoaderError(
            f"{display_name(path)}: no text left after extraction (only whitespace); nothing to index."
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
    try:
        if not path.is_file() or (max_bytes is not None and path.stat().st_size > max_bytes):
            return None
        with open(path, "rb") as fh:
            # Seeded with the version, so fingerprints stay those of earlier releases.
            digest = hashlib.file_digest(fh, lambda: hashlib.sha256(PARSER_VERSION.encode() + b"\0"))
    except OSError:
        return None
    return digest.hexdigest()


def file_stat(path: Path) -> str | None:
    """``"<bytes>:<mtime_ns>:<parser version>"`` of a regular file, or None (not a regular file,
    unreadable). The parser version is part of it for the reason it seeds the fingerprint: a new
    parser must see every file again.

    Stored with the file's fingerprint when it is hashed: a later ingest that finds the same stat
    skips hashing the file (one stat call instead of reading every byte). The limit, as for any
    stat cache (make, rsync, git's index): bytes rewritten to the same size within the file
    system's timestamp granularity of the recorded stat go unnoticed until the file changes again.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{PARSER_VERSION}"


def default_document_id(path: Path) -> str:
    """The normalised absolute path: stable across runs and relative spellings of the path."""
    return resolved(Path(path)).as_posix()


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
    # Each file's resolved path (its document id's source), found once while walking: resolving
    # costs a system call per path component, and a re-ingest of 10,000 files did it twice each.
    resolved: dict[Path, Path] = field(default_factory=dict)


def scan_files(paths: Iterable[Path], suffixes: Iterable[str]) -> FileScan:
    """Expand files and folders into the files to ingest, in a stable order.

    Paths named directly are taken whatever their suffix (or even if missing) so the caller
    reports them as failures instead of silently skipping what the user asked for; inside folders
    only supported suffixes are taken and hidden entries (``.git``, ``.DS_Store``) are skipped.
    Directory symlinks are not followed, which rules out cycles. Each file is listed once. A
    folder that cannot be listed is recorded in ``unreadable``; the walk goes on around it.
    """
    wanted = {s.lower() for s in suffixes}
    scan = FileScan()
    seen: set[Path] = set()
    for given in paths:
        given = Path(given)
        if _is_dir(given):
            scan.folders.append(given)
            found: Iterable[tuple[Path, Path]] = _walk(given, wanted, scan.unreadable)
        else:  # a file, or something the loader will explain (missing, unreadable, a FIFO)
            found = [(given, resolved(given))]
        for path, key in found:
            if key not in seen:
                seen.add(key)
                scan.files.append(path)
                scan.resolved[path] = key
    return scan


def iter_files(paths: Iterable[Path], suffixes: Iterable[str]) -> Iterator[Path]:
    """The files of :func:`scan_files`; raises the first folder that could not be listed, so a
    caller that only wants files never silently misses some."""
    scan = scan_files(paths, suffixes)
    if scan.unreadable:
        raise scan.unreadable[0][1]
    yield from scan.files


# --------------------------------------------------------------------------- shared plumbing


def display_name(path: Path) -> str:
    return path.as_posix()


def read_bytes(path: Path, size: int, max_bytes: int | None) -> bytes:
    """Check size and readability before parsing, so each gets its own message."""
    if size == 0:
        raise LoaderError(f"{display_name(path)}: file is empty (0 bytes); nothing to index.")
    if max_bytes is not None and size > max_bytes:
        raise _too_large(path, size, max_bytes)
    try:
        with path.open("rb") as fh:
            # Read one byte past the limit: the file may have grown since stat().
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except PermissionError as exc:
        raise _unreadable(path) from exc
    except OSError as exc:
        raise LoaderError(f"{display_name(path)}: cannot be read ({exc.strerror or exc}).") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise _too_large(path, len(data), max_bytes)
    return data


def file_size(path: Path) -> int:
    """Checked before the suffix, so a folder or a typo gets the message that actually helps."""
    try:
        mode, size = (st := path.stat()).st_mode, st.st_size
    except OSError as exc:
        raise _stat_error(path, exc) from exc
    if stat.S_ISDIR(mode):
        raise LoaderError(f"{display_name(path)}: is a directory, not a file; pass the files inside it.")
    if not stat.S_ISREG(mode):
        raise LoaderError(f"{display_name(path)}: not a regular file (device, socket or pipe); skip it.")
    return size


def _stat_error(path: Path, exc: OSError) -> LoaderError:
    """Every way looking a file up can fail, as a message for that file (never an abort)."""
    if isinstance(exc, PermissionError):
        return _unreadable(path)
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return LoaderError(
                f"{display_name(path)}: broken symbolic link (its target {os.readlink(path)!r} does not "
                "exist); fix or remove the link."
            )
        return LoaderError(f"{display_name(path)}: file does not exist; check the path.")
    if exc.errno == errno.ELOOP:
        return LoaderError(f"{display_name(path)}: symbolic link loop; fix or remove the link.")
    return LoaderError(f"{display_name(path)}: cannot be read ({exc.strerror or exc}); check the path.")


def _unreadable(path: Path) -> LoaderError:
    return LoaderError(
        f"{display_name(path)}: permission denied; make it (and the folders above it) readable "
        "(e.g. chmod a+r, folders a+rx) or run as a user who can read it."
    )


def _unlistable(path: Path, exc: OSError) -> LoaderError:
    return LoaderError(
        f"{display_name(path)}: cannot list this folder ({exc.strerror or exc}); its files were not "
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


def resolved(path: Path) -> Path:
    """Path.resolve() raises on a symlink loop; the absolute path still names the file."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _too_large(path: Path, size: int, max_bytes: int) -> LoaderError:
    return LoaderError(
        f"{display_name(path)}: file is {format_mib(size)} ({size} bytes), over the limit of "
        f"{format_mib(max_bytes)} ({max_bytes} bytes); raise {SETTING_HINT} to ingest it."
    )


def _walk(
    root: Path, wanted: set[str], unreadable: list[tuple[Path, LoaderError]]
) -> Iterator[tuple[Path, Path]]:
    """(path, resolved path) of each wanted file. os.walk drops folders it cannot list unless
    told; each one is recorded in ``unreadable``. A folder is resolved once; a file only when it
    is a symlink (otherwise it resolves to its resolved folder plus its name)."""

    def failed(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        unreadable.append((where, _unlistable(where, exc)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=failed):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        real_folder = resolved(folder)
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                path = folder / name
                yield path, resolved(path) if os.path.islink(path) else real_folder / name


# --------------------------------------------------------------------------- text decoding


def clean_text(text: str) -> str:
    """One newline convention and no NULs, so offsets and chunking see the same text everywhere."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def decode_text(data: bytes, path: Path, declared: str | None = None) -> str:
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
            f"{display_name(path)}: starts with a {codec} byte-order mark but is not valid {codec} "
            f"(byte {exc.start}); re-save it as UTF-8."
        ) from exc


def _reject_binary(data: bytes, path: Path) -> None:
    start = _binary_start(data)
    if start is not None:
        raise LoaderError(
            f"{display_name(path)}: looks like a binary file, not text (NUL bytes or many control characters "
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
