"""Properties of score fusion (rag/retrieval/fusion.py): convex on min-max normalised scores, and
reciprocal rank fusion. Both take the same candidates' dense cosine and BM25 (0.0 = no term)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rag.retrieval.fusion import convex, min_max, rrf

# Scores on a grid, so distinct scores stay distinct after normalisation (no rounding ties).
cosines = st.integers(-1000, 1000).map(lambda x: x / 1000)
bm25s = st.one_of(st.just(0.0), st.integers(1, 5000).map(lambda x: x / 100))
ids = st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True)
any_scores = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def candidates(draw: st.DrawFn) -> tuple[dict[int, float], dict[int, float]]:
    """The same chunk ids with a cosine and a BM25 each, as the hybrid retriever passes them."""
    chunk_ids = draw(ids)
    dense = {cid: draw(cosines) for cid in chunk_ids}
    keyword = {cid: draw(bm25s) for cid in chunk_ids}
    return dense, keyword


def ranking(scores: dict[int, float]) -> list[int]:
    return sorted(scores, key=lambda c: (-scores[c], c))


@given(candidates())
def test_convex_with_dense_weight_one_orders_like_dense(
    pair: tuple[dict[int, float], dict[int, float]],
) -> None:
    dense, keyword = pair
    assert ranking(convex(dense, keyword, 1.0)) == ranking(dense)


@given(candidates())
def test_convex_with_dense_weight_zero_orders_like_keyword(
    pair: tuple[dict[int, float], dict[int, float]],
) -> None:
    dense, keyword = pair
    assert ranking(convex(dense, keyword, 0.0)) == ranking(keyword)


@given(
    st.lists(st.integers(0, 100), min_size=1, max_size=20, unique=True).flatmap(
        lambda cids: st.tuples(
            st.fixed_dictionaries({c: any_scores for c in cids}),
            st.fixed_dictionaries({c: any_scores for c in cids}),
        )
    ),
    st.floats(0.0, 1.0),
)
def test_convex_scores_are_in_unit_interval(
    pair: tuple[dict[int, float], dict[int, float]], weight: float
) -> None:
    dense, keyword = pair
    fused = convex(dense, keyword, weight)
    assert set(fused) == set(dense)
    assert all(0.0 <= s <= 1.0 for s in fused.values()), fused


@given(candidates(), st.floats(0.0, 1.0))
def test_convex_best_in_both_is_best_fused(
    pair: tuple[dict[int, float], dict[int, float]], weight: float
) -> None:
    """A candidate first by cosine and by BM25 gets the highest fused score, the full 1.0
    (unless every cosine is the same non-positive value: then the dense part is 0 for all)."""
    dense, keyword = pair
    best = max(dense, key=lambda c: (dense[c], -c))
    keyword[best] = max(keyword.values()) + 1.0
    fused = convex(dense, keyword, weight)
    assert fused[best] == max(fused.values())
    dense_part = 0.0 if len(set(dense.values())) == 1 and dense[best] <= 0 else weight
    assert abs(fused[best] - (dense_part + 1.0 - weight)) < 1e-12


@given(st.lists(st.integers(), min_size=1, max_size=20, unique=True), any_scores)
def test_min_max_of_equal_scores_is_all_one_unless_none_scored(chunk_ids: list[int], value: float) -> None:
    """Equal positive scores: none is worse (1.0). All zero (no candidate shares a word with the
    query): the method found nothing and adds nothing to a fused score (0.0)."""
    expected = 1.0 if value > 0 else 0.0
    assert min_max(dict.fromkeys(chunk_ids, value)) == dict.fromkeys(chunk_ids, expected)


def test_a_query_no_chunk_shares_a_word_with_fuses_to_its_dense_part() -> None:
    fused = convex({1: 0.6, 2: 0.4}, {1: 0.0, 2: 0.0}, 0.7)
    assert fused == {1: 0.7, 2: 0.0}


@given(st.dictionaries(st.integers(), any_scores, min_size=2))
def test_min_max_maps_lowest_to_zero_and_highest_to_one(scores: dict[int, float]) -> None:
    normed = min_max(scores)
    assert set(normed) == set(scores) and all(0.0 <= v <= 1.0 for v in normed.values())
    if len(set(scores.values())) > 1:
        assert normed[min(scores, key=scores.__getitem__)] == 0.0
        assert normed[max(scores, key=scores.__getitem__)] == 1.0
        for a in scores:  # order kept (not strictly: rounding may merge near-equal scores)
            for b in scores:
                if scores[a] < scores[b]:
                    assert normed[a] <= normed[b]


def test_min_max_of_nothing_is_nothing() -> None:
    assert min_max({}) == {}


def test_rrf_is_the_sum_of_reciprocal_ranks() -> None:
    dense = {1: 0.9, 2: 0.8, 3: 0.7}
    keyword = {1: 0.0, 2: 5.0, 3: 7.0}  # chunk 1 shares no term: not ranked by keywords
    fused = rrf(dense, keyword, 60)
    assert fused[1] == 1 / 61
    assert fused[2] == 1 / 62 + 1 / 62
    assert fused[3] == 1 / 63 + 1 / 61


@given(candidates(), st.integers(1, 100), st.data())
def test_rrf_is_monotone_in_each_rank(
    pair: tuple[dict[int, float], dict[int, float]], k: int, data: st.DataObject
) -> None:
    """Raising one chunk's score in either list (its rank there improves, the others' do not)
    never lowers its fused score; moving it to the top of a list it did not lead raises it."""
    dense, keyword = pair
    cid = data.draw(st.sampled_from(sorted(dense)))
    before = rrf(dense, keyword, k)[cid]
    for which in ("dense", "keyword"):
        scores = dense if which == "dense" else keyword
        led = ranking({c: s for c, s in scores.items() if which == "dense" or s > 0.0})[:1] == [cid]
        raised = scores[cid] + data.draw(st.integers(0, 300).map(lambda x: x / 100))
        top = max([s for c, s in scores.items() if c != cid], default=0.0) + 1.0
        for new_score, strictly in ((raised, False), (top, not led)):
            moved = {**scores, cid: new_score}
            after = rrf(moved, keyword, k)[cid] if which == "dense" else rrf(dense, moved, k)[cid]
            assert after >= before
            if strictly:
                assert after > before


@given(candidates(), st.integers(1, 100))
def test_rrf_prefers_a_chunk_better_in_both_rankings(
    pair: tuple[dict[int, float], dict[int, float]], k: int
) -> None:
    dense, keyword = pair
    fused = rrf(dense, keyword, k)
    dense_rank = {c: r for r, c in enumerate(ranking(dense))}
    ranked = {c: s for c, s in keyword.items() if s > 0.0}
    keyword_rank = {c: r for r, c in enumerate(ranking(ranked))}
    for a in dense:
        for b in dense:
            better_dense = dense_rank[a] < dense_rank[b]
            better_keyword = a in keyword_rank and (
                b not in keyword_rank or keyword_rank[a] < keyword_rank[b]
            )
            if better_dense and better_keyword:
                assert fused[a] > fused[b]
            assert 0.0 < fused[a] <= 2.0 / (k + 1)
