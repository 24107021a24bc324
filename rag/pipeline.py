"""The question-answering path: retrieve -> screen -> (refuse early) -> (cached?) -> pack the
context -> generate -> ground -> check relevance -> cite.

Everything that decides what the user sees (refusal, citations) happens here in code; the model
only drafts the answer text. A cached answer (rag.cache) is served only for the same index
version, filters, depth and generation settings.

Grounding runs sentence by sentence while the model writes (rag.grounding.streaming), so
``checked_stream`` can hand out each sentence as soon as it is complete and supported. Every path
(``answer``, ``answer_stream``, ``checked_stream``) produces the same final Answer: unsupported
sentences are withheld from it, and when it is not refused its text is exactly its checked
sentences joined.

Retrieved text is data (rag.injection): hits whose text reads as instructions to the model are
screened out (or down-weighted, or only flagged: safety.injection) before the refusal gate sees
them, and an answer with a sentence that does not address the question is refused after
grounding (safety.min_answer_relevance); such a sentence, and those after it, are not streamed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from collections.abc import Generator as Generator_
from contextlib import closing
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from rag.cache import AnswerCache, CacheScope
from rag.config import Settings
from rag.context import Passage, approximate_tokens, pack
from rag.grounding.answer import GroundedAnswer
from rag.grounding.streaming import SentenceChecker, ShownSentence
from rag.index.filters import SearchFilter
from rag.injection import Flagged, RelevanceCheck, all_excluded_reason, flag, screen, screen_depth
from rag.prompt import build_messages
from rag.protocols import (
    Embedder,
    GenerationParams,
    Generator,
    ReportsUsage,
    Reranker,
    Retrieved,
    Retriever,
    SupportJudge,
    TokenCounter,
)
from rag.types import ScoredChunk

if TYPE_CHECKING:
    from rag.components import Components


@dataclass
class Citation:
    """A chunk the answer's [n] markers refer to: the one citation type (the HTTP response
    converts it in one place, api.schemas.Citation.of)."""

    n: int  # the chunk's number in the prompt and in the answer's [n] markers
    hit: ScoredChunk


@dataclass(frozen=True)
class CheckedSentence:
    """A sentence of the answer that the support judge accepted, ready to show.

    ``text`` begins with what separates it from the previous shown sentence (a space, a line
    break and a list bullet; nothing for the first), so a consumer appends the texts as they come
    and the result is the final ``Answer.answer`` (unless that turns out to be a refusal)."""

    text: str  # as shown, with its [n] markers (the grounded form)
    citations: list[Citation]  # the chunks its markers refer to


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    reason: str
    citations: list[Citation]
    contexts: list[ScoredChunk]
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)  # tokens, prefill_ms, decode_ms
    draft: str = ""  # what the model wrote, before grounding
    grounding: GroundedAnswer | None = None
    index_version: int | None = None  # the committed index version the contexts came from
    passages: list[Passage] = field(default_factory=list)  # what the model was shown
    cached: str | None = None  # "exact" / "similar" when served from the answer cache
    # The checked sentences ``answer`` is made of, in order (empty for a refusal).
    sentences: list[CheckedSentence] = field(default_factory=list)
    # Hits of the top k that read as prompt injection, and what the screen did with each.
    flagged: list[Flagged] = field(default_factory=list)


class Pipeline:
    """Depends on the protocols only: any Retriever, SupportJudge and Generator will do.

    ``judge`` may be None while there is no generator (an LLM judge needs it): then
    ``make_judge`` builds it for the generator on the first answer, so a generator assigned
    later (``pipeline.generator = ...``) is judged by the configured judge too. ``embedder``
    measures answer relevance (safety.min_answer_relevance); without one that check is skipped.
    """

    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        judge: SupportJudge | None,
        generator: Generator | None = None,
        *,
        make_judge: Callable[[Generator], SupportJudge] | None = None,
        cache: AnswerCache[Answer] | None = None,
        reranker: Reranker | None = None,
        make_reranker: Callable[[Generator | None], Reranker | None] | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.retriever = retriever
        self.judge = judge
        self.generator = generator
        self.cache = cache
        self.reranker = reranker
        self._reranker_generator: Generator | None = None
        self._make_judge = make_judge
        self._make_reranker = make_reranker

    @classmethod
    def from_components(cls, components: Components) -> Pipeline:
        from rag.components import build_judge, build_reranker

        c = components
        make_judge = partial(build_judge, c.settings, c.embedder)
        make_reranker = partial(build_reranker, c.settings)
        return cls(
            c.settings,
            c.retriever,
            c.judge,
            c.generator,
            make_judge=make_judge,
            cache=c.cache,
            make_reranker=make_reranker,
            embedder=c.embedder,
        )

    def retrieve(
        self,
        query: str,
        top_k: int | None = None,
        *,
        filters: SearchFilter | None = None,
        mode: str | None = None,
    ) -> Retrieved:
        """The one retrieval path of /v1/search and /v1/query: the hits and the index version
        they come from. ``filters`` (metadata, source prefix) apply before the top-k is taken;
        ``mode`` is dense, keyword or hybrid (None: retrieval.mode). With a reranker
        (retrieval.reranker) the first ``rerank_candidates`` hits are re-scored before the cut.
        Each hit names the prompt-injection rules its text fires (``injection``), unless
        safety.injection is "off"; what to do about them is the answer path's business."""
        retrieved = self._ranked(query, top_k, filters, mode)
        if self.settings.safety.injection == "off":
            return retrieved
        return replace(retrieved, hits=flag(retrieved.hits))

    def _ranked(
        self, query: str, top_k: int | None, filters: SearchFilter | None, mode: str | None
    ) -> Retrieved:
        config = self.settings.retrieval
        k = top_k or config.top_k
        reranker = self._reranker_for(self.generator)
        depth = max(k, config.rerank_candidates) if reranker is not None else k
        retrieved = self.retriever.retrieve(query, depth, filters, mode)
        if reranker is None:
            return retrieved
        head, tail = retrieved.hits[: config.rerank_candidates], retrieved.hits[config.rerank_candidates :]
        return replace(retrieved, hits=(reranker.rerank(query, head) + tail)[:k])

    def search(
        self,
        query: str,
        top_k: int | None = None,
        *,
        filters: SearchFilter | None = None,
        mode: str | None = None,
    ) -> list[ScoredChunk]:
        """``retrieve()``'s hits alone, for callers that do not report the version."""
        return self.retrieve(query, top_k, filters=filters, mode=mode).hits

    def answer(
        self,
        question: str,
        top_k: int | None = None,
        *,
        filters: SearchFilter | None = None,
        params: GenerationParams | None = None,
        use_cache: bool = True,
        mode: str | None = None,
    ) -> Answer:
        return _last(
            self.answer_stream(
                question, top_k, filters=filters, params=params, use_cache=use_cache, mode=mode
            )
        )

    def answer_stream(
        self,
        question: str,
        top_k: int | None = None,
        *,
        filters: SearchFilter | None = None,
        params: GenerationParams | None = None,
        use_cache: bool = True,
        mode: str | None = None,
    ) -> Iterator[str | Answer]:
        """Yields draft text pieces as the model writes them (UNCHECKED: they may contain what
        grounding withholds, or end in a refusal), then the final, grounded Answer.

        ``params`` overrides the configured sampling settings for this answer; ``use_cache=False``
        neither reads nor writes the answer cache."""
        run = self.events(question, top_k, filters=filters, params=params, use_cache=use_cache, mode=mode)
        with closing(run) as items:  # closing this stream closes the model's at once
            yield from (item for item in items if not isinstance(item, CheckedSentence))

    def checked_stream(
        self,
        question: str,
        top_k: int | None = None,
        *,
        filters: SearchFilter | None = None,
        params: GenerationParams | None = None,
        use_cache: bool = True,
        mode: str | None = None,
    ) -> Iterator[CheckedSentence | Answer]:
        """Checked sentences as soon as each is complete and supported, then the final Answer
        (which may be a refusal: then the consumer shows the refusal message instead of the
        sentences it showed). An unsupported sentence is withheld, never yielded; a cached answer
        yields its sentences at once. Parameters as ``answer_stream``."""
        run = self.events(question, top_k, filters=filters, params=params, use_cache=use_cache, mode=mode)
        with closing(run) as items:
            yield from (item for item in items if not isinstance(item, str))

    def events(
        self,
        question: str,
        top_k: int | None = None,
        *,
        filters: SearchFilter | None = None,
        params: GenerationParams | None = None,
        use_cache: bool = True,
        mode: str | None = None,
    ) -> Iterator[str | CheckedSentence | Answer]:
        """Everything as it happens: draft pieces (``str``, UNCHECKED), each checked sentence
        right after the piece that completed it, then the Answer.

        For a consumer that must act between tokens although it shows only checked sentences:
        ``checked_stream`` hands out nothing between two sentences, so a server that stops the
        model when its client leaves should iterate this and skip the ``str`` items."""
        t0 = time.perf_counter()
        k = top_k or self.settings.retrieval.top_k
        safety = self.settings.safety
        retrieved = self.retrieve(question, screen_depth(k, safety), filters=filters, mode=mode)
        screened = screen(retrieved.hits, safety, k)  # excluded hits never reach the prompt
        hits, version, flagged = screened.hits, retrieved.index_version, screened.flagged
        timings = {"retrieve_ms": _ms(t0)}
        reason = self._gate(hits) if hits or not flagged else all_excluded_reason(flagged)
        if reason is not None:
            yield self._refusal(question, hits, reason, timings, version, flagged)
            return
        if self.generator is None:
            raise RuntimeError(
                "Pipeline.answer needs a generator; build the components with generator=... "
                "(or wait until the server has loaded it)"
            )
        params = params or self.default_params()
        scope = self._scope(version, filters, k, params, mode)
        cache = self.cache if use_cache else None
        hit = cache.get(question, scope) if cache is not None else None
        if hit is not None:
            yield from _sentences_of(hit.value)
            yield replace(
                hit.value, question=question, cached=hit.kind, timings=timings | {"generate_ms": 0.0}
            )
            return
        answer = yield from self._generate(question, hits, version, timings, params)
        answer.flagged = flagged
        if cache is not None:
            cache.put(question, scope, answer, cost_s=answer.timings.get("generate_ms", 0.0) / 1000)
        yield answer

    def _generate(
        self,
        question: str,
        hits: list[ScoredChunk],
        version: int | None,
        timings: dict[str, float],
        params: GenerationParams,
    ) -> Generator_[str | CheckedSentence, None, Answer]:
        """Pack, generate (yielding pieces) while grounding sentence by sentence (yielding each
        checked one once it is seen to address the question: RelevanceCheck); returns the Answer
        (``yield from``'s value)."""
        generator = self.generator
        assert generator is not None
        judge = self._judge_for(generator)
        t1 = time.perf_counter()
        counter = generator.count_tokens if isinstance(generator, TokenCounter) else approximate_tokens
        passages = pack(question, hits, self.settings.generator.context_tokens, counter)
        messages = build_messages(question, passages)
        # The judge sees exactly the passages the prompt had. A judge that runs on this generator
        # (the LLM judge) cannot run between its tokens: it judges once the draft is complete.
        checker = SentenceChecker(
            [p.text for p in passages],
            judge,
            self.settings.grounding,
            defer=getattr(judge, "generator", None) is generator,
        )
        threshold = self.settings.safety.min_answer_relevance
        relevance = RelevanceCheck(question, self.embedder, threshold, [p.text for p in passages])
        shown: list[CheckedSentence] = []
        held: list[CheckedSentence] = []  # checked, not yet shown to address the question
        # closing(): when our consumer closes this stream, the generator's own stream is closed
        # at once (which stops the model), not whenever it is garbage-collected.
        with closing(generator.stream(messages, params)) as stream:
            for piece in stream:
                yield piece
                held += [_checked(sentence, passages) for sentence in checker.feed(piece)]
                n = relevance.releasable([s.text for s in held]) if held else 0
                yield from held[:n]
                shown, held = shown + held[:n], held[n:]
        timings["generate_ms"] = round(_ms(t1) - (checker.seconds + relevance.seconds) * 1000, 1)
        usage = _usage(generator)
        checked = checker.finish()
        held += [_checked(sentence, passages) for sentence in checked.shown]
        grounded = checked.grounded
        if not grounded.refused and not relevance.addresses(grounded.sentences):
            refusal = self.settings.grounding.refusal_message
            grounded = replace(grounded, answer=refusal, refused=True, reason=relevance.reason())
        if not grounded.refused:
            yield from held
            shown += held
        timings["ground_ms"] = round((checker.seconds + relevance.seconds) * 1000, 1)
        cited = [] if grounded.refused else [Citation(n, passages[n - 1].hit) for n in grounded.cited]
        return Answer(
            question,
            grounded.answer,
            grounded.refused,
            grounded.reason,
            cited,
            [p.hit for p in passages],
            timings,
            usage=usage,
            draft=checker.text,
            grounding=grounded,
            index_version=version,
            passages=passages,
            sentences=[] if grounded.refused else shown,
        )

    def _scope(
        self,
        version: int | None,
        filters: SearchFilter | None,
        top_k: int,
        params: GenerationParams,
        mode: str | None,
    ) -> CacheScope:
        g, r, s = self.settings.generator, self.settings.retrieval, self.settings.safety
        generation = repr((g.backend, g.model, g.context_tokens, params))
        # The screen changes what is retrieved, the relevance check what is refused.
        safety = (s.injection, s.injection_downweight, s.min_answer_relevance)
        retrieval = repr((mode or r.mode, r.reranker, safety))
        return CacheScope(
            version,
            filters=filters.key if filters else "",
            top_k=top_k,
            retrieval=retrieval,
            generation=generation,
        )

    def _reranker_for(self, generator: Generator | None) -> Reranker | None:
        """The configured reranker, built on first use; None when retrieval.reranker is "none".

        The "generator" reranker needs the model, which the server loads after start-up: until
        then hits are not reranked (their ``rerank_score`` stays None, so a client can tell), and
        it is built again if the pipeline's generator is replaced."""
        name = self.settings.retrieval.reranker
        if self._make_reranker is None or name == "none":
            return self.reranker
        if name == "generator" and generator is None:
            return None
        if self.reranker is None or (name == "generator" and self._reranker_generator is not generator):
            self.reranker = self._make_reranker(generator)
            self._reranker_generator = generator
        return self.reranker

    def _judge_for(self, generator: Generator) -> SupportJudge:
        if self.judge is None:
            if self._make_judge is None:
                raise RuntimeError("Pipeline has no judge; pass judge=... or make_judge=...")
            self.judge = self._make_judge(generator)
        return self.judge

    def _gate(self, hits: list[ScoredChunk]) -> str | None:
        """Why to refuse before generating, or None to go on.

        The gate reads the best raw dense cosine (``dense_score``), not the rank ``score``, so it
        keeps its meaning when a later stage fuses or reranks. When no hit carries a dense score
        (a retriever that scores otherwise, e.g. keywords only) there is no cosine to compare:
        the gate lets any non-empty result through and the grounding check alone decides.
        """
        if not hits:
            return "no chunk is similar enough to the question (best score none)"
        dense = [h.dense_score for h in hits if h.dense_score is not None]
        if not dense:
            return None
        best = max(dense)
        if best < self.settings.retrieval.min_score:
            return f"no chunk is similar enough to the question (best score {best:.2f})"
        return None

    def default_params(self) -> GenerationParams:
        """The configured sampling settings (generator.*), which a request may override."""
        g = self.settings.generator
        return GenerationParams(
            max_tokens=g.max_tokens,
            temperature=g.temperature,
            top_p=g.top_p,
            stop=tuple(g.stop),
            top_k=g.top_k,
            repetition_penalty=g.repetition_penalty,
            seed=g.seed,
        )

    def _refusal(
        self,
        question: str,
        hits: list[ScoredChunk],
        reason: str,
        timings: dict[str, float],
        version: int | None,
        flagged: list[Flagged],
    ) -> Answer:
        timings["generate_ms"] = 0.0
        msg = self.settings.grounding.refusal_message
        return Answer(question, msg, True, reason, [], hits, timings, index_version=version, flagged=flagged)


def _checked(sentence: ShownSentence, passages: list[Passage]) -> CheckedSentence:
    """A checked sentence with its markers' numbers turned into citations of the passages."""
    return CheckedSentence(sentence.text, [Citation(n, passages[n - 1].hit) for n in sentence.cited])


def _sentences_of(answer: Answer) -> list[CheckedSentence]:
    """What a cached answer shows at once: its sentences (an answer cached before it kept them
    is shown whole, with all its citations)."""
    if answer.refused:
        return []
    return answer.sentences or [CheckedSentence(answer.answer, list(answer.citations))]


def _usage(generator: Generator) -> dict[str, float]:
    """Prompt and completion tokens, prefill and decode time of the answer just generated."""
    if not isinstance(generator, ReportsUsage):
        return {}
    st = generator.last_stats
    return {
        "prompt_tokens": st.prompt_tokens,
        "completion_tokens": st.completion_tokens,
        "prefill_ms": round(st.prefill_s * 1000, 1),
        "decode_ms": round(st.decode_s * 1000, 1),
    }


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _last(stream: Iterator[Any]) -> Answer:
    result = None
    for item in stream:
        result = item
    assert isinstance(result, Answer)
    return result
