"""Build the configured components; the one place that maps config names to classes."""

from __future__ import annotations

from rag.config import Settings
from rag.embedding import make_embedder
from rag.grounding.support import LexicalSupportJudge
from rag.index.handle import IndexHandle
from rag.pipeline import Pipeline
from rag.protocols import Embedder, Generator
from rag.retrieval import DenseRetriever


def build_generator(settings: Settings) -> Generator:
    """The configured generator with its model loaded (about a minute for the default), so the
    first answer is not charged with the load."""
    from rag.generation import make_generator

    generator = make_generator(settings.generator)
    load = getattr(generator, "load", None)  # remote backends have nothing to load
    if load is not None:
        load()
    return generator


def build_pipeline(
    settings: Settings, *, embedder: Embedder | None = None, generator: Generator | None = None
) -> Pipeline:
    """Everything but the generator loads here (seconds); pass a generator to answer questions."""
    embedder = embedder or make_embedder(settings.embedding)
    retriever = DenseRetriever(embedder, IndexHandle(settings.index_dir))
    judge = LexicalSupportJudge(settings.grounding, embedder)
    return Pipeline(settings, retriever, judge, generator)
