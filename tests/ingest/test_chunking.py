"""Chunking invariants, checked on generated text with the real MiniLM tokenizer."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunking import Chunker
from rag.config import ChunkingSettings
from rag.types import Document, Page

WORDS = st.sampled_from(
    "the index stores vectors of every chunk /etc/zephyr.conf 8080 naïve über-long "
    "Zephyr_relay antidisestablishmentarianism snapshots, retention. cron: a b c".split()
)
SEPARATORS = st.sampled_from([" ", " ", " ", "\n", "\n\n", "  ", "\t"])
TEXT = st.lists(st.tuples(WORDS, SEPARATORS), min_size=1, max_size=600).map(
    lambda pairs: "".join(w + s for w, s in pairs)
)


def _doc(text: str, pages: list[Page] | None = None) -> Document:
    return Document(id="d", source="d.txt", text=text, pages=pages or [Page(None, 0, len(text))])


def _chunker(embedder, size: int = 64, overlap: int = 8) -> Chunker:
    return Chunker(
        ChunkingSettings(chunk_tokens=size, overlap_tokens=overlap),
        embedder.count_tokens,
        embedder.max_tokens,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT, size=st.integers(16, 120))
def test_offsets_slice_the_text_and_chunks_fit_the_embedder(embedder, text: str, size: int) -> None:
    chunks = _chunker(embedder, size, size // 4).split(_doc(text))
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.text.strip() == c.text and c.text
        assert embedder.count_tokens(c.text) <= embedder.max_tokens
    # every word of the document is in some chunk: nothing is dropped
    covered = [False] * len(text)
    for c in chunks:
        covered[c.start : c.end] = [True] * (c.end - c.start)
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


def test_text_without_spaces_is_split_to_fit(embedder) -> None:
    """No whitespace to split at (e.g. a CSV line of numbers): still no chunk over the limit."""
    text = ",".join(str(i) for i in range(3000))
    chunker = Chunker(
        ChunkingSettings(chunk_tokens=250, overlap_tokens=0), embedder.count_tokens, embedder.max_tokens
    )
    chunks = chunker.split(_doc(text))
    assert len(chunks) > 1
    assert all(embedder.count_tokens(c.text) <= embedder.max_tokens for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_chunks_stay_within_pages_and_keep_page_numbers(embedder) -> None:
    page_texts = ["alpha " * 150, "beta " * 150, "gamma " * 10]
    text, pages, pos = "", [], 0
    for i, t in enumerate(page_texts, 1):
        if text:
            text += "\n\n"
            pos = len(text)
        text += t
        pages.append(Page(i, pos, len(text)))
    chunks = _chunker(embedder, 100, 10).split(_doc(text, pages))
    for c in chunks:
        page = pages[c.page - 1]
        assert page.start <= c.start < c.end <= page.end
        assert text[c.start : c.end] == c.text
    assert {c.page for c in chunks} == {1, 2, 3}


def test_default_chunk_size_is_measured_in_tokens(embedder) -> None:
    text = " ".join(f"word{i}" for i in range(3000))
    chunker = Chunker(ChunkingSettings(), embedder.count_tokens, embedder.max_tokens)
    sizes = [embedder.count_tokens(c.text) for c in chunker.split(_doc(text))]
    assert max(sizes) <= ChunkingSettings().chunk_tokens
    assert sum(sizes[:-1]) / len(sizes[:-1]) > 0.8 * ChunkingSettings().chunk_tokens


def test_repeated_text_gets_the_offsets_of_its_own_occurrence(embedder) -> None:
    # Found by hypothesis: the second chunk "Zephyr_relay" was located inside the first chunk,
    # so the document's last word was in no chunk's offsets.
    text = "the Zephyr_relay antidisestablishmentarianism Zephyr_relay "
    chunks = _chunker(embedder, 16, 4).split(_doc(text))
    assert [text[c.start : c.end] for c in chunks] == [c.text for c in chunks]
    assert chunks[-1].end == len(text.rstrip())


def test_a_word_repeated_across_the_overlap_is_covered_once_per_occurrence(embedder) -> None:
    text = "/etc/zephyr.conf Zephyr_relay Zephyr_relay Zephyr_relay "
    chunks = _chunker(embedder, 16, 4).split(_doc(text))
    assert [text[c.start : c.end] for c in chunks] == [c.text for c in chunks]
    assert chunks[-1].end == len(text.rstrip())
