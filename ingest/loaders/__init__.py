"""Turn a file on disk into a :class:`rag.types.Document`: one module per format, one table.

Adding a format is one new module (a :class:`~ingest.loaders.common.BytesLoader` subclass with
its ``suffixes`` and ``parse``) plus one line in ``FORMATS`` below. ``load_document`` picks the
loader by suffix; every failure is a :class:`rag.errors.LoaderError` naming the file and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ingest.loaders import common
from ingest.loaders.common import (
    MAX_CONTROL_SHARE,
    PAGE_SEPARATOR,
    PARSER_VERSION,
    SETTING_HINT,
    SNIFF_BYTES,
    BytesLoader,
    FileScan,
    default_document_id,
    display_name,
    file_fingerprint,
    file_size,
    file_stat,
)
from ingest.loaders.html import HtmlLoader
from ingest.loaders.pdf import PdfLoader
from ingest.loaders.text import TextLoader
from rag.errors import LoaderError
from rag.protocols import Loader
from rag.types import Document

__all__ = [
    "DEFAULT_LOADER",
    "FORMATS",
    "MAX_CONTROL_SHARE",
    "PAGE_SEPARATOR",
    "PARSER_VERSION",
    "SETTING_HINT",
    "SNIFF_BYTES",
    "SUPPORTED_SUFFIXES",
    "BytesLoader",
    "FileScan",
    "HtmlLoader",
    "PdfLoader",
    "SuffixLoader",
    "TextLoader",
    "default_document_id",
    "file_fingerprint",
    "file_stat",
    "iter_files",
    "load_document",
    "scan_files",
]

# The one suffix -> loader table (order = the order suffixes are listed in messages).
FORMATS: tuple[Loader, ...] = (
    PdfLoader(),
    TextLoader(),
    HtmlLoader(),
)


class SuffixLoader:
    """Implements rag.protocols.Loader over several loaders, chosen by the file's suffix."""

    def __init__(self, loaders: Sequence[Loader]) -> None:
        self.by_suffix: dict[str, Loader] = {s.lower(): lo for lo in loaders for s in lo.suffixes}
        self.suffixes: tuple[str, ...] = tuple(self.by_suffix)

    def load(self, path: Path, *, doc_id: str | None = None, max_bytes: int | None = None) -> Document:
        path = Path(path)
        file_size(path)  # before the suffix: a folder or a typo gets the message that helps
        return self.loader_for(path).load(path, doc_id=doc_id, max_bytes=max_bytes)

    def loader_for(self, path: Path) -> Loader:
        loader = self.by_suffix.get(path.suffix.lower())
        if loader is None:
            kind = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
            raise LoaderError(
                f"{display_name(path)}: unsupported file type ({kind}); supported: "
                f"{', '.join(self.suffixes)}. Convert it to one of these or leave it out."
            )
        return loader


DEFAULT_LOADER = SuffixLoader(FORMATS)
SUPPORTED_SUFFIXES: tuple[str, ...] = DEFAULT_LOADER.suffixes


def load_document(path: Path, *, doc_id: str | None = None, max_bytes: int | None = None) -> Document:
    """Load one file with the loader for its suffix (see ``SuffixLoader.load``)."""
    return DEFAULT_LOADER.load(path, doc_id=doc_id, max_bytes=max_bytes)


def scan_files(paths: Iterable[Path], suffixes: Iterable[str] | None = None) -> FileScan:
    """:func:`ingest.loaders.common.scan_files`, by default for the supported suffixes."""
    return common.scan_files(paths, SUPPORTED_SUFFIXES if suffixes is None else suffixes)


def iter_files(paths: Iterable[Path], suffixes: Iterable[str] | None = None) -> Iterator[Path]:
    """:func:`ingest.loaders.common.iter_files`, by default for the supported suffixes."""
    return common.iter_files(paths, SUPPORTED_SUFFIXES if suffixes is None else suffixes)
