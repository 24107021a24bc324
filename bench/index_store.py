"""What one change costs in a big segmented index: the store end to end, not the FAISS layer alone.

Usage:
    .venv/bin/python bench/index_store.py [--sizes 10000,100000,1000000] [--commits 5]
                                          [--queries 300] [--out bench/results/index_store.md]

For each size it builds a real index (IndexWriter: SQLite rows with keyword terms, one segment of
the kind the auto rule picks) from synthetic clustered vectors (bench/index_scale.py's Mixture,
calibrated to real MiniLM vectors when they are cached) and synthetic chunk text, 20 chunks a
document; then measures, each through the public writer and reader:

* build: wall time and disk of the initial bulk commit;
* commit one new document (20 chunks) into it, ``--commits`` times: wall time from opening the
  writer to the end of ``commit()``, and the disk it adds (the new segment's files, and the whole
  index directory before/after, SQLite WAL included);
* delete one document: the same two numbers;
* search through ``IndexReader.search`` (SQLite rows fetched too) top-10, one query at a time:
  p50/p95 over ``--queries`` queries, with the small segments those commits left beside the big
  one, and recall@10 against exact search over the live vectors; also with a 1 % metadata filter;
* reader open time (what the server pays after every commit);
* compaction (``IndexWriter.compact``): wall time, and search p95 after it.

Every row is measured in the same run on the same machine; ratios are against the initial build.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.index_scale import CACHE, DIM, SEED, Mixture, calibrate, machine  # noqa: E402
from rag.index.filters import SearchFilter  # noqa: E402
from rag.index.reader import IndexReader  # noqa: E402
from rag.index.writer import IndexWriter  # noqa: E402
from rag.types import Chunk, Document  # noqa: E402

CHUNKS_PER_DOC = 20
TEAMS = 100  # metadata values: a filter on one team allows 1 % of the documents
WORDS = [f"w{i}" for i in range(2000)]  # chunk text vocabulary (keyword terms are built for it)
WRITER = {"embedding_model": "bench-synthetic", "dimension": DIM, "chunk_tokens": 200, "overlap_tokens": 32}


def _doc(number: int, rng: np.random.Generator) -> tuple[Document, list[Chunk]]:
    doc_id = f"/bench/doc{number:07d}.md"
    texts = [" ".join(rng.choice(WORDS, 30)) for _ in range(CHUNKS_PER_DOC)]
    text = "\n\n".join(texts)
    doc = Document(id=doc_id, source=doc_id, text=text, pages=[], metadata={"team": f"t{number % TEAMS}"})
    chunks, start = [], 0
    for t in texts:
        chunks.append(
            Chunk(document_id=doc_id, source=doc_id, page=None, start=start, end=start + len(t), text=t)
        )
        start += len(t) + 2
    return doc, chunks


def _disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _segment_mb(index_dir: Path, number: int) -> float:
    return sum(p.stat().st_size for p in (index_dir / "segments").glob(f"seg-{number:06d}.*")) / 1e6


def build(index_dir: Path, vectors: np.ndarray) -> tuple[float, float]:
    """The bulk commit of len(vectors) chunks; (seconds, disk MB)."""
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    with IndexWriter(index_dir, **WRITER) as writer:
        for n in range(len(vectors) // CHUNKS_PER_DOC):
            doc, chunks = _doc(n, rng)
            writer.upsert(doc, chunks, vectors[n * CHUNKS_PER_DOC : (n + 1) * CHUNKS_PER_DOC])
        writer.commit()
    return time.perf_counter() - started, _disk_mb(index_dir)


def commit_one(index_dir: Path, number: int, vectors: np.ndarray) -> dict[str, float]:
    rng = np.random.default_rng(number)
    before = _disk_mb(index_dir)
    started = time.perf_counter()
    with IndexWriter(index_dir, **WRITER) as writer:
        doc, chunks = _doc(number, rng)
        writer.upsert(doc, chunks, vectors)
        manifest = writer.commit()
    seconds = time.perf_counter() - started
    return {
        "s": seconds,
        "segment_mb": _segment_mb(index_dir, manifest.version),
        "disk_mb": _disk_mb(index_dir) - before,
    }


def delete_one(index_dir: Path, number: int) -> dict[str, float]:
    before = _disk_mb(index_dir)
    started = time.perf_counter()
    with IndexWriter.for_existing(index_dir) as writer:
        assert writer.delete(f"/bench/doc{number:07d}.md")
        writer.commit()
    return {"s": time.perf_counter() - started, "disk_mb": _disk_mb(index_dir) - before}


def search_stats(
    reader: IndexReader,
    live: np.ndarray,
    live_ids: np.ndarray,
    queries: np.ndarray,
    filters: SearchFilter | None,
) -> dict[str, float]:
    """p50/p95 ms of reader.search top-10, and recall@10 against exact search over ``live``."""
    allowed = None
    if filters is not None:
        allowed = np.isin(live_ids, reader.allowed_ids(filters))
    times, recalls = [], []
    for q in queries:
        started = time.perf_counter()
        hits = reader.search(q, 10, filters)
        times.append((time.perf_counter() - started) * 1000)
        scores = live @ q
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        truth = set(live_ids[np.argsort(-scores)[:10]].tolist())
        recalls.append(len(truth & {h.chunk.id for h in hits}) / len(truth))
    return {
        "p50": statistics.median(times),
        "p95": float(np.percentile(times, 95)),
        "recall": float(np.mean(recalls)),
    }


def live_vectors(reader: IndexReader) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(sorted(reader.chunk_ids()), dtype=np.int64)
    return reader.vectors(ids.tolist()), ids


def measure(
    size: int, mixture: Mixture, commits: int, n_queries: int, folder: Path, compact_up_to: int
) -> dict[str, object]:
    x, _ = mixture.sample(size + CHUNKS_PER_DOC * commits + n_queries, seed=SEED)
    base, extra, queries = x[:size], x[size : size + CHUNKS_PER_DOC * commits], x[-n_queries:]
    index_dir = folder / f"index-{size}"
    row: dict[str, object] = {"size": size}
    row["build_s"], row["build_mb"] = build(index_dir, base)
    row["kind"] = IndexReader.open(index_dir).manifest.segments[0].kind
    docs = size // CHUNKS_PER_DOC
    adds = [
        commit_one(index_dir, docs + i, extra[i * CHUNKS_PER_DOC : (i + 1) * CHUNKS_PER_DOC])
        for i in range(commits)
    ]
    deletes = [delete_one(index_dir, i * 7) for i in range(commits)]
    row["commit_s"] = statistics.median(a["s"] for a in adds)
    row["commit_segment_mb"] = statistics.median(a["segment_mb"] for a in adds)
    row["commit_disk_mb"] = statistics.median(a["disk_mb"] for a in adds)
    row["delete_s"] = statistics.median(d["s"] for d in deletes)
    row["delete_disk_mb"] = statistics.median(d["disk_mb"] for d in deletes)
    started = time.perf_counter()
    reader = IndexReader.open(index_dir)
    row["open_ms"] = (time.perf_counter() - started) * 1000
    row["segments"] = len(reader.manifest.segments)
    live, live_ids = live_vectors(reader)
    team = SearchFilter(metadata={"team": "t3"})
    row["search"] = search_stats(reader, live, live_ids, queries, None)
    row["search_1pct"] = search_stats(reader, live, live_ids, queries, team)
    reader.close()
    if size <= compact_up_to:
        started = time.perf_counter()
        with IndexWriter.for_existing(index_dir) as writer:
            writer.compact()
        row["compact_s"] = time.perf_counter() - started
        reader = IndexReader.open(index_dir)
        row["search_compacted"] = search_stats(reader, live, live_ids, queries, None)
        reader.check_consistent()
        reader.close()
    shutil.rmtree(index_dir)
    return row


def table(rows: list[dict[str, object]]) -> str:
    head = (
        "| vectors | large segment | build s | disk MB | commit 1 doc s | its segment MB | dir grew MB | "
        "delete 1 doc s | dir grew MB | reader open ms | search p50 / p95 ms (segments) | recall@10 | "
        "1 % filter p95 ms / recall | compact s | after: p95 ms / recall |\n" + "|---" * 15 + "|\n"
    )
    lines = []
    for r in rows:
        s, f = r["search"], r["search_1pct"]
        c = r.get("search_compacted")
        cells = [
            f"{r['size']:,}",
            str(r["kind"]),
            f"{r['build_s']:.1f}",
            f"{r['build_mb']:.0f}",
            f"{r['commit_s']:.3f}",
            f"{r['commit_segment_mb']:.3f}",
            f"{r['commit_disk_mb']:.3f}",
            f"{r['delete_s']:.3f}",
            f"{r['delete_disk_mb']:.3f}",
            f"{r['open_ms']:.0f}",
            f"{s['p50']:.1f} / {s['p95']:.1f} ({r['segments']})",
            f"{s['recall']:.3f}",
            f"{f['p95']:.1f} / {f['recall']:.3f}",
            f"{r['compact_s']:.1f}" if c else "= build (not run)",
            f"{c['p95']:.1f} / {c['recall']:.3f}" if c else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def _mixture() -> Mixture:
    """Calibrated to the real MiniLM vectors bench/index_scale.py cached, when there are some
    (embedding them here would take many minutes); the default mixture otherwise (said so in the
    report's header, which prints the mixture)."""
    cached = sorted(CACHE.glob("minilm-*.npy"), key=lambda p: p.stat().st_mtime)
    if not cached:
        return Mixture()
    return calibrate(np.load(cached[-1])[:20_000])[0]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--commits", type=int, default=5, help="documents committed, then deleted, one at a time"
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--compact-up-to",
        type=int,
        default=100_000,
        help="compact only indexes up to this size (a full compaction rebuilds the large segment: "
        "it costs what the build costs)",
    )
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    mixture = _mixture()
    rows = []
    with tempfile.TemporaryDirectory(prefix="index-store-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append(measure(size, mixture, args.commits, args.queries, Path(tmp), args.compact_up_to))
            print(table(rows[-1:]), flush=True)
    report = (
        f"# Segmented store: the cost of one change ({datetime.now(UTC):%Y-%m-%d})\n\n"
        f"`{shlex.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}` on {machine()}, "
        f"Python {platform.python_version()}. Synthetic clustered vectors ({mixture}), "
        f"{CHUNKS_PER_DOC} chunks a document.\n\n" + table(rows)
    )
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
