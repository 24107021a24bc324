"""Rerankers (registry kind ``reranker``, setting ``retrieval.reranker``, off by default): re-score
the first ``retrieval.rerank_candidates`` hits of a query by reading query and passage together.

The retriever scores query and chunk apart (a cosine between two vectors, BM25 over terms); a
reranker sees both texts at once, which can tell "mentions the same words" from "answers it", at
a price per candidate that the retriever does not pay. Two are built in:

* ``generator``: the local generator's P("yes") that the passage answers the question, from the
  next-token logits of one prompt pass per candidate (the ``YesNoScorer`` capability). No extra
  model, since no cross-encoder reranker ships on PyPI; costs one prefill of the passage per
  candidate (seconds each on CPU, see bench/rerank_cost.py).
* ``cross-encoder``: a sentence-transformers ``CrossEncoder`` the user has in a local folder
  (``retrieval.cross_encoder_path``), e.g. an ms-marco model copied from elsewhere: one batched
  forward pass over the (query, passage) pairs, milliseconds for a MiniLM-sized model.

Both follow the ``rag.protocols.Reranker`` contract: best first, ``rerank_score`` set and
``score`` equal to it, every other field kept (``dense_score`` above all, which the refusal gate
reads), ties in the order the retriever gave.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError
from rag.prompt import build_relevance_messages
from rag.protocols import Generator, YesNoScorer
from rag.types import ScoredChunk

if TYPE_CHECKING:
    from rag.config import Settings


def rescored(hits: list[ScoredChunk], scores: list[float]) -> list[ScoredChunk]:
    """``hits`` with ``rerank_score`` and ``score`` set to ``scores``, best first.

    ``sorted`` is stable, so hits with equal scores keep the retriever's order (a reranker that
    cannot tell two passages apart should not reshuffle them)."""
    if len(scores) != len(hits):
        raise ValueError(f"{len(scores)} scores for {len(hits)} hits")
    out = [replace(h, score=s, rerank_score=s) for h, s in zip(hits, scores, strict=True)]
    return sorted(out, key=lambda h: -h.score)


class GeneratorReranker:
    """P(yes) of "does the passage answer the question?" from the project's own generator.

    Why the generator: it is already loaded, it reads the question and the passage together, and
    a yes/no read from the logits needs one prompt pass and no parsing (the LLM judge works the
    same way). The prompt (rag.prompt.build_relevance_messages) starts with the answer's system
    prompt and the question, so llama.cpp reuses that prefix for every candidate and for the answer
    that follows; each candidate then costs the prefill of its passage alone.
    """

    def __init__(self, settings: Settings, generator: Generator | None) -> None:
        if generator is None:
            raise ConfigError(
                "retrieval.reranker='generator' needs a loaded generator and none was given; build the "
                "pipeline with one, or set retrieval.reranker to 'none' or 'cross-encoder'"
            )
        if not isinstance(generator, YesNoScorer):
            raise ConfigError(
                f"retrieval.reranker='generator' needs a generator that reads P(yes) from its logits "
                f"(rag.protocols.YesNoScorer); {generator.name!r} cannot (generator.backend="
                f"{settings.generator.backend!r}); use generator.backend 'llamacpp' or 'transformers', "
                "or set retrieval.reranker to 'none' or 'cross-encoder'"
            )
        self.settings = settings
        self.scorer: YesNoScorer = generator

    def rerank(self, query: str, hits: list[ScoredChunk]) -> list[ScoredChunk]:
        scores = [self.scorer.yes_probability(build_relevance_messages(query, h.chunk.text)) for h in hits]
        return rescored(hits, [float(s) for s in scores])


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` loaded from ``retrieval.cross_encoder_path``.

    Why a plugin point and not a default: no cross-encoder reranker model is on PyPI and no model
    hub is reachable, so the model has to be a folder the user already has. The model is loaded
    once here, at construction, so a wrong path fails when the pipeline starts, not on a query;
    sentence-transformers (and torch) are imported only when this reranker is chosen.
    """

    def __init__(self, settings: Settings, generator: Generator | None = None) -> None:
        raw = settings.retrieval.cross_encoder_path
        if not raw:
            raise ConfigError(
                "retrieval.reranker='cross-encoder' needs retrieval.cross_encoder_path: the folder of a "
                "sentence-transformers CrossEncoder (no model hub is reachable, so it must be local)"
            )
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"retrieval.cross_encoder_path={raw!r} is not a folder; it must be a local "
                "sentence-transformers CrossEncoder folder (CrossEncoder.save() writes one)"
            )
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise ConfigError(
                "retrieval.reranker='cross-encoder' needs sentence-transformers; install it "
                "(pip install sentence-transformers) or set retrieval.reranker to 'none'"
            ) from exc
        try:
            self.model: Any = CrossEncoder(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"retrieval.cross_encoder_path={raw!r}: sentence-transformers cannot load a CrossEncoder "
                f"from it ({exc})"
            ) from exc
        self.path = path

    def rerank(self, query: str, hits: list[ScoredChunk]) -> list[ScoredChunk]:
        if not hits:
            return []
        pairs = [(query, h.chunk.text) for h in hits]
        scores = self.model.predict(pairs, batch_size=len(pairs), show_progress_bar=False)
        values = [float(s) for s in _one_score_each(scores, self.path)]
        return rescored(hits, values)


def _one_score_each(scores: Any, path: Path) -> list[Any]:
    """The model's scores as one number per pair; a model with several labels (an NLI
    cross-encoder, say) gives no single relevance score and is refused with its path."""
    shape = getattr(scores, "shape", None)
    if shape is not None and len(shape) == 2:
        if shape[1] != 1:
            raise ConfigError(
                f"retrieval.cross_encoder_path={str(path)!r}: the model gives {shape[1]} scores per pair; "
                "a reranker needs a CrossEncoder with one output (num_labels=1)"
            )
        return list(scores[:, 0])
    return list(scores)
