"""Fusion alternatives tried before choosing convex / dense_weight 0.5 (issue 12; docs/retrieval.md).

    .venv/bin/python bench/fusion_variants.py [--seeds 13,14] [--pool 20]

Quality only (no timings): for each HaluEval question of ``bench/retrieval.py``'s sets (the same
cached corpora and indexes; run that script once first), it gathers the hybrid retriever's
candidates with both exact scores, then ranks them offline in several ways and prints R@1,
MRR@10 and R@10 per variant:

* convex fusion under four normalisations (min-max, z-score, max, distribution-based "mean
  +- 3 sd" as in Qdrant's DBSF) and dense weights 0.3-0.7;
* a weighted geometric mean of the min-max scores;
* query-adaptive weights from each list's top-1 margin;
* BM25 with adjacent-word phrases added to the query (FTS5 phrase queries);
* character-trigram BM25 (FTS5's trigram tokenizer) as a third fused signal;
* pseudo-relevance feedback: the query vector moved towards the best fused hit, then re-fused.

None of them beat plain min-max convex at 0.5 on seed 13 by more than noise; that is why the
default is the simple one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Run as `python bench/fusion_variants.py`: the repository first, and not bench/ itself, whose
# ingest.py would otherwise shadow the ingest package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import bench.retrieval as br  # noqa: E402
from rag.components import build_components, build_embedder  # noqa: E402
from rag.config import load_settings  # noqa: E402
from rag.index import keyword, layout  # noqa: E402
from rag.retrieval.fusion import min_max  # noqa: E402
from rag.retrieval.hybrid import HybridRetriever  # noqa: E402

Scores = dict[int, float]


@dataclass
class Row:
    relevant: frozenset[int]
    question: str
    vector: np.ndarray
    dense: Scores  # cosine of every candidate
    keyword: Scores  # BM25 of every candidate
    vectors: dict[int, np.ndarray]


def collect(seed: int, pool: int) -> tuple[list[Row], sqlite3.Connection]:
    """Candidates of the hybrid retriever (``pool`` per method) with both scores, per question."""
    args = argparse.Namespace(passages=3000, questions=500, rebuild=False)
    settings = load_settings()
    embedder = build_embedder(settings)
    bench = br.halueval_set(seed, args, embedder, settings)
    variant = load_settings(index_dir=str(bench.index_dir), **{"retrieval.candidates": pool})
    components = build_components(variant, embedder=embedder)
    retriever = HybridRetriever(variant, embedder, components.store)
    snapshot = components.store.snapshot()
    rows = []
    for q in bench.questions:
        vector = embedder.embed_query(q.text)
        # Every candidate of both methods with both scores: the retriever's own steps, before the
        # cut to top_k (private, but this is a benchmark of exactly that step).
        candidates = retriever._candidates(snapshot, q.text, vector, pool, None, "hybrid")
        hits = retriever._score(snapshot, q.text, vector, candidates, True, "dense")
        ids = [int(h.chunk.id or 0) for h in hits]
        rows.append(
            Row(
                relevant=q.relevant,
                question=q.text,
                vector=vector,
                dense={i: float(h.dense_score or 0.0) for i, h in zip(ids, hits, strict=True)},
                keyword={i: float(h.keyword_score or 0.0) for i, h in zip(ids, hits, strict=True)},
                vectors=dict(zip(ids, snapshot.vectors(ids), strict=True)),
            )
        )
    conn = sqlite3.connect(layout.current_version_dir(bench.index_dir) / layout.STORE)
    return rows, conn


def metrics(rankings: list[list[int]], rows: list[Row]) -> str:
    r1 = mrr = r10 = 0.0
    for ranked, row in zip(rankings, rows, strict=True):
        for i, cid in enumerate(ranked[:10]):
            if cid in row.relevant:
                r1 += i == 0
                mrr += 1 / (i + 1)
                r10 += 1
                break
    n = len(rows)
    return f"R@1 {r1 / n:.3f}  MRR@10 {mrr / n:.4f}  R@10 {r10 / n:.3f}"


def ranked(scores: Scores) -> list[int]:
    return sorted(scores, key=lambda c: (-scores[c], c))


def z_score(s: Scores) -> Scores:
    a = np.array(list(s.values()))
    sd = float(a.std()) or 1.0
    return {c: (v - float(a.mean())) / sd for c, v in s.items()}


def dbsf(s: Scores) -> Scores:
    a = np.array(list(s.values()))
    low, high = float(a.mean() - 3 * a.std()), float(a.mean() + 3 * a.std())
    return {c: (v - low) / ((high - low) or 1.0) for c, v in s.items()}


def by_max(s: Scores) -> Scores:
    top = max(s.values()) or 1.0
    return {c: v / top for c, v in s.items()}


def convex(dense: Scores, kw: Scores, w: float, norm: Callable[[Scores], Scores] = min_max) -> list[int]:
    d, k = norm(dense), norm(kw)
    return ranked({c: w * d[c] + (1 - w) * k[c] for c in dense})


def margin(s: Scores) -> float:
    top = sorted(s.values(), reverse=True)
    if len(top) < 2 or top[0] <= 0:
        return 0.0
    return (top[0] - top[1]) / ((top[0] - top[-1]) or 1.0)


def adaptive(row: Row, base: float, strength: float) -> list[int]:
    gd, gk = margin(row.dense), margin(row.keyword)
    w = base if gd + gk == 0 else (1 - strength) * base + strength * gd / (gd + gk)
    return convex(row.dense, row.keyword, w)


def geometric(row: Row, a: float) -> list[int]:
    d, k = min_max(row.dense), min_max(row.keyword)
    return ranked({c: (d[c] + 1e-3) ** a * (k[c] + 1e-3) ** (1 - a) for c in d})


def fts_scores(conn: sqlite3.Connection, table: str, expression: str, ids: list[int]) -> Scores:
    found = dict(
        conn.execute(
            f"SELECT rowid, -bm25({table}) FROM {table} WHERE {table} MATCH ? "
            "AND rowid IN (SELECT value FROM json_each(?))",
            (expression, json.dumps(ids)),
        ).fetchall()
    )
    return {c: float(found.get(c, 0.0)) for c in ids}


def phrases(row: Row, conn: sqlite3.Connection, w: float) -> list[int]:
    seq = keyword.analyze(row.question)
    terms = [f'"{t}"' for t in dict.fromkeys(seq)]
    pairs = [f'"{a} {b}"' for a, b in dict.fromkeys(itertools.pairwise(seq))]
    kw = fts_scores(conn, keyword.TABLE, " OR ".join(terms + pairs), list(row.dense))
    return convex(row.dense, kw, w)


def trigram_table(conn: sqlite3.Connection) -> sqlite3.Connection:
    memory = sqlite3.connect(":memory:")
    memory.execute("CREATE VIRTUAL TABLE tri USING fts5(t, tokenize = 'trigram')")
    memory.executemany(
        "INSERT INTO tri (rowid, t) VALUES (?, ?)", conn.execute("SELECT id, text FROM chunks")
    )
    return memory


def trigram(row: Row, tri: sqlite3.Connection, wd: float, wt: float) -> list[int]:
    words = [w for w in re.findall(r"[^\W_]+", row.question.lower()) if w not in keyword.STOPWORDS]
    grams = list(dict.fromkeys(w[i : i + 3] for w in words if len(w) >= 3 for i in range(len(w) - 2)))
    t = fts_scores(tri, "tri", " OR ".join(f'"{g}"' for g in grams), list(row.dense)) if grams else {}
    d, k, tn = min_max(row.dense), min_max(row.keyword), min_max(t) if t else {}
    return ranked({c: wd * d[c] + (1 - wd - wt) * k[c] + wt * tn.get(c, 0.0) for c in d})


def feedback(row: Row, w: float, beta: float) -> list[int]:
    first = convex(row.dense, row.keyword, w)[0]
    moved = row.vector + beta * row.vectors[first]
    moved = moved / np.linalg.norm(moved)
    dense = {c: float(v @ moved) for c, v in row.vectors.items()}
    return convex(dense, row.keyword, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="13,14", help="HaluEval seeds (default: 13,14)")
    parser.add_argument("--pool", type=int, default=20, help="candidates per method (default: 20)")
    args = parser.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        rows, conn = collect(seed, args.pool)
        tri = trigram_table(conn)
        print(f"\n## HaluEval seed {seed}, {len(rows)} questions, {args.pool} candidates per method")
        for name, norm in (("min-max", min_max), ("z-score", z_score), ("max", by_max), ("dbsf", dbsf)):
            for w in (0.3, 0.4, 0.5, 0.6, 0.7):
                fused = [convex(r.dense, r.keyword, w, norm) for r in rows]
                print(f"convex {name:7} w {w}: {metrics(fused, rows)}")
        for a in (0.4, 0.5, 0.6):
            print(f"geometric a {a}: {metrics([geometric(r, a) for r in rows], rows)}")
        for strength in (0.25, 0.5, 1.0):
            fused = [adaptive(r, 0.5, strength) for r in rows]
            print(f"adaptive 0.5 strength {strength}: {metrics(fused, rows)}")
        for w in (0.4, 0.5, 0.6):
            print(f"phrases w {w}: {metrics([phrases(r, conn, w) for r in rows], rows)}")
        for wt in (0.1, 0.2, 0.3):
            print(f"trigram third signal 0.4/{wt}: {metrics([trigram(r, tri, 0.4, wt) for r in rows], rows)}")
        for beta in (0.3, 0.5, 1.0):
            print(f"feedback beta {beta}: {metrics([feedback(r, 0.5, beta) for r in rows], rows)}")


if __name__ == "__main__":
    main()
