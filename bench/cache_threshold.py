"""Choose cache.min_similarity: which hand-made pairs the semantic answer cache treats as the same
question, for each threshold, with and without the content-word guard (rag/cache.py).

    .venv/bin/python bench/cache_threshold.py [--pairs tests/data/cache_pairs.jsonl]

A pair marked `same` is a paraphrase (a hit is wanted); the others change one detail (a hit would
serve a wrong answer). Prints, per threshold, hits on paraphrases and false hits on different
questions, for the cosine alone and for the cosine plus the guard.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rag.cache import asks_about
from rag.config import Settings
from rag.embedding import make_embedder

THRESHOLDS = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=Path("tests/data/cache_pairs.jsonl"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.pairs.read_text().splitlines() if line.strip()]
    embedder = make_embedder(Settings().embedding)
    for row in rows:
        row["cos"] = float(embedder.embed_query(row["a"]) @ embedder.embed_query(row["b"]))
        row["guard"] = asks_about(row["a"]) == asks_about(row["b"])
    same = [r for r in rows if r["same"]]
    diff = [r for r in rows if not r["same"]]
    print(f"{len(same)} paraphrase pairs, {len(diff)} different-question pairs ({args.pairs})")
    print("| threshold | cosine only: paraphrase hits | false hits | + guard: paraphrase hits | false hits |")
    print("|---|---|---|---|---|")
    for t in THRESHOLDS:
        cos_same = sum(r["cos"] >= t for r in same)
        cos_diff = sum(r["cos"] >= t for r in diff)
        g_same = sum(r["cos"] >= t and r["guard"] for r in same)
        g_diff = sum(r["cos"] >= t and r["guard"] for r in diff)
        n, m = len(same), len(diff)
        print(f"| {t} | {cos_same}/{n} | {cos_diff}/{m} | {g_same}/{n} | {g_diff}/{m} |")


if __name__ == "__main__":
    main()
