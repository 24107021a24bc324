"""Plain text and Markdown (.txt, .md, .markdown), indexed verbatim: Markdown syntax is harmless
to embeddings."""

from __future__ import annotations

from pathlib import Path

from ingest.loaders.common import BytesLoader, clean_text, decode_text
from rag.types import Page


class TextLoader(BytesLoader):
    """One page spanning the whole decoded text."""

    suffixes = (".txt", ".md", ".markdown")

    def parse(self, data: bytes, path: Path) -> tuple[str, list[Page]]:
        text = clean_text(decode_text(data, path))
        return text, [Page(number=None, start=0, end=len(text))]
