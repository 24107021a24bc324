"""Score a data set sample by sample, appending each result to ``partial.jsonl`` so an interrupted
run resumes where it stopped: samples whose key (hash of question + answer + contexts) and judge
fingerprint are already in the file are not recomputed."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eval.calibration import expected_calibration_error, reliability
from eval.dataset import Sample, sample_key
from eval.robustness import originals, robustness
from eval.stats import percentile, summarize
from rag.config import MetricsSettings, Settings
from rag.errors import RagError
from rag.grounding.answer import is_refusal
from rag.grounding.text import strip_markers
from rag.metrics import (
    answer_correctness,
    answer_relevance_embedding,
    answer_relevance_questions,
    context_precision,
    context_recall,
    context_relevance,
    faithfulness,
    generate_questions,
    refusal_correct,
)
from rag.pipeline import Pipeline
from rag.protocols import Embedder, Generator, SupportJudge

log = logging.getLogger("eval")

METRICS = (
    "faithfulness",
    "answer_relevance",
    "answer_relevance_generated",
    "context_precision",
    "context_recall",
    "context_relevance",
    "answer_correctness",
    "refusal_correctness",
)
PARTIAL = "partial.jsonl"


def fingerprint(settings: Settings, judge_name: str) -> str:
    """What a stored result depends on besides the sample: judge, weights, thresholds."""
    g = settings.grounding
    blob = json.dumps(
        [
            judge_name,
            g.weights.model_dump(),
            g.ensemble.model_dump() if judge_name == "ensemble" else None,
            g.min_support,
            g.llm_min_support,
            g.llm_max_context_chars,
            settings.embedding.model,
            settings.embedding.backend,
            settings.metrics.model_dump(),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


AUTO_JUDGE = "auto"


def resolve_judge(name: str, settings: Settings, need_generation: bool) -> str:
    """``auto`` (the default of `rag eval`): the ensemble judge when the run generates its answers
    with a generator that reads P(yes) from its logits -- the generator is loaded anyway, and the
    LLM check of a statement (~3 s on 2 CPU cores, bench/ensemble_judge.py) is small next to
    generating the answer (~13 s); the support judge otherwise, so scoring given answers stays a
    matter of seconds."""
    if name != AUTO_JUDGE:
        return name
    if not need_generation:
        return "support"
    from rag import registry

    backend = registry.resolve("generator", settings.generator.backend, setting="generator.backend")
    return "ensemble" if hasattr(backend, "yes_probability") else "support"


def needs(samples: Sequence[Sample]) -> tuple[bool, bool]:
    """(retrieval, generation): rows without contexts are retrieved, rows without answers generated."""
    generation = any(s.answer is None for s in samples)
    return generation or any(s.contexts is None for s in samples), generation


def build_evaluator(
    settings: Settings, judge_name: str, need_retrieval: bool, need_generation: bool
) -> tuple[Evaluator, Generator | None]:
    """The evaluator for these settings, loading only what the rows need: the generator for rows
    without answers or an LLM-backed judge, the index for rows without contexts."""
    from rag.components import build_generator, build_pipeline
    from rag.embedding import make_embedder
    from rag.embedding.caching import CachingEmbedder
    from rag.grounding.judges import make_support_judge

    embedder = CachingEmbedder(make_embedder(settings.embedding))
    generator = build_generator(settings) if (need_generation or judge_name != "support") else None
    pipeline = build_pipeline(settings, embedder=embedder, generator=generator) if need_retrieval else None
    judge = make_support_judge(judge_name, settings.grounding, embedder, generator)
    question_generator = generator if judge_name == "llm" else None
    return Evaluator(settings, embedder, judge, judge_name, pipeline, question_generator), generator


class Evaluator:
    """Scores samples. ``pipeline`` is needed only for rows without contexts (retrieval) or without
    an answer (generation: then the pipeline must hold a generator)."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        judge: SupportJudge,
        judge_name: str = "support",
        pipeline: Pipeline | None = None,
        question_generator: Generator | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.judge = judge
        self.judge_name = judge_name
        self.pipeline = pipeline
        self.question_generator = question_generator  # set for --judge llm: RAGAS answer relevance

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.settings, self.judge_name)

    # ------------------------------------------------------------------ one sample
    def score(self, sample: Sample) -> dict[str, Any]:
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "key": sample_key(sample.question, sample.answer, sample.contexts),
            "fingerprint": self.fingerprint,
            "judge": self.judge_name,
            "id": sample.id,
            "question": sample.question,
            "reference": sample.reference,
            "answerable": sample.answerable,
            "synthetic": sample.synthetic,
            "generated": sample.answer is None,
            "errors": {},
        }
        extra = sample.model_extra or {}
        for field in ("variant", "origin", "label"):  # robustness variants; a faithfulness label
            if extra.get(field) is not None:
                record[field] = extra[field]
        try:
            answer, refused, reason, contexts, efficiency, draft = self._answer(sample)
        except RagError as exc:
            record.update(error=f"could not answer: {exc}", metrics=dict.fromkeys(METRICS), refused=False)
            return record
        refused = refused or is_refusal(answer)
        record.update(
            answer=answer,
            refused=refused,
            refusal_reason=reason if refused else "",
            contexts=contexts,
            efficiency=efficiency,
        )
        if refused and draft:
            record["draft"] = draft
        texts = [c["text"] for c in contexts]
        clean = strip_markers(answer).strip()
        metrics: dict[str, float | None] = dict.fromkeys(METRICS)
        errors: dict[str, str] = record["errors"]

        def attempt(name: str, fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except RagError as exc:  # the LLM judge's JudgeError, generator failures
                errors[name] = str(exc)
                return None

        if not refused and clean:
            f = attempt("faithfulness", lambda: faithfulness(clean, texts, self.judge))
            if f is not None:
                metrics["faithfulness"], verdicts = f
                record["statements"] = [asdict(v) for v in verdicts]
                if f[0] is None:
                    errors.setdefault("faithfulness", "the answer makes no checkable statement")
            metrics["answer_relevance"] = answer_relevance_embedding(sample.question, clean, self.embedder)
            if self.question_generator is not None:
                qs = attempt(
                    "answer_relevance_generated",
                    lambda: generate_questions(
                        clean, self.question_generator, self.settings.metrics.generated_questions
                    ),
                )
                if qs is not None:
                    record["generated_questions"] = qs
                    metrics["answer_relevance_generated"] = answer_relevance_questions(
                        sample.question, qs, self.embedder
                    )
                    if not qs:
                        errors["answer_relevance_generated"] = "the generator wrote no usable question"
            if sample.reference:
                c = attempt(
                    "answer_correctness",
                    lambda: answer_correctness(
                        clean, sample.reference, self.judge, self.embedder, self.settings.metrics
                    ),
                )
                if c is not None:
                    metrics["answer_correctness"] = c.score
                    record["correctness"] = c.as_dict()
        if sample.reference and texts:
            p = attempt("context_precision", lambda: context_precision(sample.reference, texts, self.judge))
            if p is not None:
                metrics["context_precision"], record["context_useful"] = p
            r = attempt("context_recall", lambda: context_recall(sample.reference, texts, self.judge))
            if r is not None:
                metrics["context_recall"], recall_verdicts = r
                record["reference_verdicts"] = [asdict(v) for v in recall_verdicts]
        if texts:
            metrics["context_relevance"] = context_relevance(
                sample.question, texts, self.embedder, self.settings.metrics
            )
        metrics["refusal_correctness"] = refusal_correct(refused, sample.answerable)
        record["metrics"] = metrics
        record["support_probability"] = self._support_probability(record, texts, refused)
        record["error"] = (
            "; ".join(
                f"{k}: {v}"
                for k, v in errors.items()
                if k != "faithfulness" or metrics["faithfulness"] is None
            )
            or None
        )
        record["score_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return record

    def _support_probability(self, record: dict[str, Any], texts: list[str], refused: bool) -> float | None:
        """The judge's probability that the answer is supported (its weakest statement's score).
        For a refusal, that of the draft the pipeline refused to show: the confidence the refusal
        was decided on, which the refusal calibration needs."""
        if not refused:
            scores = [v["score"] for v in record.get("statements", [])]
            return round(min(scores), 4) if scores else None
        draft = strip_markers(record.get("draft") or "").strip()
        if not draft or not texts or is_refusal(draft):
            return None
        try:
            _, verdicts = faithfulness(draft, texts, self.judge)
        except RagError:
            return None
        return round(min(v.score for v in verdicts), 4) if verdicts else None

    def _answer(self, sample: Sample) -> tuple[str, bool, str, list[dict], dict[str, Any], str]:
        """(answer, refused, refusal reason, contexts, efficiency, the model's draft)."""
        if sample.answer is not None:
            efficiency: dict[str, Any] = {}
            if sample.contexts is not None:
                contexts = [{"text": c} for c in sample.contexts]
            else:
                pipeline = self._need_pipeline("rows without contexts are retrieved from the index")
                t0 = time.perf_counter()
                hits = pipeline.search(sample.question)
                efficiency["retrieve_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                contexts = [_context(h) for h in hits]
            return sample.answer, False, "", contexts, efficiency, ""
        pipeline = self._need_pipeline("rows without an answer are answered by the pipeline")
        result = pipeline.answer(sample.question)
        efficiency = dict(result.timings)
        efficiency.update(result.usage)
        return (
            result.answer,
            result.refused,
            result.reason,
            [_context(h) for h in result.contexts],
            efficiency,
            result.draft,
        )

    def _need_pipeline(self, why: str) -> Pipeline:
        if self.pipeline is None:
            raise RagError(f"{why}; pass --index DIR (an index built with `rag ingest`)")
        return self.pipeline

    # ------------------------------------------------------------------ many samples, resumable
    def run(
        self,
        samples: Sequence[Sample],
        out_dir: Path,
        on_progress: Callable[[int, int, bool], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Score all samples, resuming from out_dir/partial.jsonl; returns records in input order."""
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = out_dir / PARTIAL
        done = load_partial(partial, self.fingerprint)
        results: list[dict[str, Any]] = []
        with partial.open("a", encoding="utf-8") as f:
            for i, sample in enumerate(samples):
                key = sample_key(sample.question, sample.answer, sample.contexts)
                cached = done.get(key)
                if cached is not None:
                    results.append(cached)
                else:
                    record = self.score(sample)
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                    done[key] = record
                    results.append(record)
                if on_progress is not None:
                    on_progress(i + 1, len(samples), cached is not None)
        return results


def load_partial(path: Path, fingerprint: str) -> dict[str, dict[str, Any]]:
    """Finished records by key; a torn last line (killed mid-write) and other judges' rows are ignored."""
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("ignoring an unreadable line in %s (an interrupted write)", path)
            continue
        if isinstance(record, dict) and record.get("fingerprint") == fingerprint and "key" in record:
            done[record["key"]] = record
    return done


def _context(hit: Any) -> dict[str, Any]:
    c = hit.chunk
    return {"text": c.text, "source": c.source, "page": c.page, "score": round(float(hit.score), 4)}


# ---------------------------------------------------------------- aggregates
EFFICIENCY = (
    "retrieve_ms",
    "generate_ms",
    "prefill_ms",
    "decode_ms",
    "ground_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_per_question",
)


def aggregate(
    records: Iterable[dict[str, Any]],
    metrics: Sequence[str] = METRICS,
    settings: MetricsSettings | None = None,
) -> dict[str, Any]:
    """Means with CIs over the unperturbed questions, efficiency, calibration and (when the run
    has perturbed variants) robustness."""
    settings = settings or MetricsSettings()
    records = list(records)
    base = originals(records)
    return {
        "n_samples": len(base),
        "n_variants": len(records) - len(base),
        "n_refused": sum(bool(r.get("refused")) for r in base),
        "n_errors": sum(bool(r.get("error")) for r in base),
        "n_generated": sum(bool(r.get("generated")) for r in base),
        "metrics": {m: summarize([r.get("metrics", {}).get(m) for r in base]) for m in metrics},
        "efficiency": efficiency(base, settings),
        "calibration": calibration(base, settings.calibration_bins),
        "robustness": robustness(records, metrics),
    }


def efficiency(records: Sequence[dict[str, Any]], settings: MetricsSettings) -> dict[str, Any]:
    """Latency (prefill and decode apart), tokens and cost per question, as mean / p50 / p95."""
    out = {}
    for k in EFFICIENCY:
        vals = [_efficiency_value(r.get("efficiency") or {}, k, settings) for r in records]
        vals = [v for v in vals if v is not None]
        if vals:
            out[k] = {
                "mean": round(sum(vals) / len(vals), 4 if k == "cost_per_question" else 1),
                "p50": percentile(vals, 50),
                "p95": percentile(vals, 95),
                "n": len(vals),
            }
    return out


def _efficiency_value(eff: dict[str, Any], key: str, settings: MetricsSettings) -> float | None:
    if key != "cost_per_question":
        return eff.get(key)
    if eff.get("prompt_tokens") is None:
        return None
    return (
        eff["prompt_tokens"] * settings.prompt_token_cost
        + eff.get("completion_tokens", 0) * settings.completion_token_cost
    ) / 1000


def calibration(records: Sequence[dict[str, Any]], bins: int) -> dict[str, Any]:
    """Reliability of the support probability against a faithfulness label (rows with ``label``)
    and against answerability (does a confident answer mean the documents hold one?)."""
    out: dict[str, Any] = {}
    pairs = {
        "support": [
            (r["support_probability"], r["label"])
            for r in records
            if r.get("support_probability") is not None and r.get("label") is not None
        ],
        "refusal": [
            (r["support_probability"], r["answerable"])
            for r in records
            if r.get("support_probability") is not None
            and r.get("answerable") is not None
            and r.get("generated")
        ],
    }
    for name, items in pairs.items():
        if not items:
            continue
        probs, outcomes = [p for p, _ in items], [bool(y) for _, y in items]
        ece = expected_calibration_error(probs, outcomes, bins)
        out[name] = {
            "n": len(items),
            "ece": None if ece is None else round(ece, 4),
            "bins": [b.as_dict() for b in reliability(probs, outcomes, bins)],
        }
    return out
