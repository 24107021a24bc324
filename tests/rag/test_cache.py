"""The semantic answer cache with the real embedder, on the hand-made pairs of
tests/data/cache_pairs.jsonl (paraphrases and questions that change one detail)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.cache import AnswerCache, CacheScope, normalise_question
from rag.protocols import Embedder

PAIRS = [json.loads(line) for line in (Path(__file__).parents[1] / "data" / "cache_pairs.jsonl").open()]
SCOPE = CacheScope(index_version=3, filters="", top_k=4, generation="greedy")
THRESHOLD = 0.9  # configs/default.yaml cache.min_similarity, chosen by bench/cache_threshold.py


@pytest.fixture
def cache(embedder: Embedder) -> AnswerCache[str]:
    return AnswerCache(embedder, max_entries=100, min_similarity=THRESHOLD)


@pytest.mark.parametrize("pair", [p for p in PAIRS if not p["same"]], ids=lambda p: p["b"][:40])
def test_a_question_that_changes_one_detail_never_hits(cache: AnswerCache[str], pair: dict) -> None:
    cache.put(pair["a"], SCOPE, "answer to a")
    assert cache.get(pair["b"], SCOPE) is None


def test_reworded_paraphrases_hit(cache: AnswerCache[str]) -> None:
    hits = []
    for pair in (p for p in PAIRS if p["same"]):
        cache.put(pair["a"], SCOPE, pair["a"])
        hit = cache.get(pair["b"], SCOPE)
        hits.append(hit is not None and hit.value == pair["a"])
    # bench/cache_threshold.py: 3 of the 16 paraphrases use the same content words, and those hit.
    assert sum(hits) >= 3
    tty = cache.get("which GID must the tty group have, on systemd systems", SCOPE)
    assert tty is not None and tty.kind == "similar" and tty.similarity >= THRESHOLD


def test_an_exact_repeat_hits_whatever_the_spelling(cache: AnswerCache[str]) -> None:
    cache.put("Which port does the relay use?", SCOPE, "7341")
    hit = cache.get("  which PORT does the relay   use ", SCOPE)
    assert hit is not None and (hit.kind, hit.value) == ("exact", "7341")
    assert normalise_question("Which port?!") == "which port"


@pytest.mark.parametrize(
    "other",
    [
        CacheScope(index_version=4, filters="", top_k=4, generation="greedy"),  # documents changed
        CacheScope(index_version=3, collection="b", filters="", top_k=4, generation="greedy"),
        CacheScope(index_version=3, filters='[{"team": "ops"}]', top_k=4, generation="greedy"),
        CacheScope(index_version=3, filters="", top_k=8, generation="greedy"),
        CacheScope(index_version=3, filters="", top_k=4, generation="t=0.7"),
    ],
)
def test_an_answer_never_crosses_its_scope(cache: AnswerCache[str], other: CacheScope) -> None:
    cache.put("Which port does the relay use?", SCOPE, "7341")
    assert cache.get("Which port does the relay use?", other) is None


def test_the_cache_is_bounded_and_counts(embedder: Embedder) -> None:
    cache: AnswerCache[str] = AnswerCache(embedder, max_entries=2, min_similarity=THRESHOLD)
    for q in ("first question about zephyr", "second question about zephyr", "third question about zephyr"):
        cache.put(q, SCOPE, q, cost_s=2.0)
    assert len(cache) == 2
    assert cache.get("first question about zephyr", SCOPE) is None  # the least recently used went
    assert cache.get("third question about zephyr", SCOPE) is not None
    assert cache.stats.exact_hits == 1 and cache.stats.misses == 1 and cache.stats.saved_s == 2.0
    assert cache.stats.hit_ratio == 0.5
