"""The answer cache inside the answer path: a repeat is served without the generator, a re-worded
question too, a different one is generated, and a re-ingest that changes the index invalidates
every cached answer. Real embedder, real FAISS index built by the real ingest pipeline; the
generator is the declared scripted fake of tests/rag/test_pipeline.py (it counts its calls, which
is what the cache must save)."""

from __future__ import annotations

from pathlib import Path

from ingest.pipeline import ingest
from rag.components import build_components
from rag.config import load_settings
from rag.protocols import Embedder
from tests.rag.test_pipeline import ScriptedGenerator

RELAY_DOC = "The zephyr-relay daemon listens on TCP port 7341 and resumes dropped transfers.\n"
QUESTION = "Which TCP port does the zephyr-relay daemon listen on?"
REWORDED = "On which TCP port does the zephyr-relay daemon listen"  # same content words


def test_cache_hits_misses_and_invalidation_by_a_re_ingest(tmp_path: Path, embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "relay.md").write_text(RELAY_DOC)
    settings = load_settings(index_dir=tmp_path / "index")
    assert ingest([docs], settings, embedder).added == 1
    generator = ScriptedGenerator("The zephyr-relay daemon listens on TCP port 7341.")
    components = build_components(settings, embedder=embedder, generator=generator)
    pipeline = components.pipeline()

    first = pipeline.answer(QUESTION)
    assert not first.refused and first.cached is None and len(generator.prompts) == 1
    again = pipeline.answer(QUESTION)
    assert again.cached == "exact" and again.answer == first.answer and len(generator.prompts) == 1
    assert pipeline.answer(REWORDED).cached == "similar" and len(generator.prompts) == 1
    assert pipeline.answer("Which UDP port does the zephyr-relay daemon use?").cached is None
    assert len(generator.prompts) == 2
    assert pipeline.answer(QUESTION, use_cache=False).cached is None and len(generator.prompts) == 3

    (docs / "relay.md").write_text(RELAY_DOC + "It moved to port 7342 in version 2.\n")
    assert ingest([docs], settings, embedder).updated == 1
    components.store.refresh()  # what the server's upload job does after its commit
    after = pipeline.answer(QUESTION)
    assert after.index_version == first.index_version + 1
    assert after.cached is None and len(generator.prompts) == 4  # generated again, never served stale
    stats = pipeline.cache.stats
    assert (stats.exact_hits, stats.similar_hits) == (1, 1)
