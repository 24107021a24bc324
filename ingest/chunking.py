"""Split documents into chunks measured in the embedder's own word pieces.

langchain-text-splitters does the recursive splitting (paragraphs, lines, words, characters);
this module adds what a RAG index needs on top: a hard guarantee that no chunk exceeds what the
embedder can see (a silently truncated chunk is unretrievable text), pages kept (chunks never
cross a page, so a citation names one page), and character offsets into Document.text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.config import ChunkingSettings
from rag.types import Chunk, Document, Page

TokenCounter = Callable[[str], int]


class Chunker:
    def __init__(self, settings: ChunkingSettings, count_tokens: TokenCounter, max_tokens: int) -> None:
        self.size = min(settings.chunk_tokens, max_tokens)
        self.max_tokens = max_tokens
        self._count = count_tokens
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=self.size,
            chunk_overlap=min(settings.overlap_tokens, self.size // 2),
            length_function=count_tokens,
            keep_separator=True,
            strip_whitespace=True,
        )

    def split(self, doc: Document) -> list[Chunk]:
        return [chunk for page in doc.pages for chunk in self._split_page(doc, page)]

    def _split_page(self, doc: Document, page: Page) -> Iterator[Chunk]:
        page_text = doc.text[page.start : page.end]
        cursor = end = 0
        for piece in self._splitter.split_text(page_text):
            for part in self._enforce_limit(piece):
                start = _locate(page_text, part, cursor, end)
                if start < 0:  # the splitter only returns substrings; guard the invariant anyway
                    raise AssertionError(f"chunk not found in page text of {doc.source}")
                cursor, end = start + 1, start + len(part)
                yield Chunk(
                    document_id=doc.id,
                    source=doc.source,
                    page=page.number,
                    start=page.start + start,
                    end=page.start + start + len(part),
                    text=part,
                )

    def _enforce_limit(self, text: str) -> list[str]:
        """Halve at whitespace until every part fits the embedder (merged token counts are only
        an estimate of the joined text's count, and one long 'word' can exceed the limit)."""
        if self._count(text) <= self.max_tokens:
            return [text]
        cut = _middle_cut(text)
        head, tail = text[:cut].rstrip(), text[cut:].lstrip()
        return [p for part in (head, tail) if part for p in self._enforce_limit(part)]


def _locate(text: str, part: str, cursor: int, previous_end: int) -> int:
    """Where ``part`` starts in ``text``. The splitter moves forward and skips nothing, so a chunk
    starts after the previous chunk's start (``cursor``) and no later than the first non-space
    character after its end. Within that window repeated text (a name that recurs around the
    overlap) can match more than once: take the last match, the one that covers the most text."""
    limit = len(text) - len(text[previous_end:].lstrip())
    best = -1
    start = text.find(part, cursor)
    while 0 <= start <= limit:
        best = start
        start = text.find(part, start + 1)
    return best if best >= 0 else text.find(part, cursor)


def _middle_cut(text: str) -> int:
    middle = len(text) // 2
    left, right = text.rfind(" ", 0, middle), text.find(" ", middle)
    candidates = [i for i in (left, right) if 0 < i < len(text)]
    return min(candidates, key=lambda i: abs(i - middle)) if candidates else middle
