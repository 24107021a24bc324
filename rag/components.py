"""Config -> components: every kind is built through rag.registry, and any of them can be passed
in instead (tests, an embedding app that already holds a model, a plugin's own instance)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rag import registry
from rag.cache import AnswerCache
from rag.config import Settings
from rag.pipeline import Pipeline
from rag.prompt import SYSTEM
from rag.protocols import (
    Embedder,
    Generator,
    Loadable,
    Reranker,
    Retriever,
    SupportJudge,
    VectorStore,
    WarmsUp,
)


@dataclass(frozen=True)
class Components:
    """What the service answers with. ``generator`` is None until one is loaded (the server loads
    it in the background); ``judge`` is built with it, since an LLM judge needs it."""

    settings: Settings
    embedder: Embedder
    store: VectorStore
    retriever: Retriever
    judge: SupportJudge | None = None
    generator: Generator | None = None
    cache: AnswerCache[Any] | None = None  # shared by every pipeline built from these components

    def with_generator(self, generator: Generator, judge: SupportJudge | None = None) -> Components:
        """These components with ``generator`` and the judge configured for it."""
        judge = judge or build_judge(self.settings, self.embedder, generator)
        return replace(self, generator=generator, judge=judge)

    def pipeline(self) -> Pipeline:
        return Pipeline.from_components(self)


def build_components(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    retriever: Retriever | None = None,
    judge: SupportJudge | None = None,
    generator: Generator | None = None,
) -> Components:
    """Build what is not given. Everything but the generator loads here (seconds); a generator
    is never built here, only passed in (``build_generator`` loads one, about a minute)."""
    embedder = embedder or build_embedder(settings)
    store = store or build_store(settings)
    retriever = retriever or build_retriever(settings, embedder, store)
    if judge is None and generator is not None:
        judge = build_judge(settings, embedder, generator)
    return Components(settings, embedder, store, retriever, judge, generator, build_cache(settings, embedder))


def build_cache(settings: Settings, embedder: Embedder) -> AnswerCache[Any] | None:
    """The semantic answer cache (cache.enabled), keyed by the embedder's question vectors."""
    c = settings.cache
    if not c.enabled:
        return None
    return AnswerCache(embedder, max_entries=c.max_entries, min_similarity=c.min_similarity)


def build_embedder(settings: Settings) -> Embedder:
    """The configured embedder; its model loads here, once."""
    from rag.embedding import make_embedder

    return make_embedder(settings.embedding)


def build_store(settings: Settings) -> VectorStore:
    """The configured store (cheap: nothing is opened until the first snapshot)."""
    return registry.build("store", settings.index.store, settings, setting="index.store")


def build_retriever(settings: Settings, embedder: Embedder, store: VectorStore) -> Retriever:
    value = settings.retrieval.retriever
    return registry.build("retriever", value, settings, embedder, store, setting="retrieval.retriever")


def build_reranker(settings: Settings, generator: Generator | None) -> Reranker | None:
    """The reranker ``retrieval.reranker`` names, or None for "none" (the default)."""
    value = settings.retrieval.reranker
    if value == "none":
        return None
    return registry.build("reranker", value, settings, generator, setting="retrieval.reranker")


def build_judge(settings: Settings, embedder: Embedder | None, generator: Generator | None) -> SupportJudge:
    """The judge ``grounding.judge`` names, for the answer path and the evaluator alike."""
    value = settings.grounding.judge
    return registry.build("judge", value, settings.grounding, embedder, generator, setting="grounding.judge")


def build_generator(settings: Settings) -> Generator:
    """The configured generator with its model loaded (about a minute for the default), so the
    first answer is not charged with the load."""
    generator = registry.build(
        "generator", str(settings.generator.backend), settings.generator, setting="generator.backend"
    )
    if isinstance(generator, Loadable):  # remote backends have nothing to load
        generator.load()
    if isinstance(generator, WarmsUp):  # the system prompt's state, computed once (prefix reuse)
        generator.warm_up(SYSTEM)
    return generator


def build_pipeline(
    settings: Settings, *, embedder: Embedder | None = None, generator: Generator | None = None
) -> Pipeline:
    """A pipeline over freshly built components; pass a generator to answer questions."""
    return build_components(settings, embedder=embedder, generator=generator).pipeline()
