"""Streaming retrieval metrics: hand-computed cases, a dense reference under ties, chunk-size invariance."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.metrics import (
    bidirectional_retrieval_metrics,
    invert_positives,
    positive_ranks,
    retrieval_metrics,
    streaming_topk,
)

GALLERY = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
QUERIES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
# Scores: q0 [1, 0, 1, -1] -> order 0, 2, 1, 3 (tie 0/2: lower index first)
#         q1 [0, 1, 1, 0]  -> order 1, 2, 0, 3
#         q2 [-1, -1, -2, 1] -> order 3, 0, 1, 2
POSITIVES = [[2], [0, 3], [3]]  # ranks: q0 -> 2; q1 -> 3 and 4; q2 -> 1


def test_hand_computed_metrics() -> None:
    m = retrieval_metrics(QUERIES, GALLERY, POSITIVES, ks=(1, 2, 3), chunk_size=2)
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx(1.0)
    # AP@10: q0 1/2; q1 (1/3 + 2/4) / 2 = 0.41666..; q2 1.
    assert m["mAP@10"] == pytest.approx((0.5 + 0.4166666667 + 1.0) / 3)
    assert m["median_rank"] == 2.0
    assert m["mean_rank"] == 2.0


def test_hand_computed_ranks_and_topk_with_ties() -> None:
    assert positive_ranks(QUERIES, GALLERY, {0: [2], 1: [3, 0], 2: [3]}) == [[2], [4, 3], [1]]
    scores, indices = streaming_topk(QUERIES, GALLERY, 2, chunk_size=1)
    assert indices.tolist() == [[0, 2], [1, 2], [3, 0]]
    assert scores.tolist() == [[1.0, 1.0], [1.0, 1.0], [1.0, -1.0]]


def test_map_cutoff_and_even_median() -> None:
    # One query, twelve gallery items scored 12, 11, ..., 1: item i has rank i + 1.
    gallery = torch.arange(12, 0, -1, dtype=torch.float32)[:, None]
    queries = torch.ones(2, 1)
    m = retrieval_metrics(queries, gallery, [[9], [10]], ks=(10,))
    assert m["mAP@10"] == pytest.approx((0.1 + 0.0) / 2)  # rank 10 -> 1/10, rank 11 -> 0
    assert m["recall@10"] == 0.5
    assert m["median_rank"] == 10.0  # median of 10 and 11 is 10.5, floored as CLAP does
    assert m["mean_rank"] == 10.5


def test_several_positives_ap_sorts_ranks() -> None:
    gallery = torch.arange(12, 0, -1, dtype=torch.float32)[:, None]
    # positives at ranks 5, 1 and 11 (given unsorted): (1/1 + 2/5 + 0) / 3
    m = retrieval_metrics(torch.ones(1, 1), gallery, [[4, 0, 10]])
    assert m["mAP@10"] == pytest.approx((1.0 + 0.4) / 3)
    assert m["recall@1"] == 1.0


def test_bidirectional_uses_inverted_positives() -> None:
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [1.0, 0.95]])
    pairs = [[0, 1], [2, 3]]
    assert invert_positives(pairs, 4) == [[0], [0], [1], [1]]
    m = bidirectional_retrieval_metrics(images, texts, pairs, ks=(1,))
    assert m["image_to_text/recall@1"] == 1.0  # image 0 -> text 0 (1.0) ; image 1 -> text 2 (1.0)
    # text 3 scores 1.0 vs image 0 and 0.95 vs image 1, so it ranks its image second.
    assert m["text_to_image/recall@1"] == 0.75
    assert set(m) == {
        f"{d}/{k}"
        for d in ("image_to_text", "text_to_image")
        for k in ("recall@1", "mAP@10", "median_rank", "mean_rank")
    }


def _dense_ranks(q: torch.Tensor, g: torch.Tensor) -> list[list[int]]:
    """Reference: full score matrix, each row sorted by (score desc, index asc) in plain Python."""
    scores = (q.double() @ g.double().T).tolist()
    orders = [sorted(range(len(row)), key=lambda j, row=row: (-row[j], j)) for row in scores]
    return orders


@st.composite
def _problems(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, list[list[int]], int, int]:
    n, m, d = draw(st.integers(1, 10)), draw(st.integers(1, 12)), draw(st.integers(1, 3))
    # Small integer entries make many exact ties and exact float dot products.
    values = st.integers(-2, 2)
    q = torch.tensor(
        draw(st.lists(st.lists(values, min_size=d, max_size=d), min_size=n, max_size=n)), dtype=torch.float32
    )
    g = torch.tensor(
        draw(st.lists(st.lists(values, min_size=d, max_size=d), min_size=m, max_size=m)), dtype=torch.float32
    )
    positives = [
        draw(st.lists(st.integers(0, m - 1), min_size=1, max_size=min(m, 4), unique=True)) for _ in range(n)
    ]
    k = draw(st.integers(1, m))
    chunk = draw(st.integers(1, n + 2))
    return q, g, positives, k, chunk


@settings(max_examples=60, deadline=None)
@given(_problems())
def test_streaming_equals_dense_reference_with_ties(problem) -> None:
    q, g, positives, k, chunk = problem
    orders = _dense_ranks(q, g)
    _, indices = streaming_topk(q, g, k, chunk_size=chunk)
    assert indices.tolist() == [order[:k] for order in orders]
    expected_ranks = [[order.index(p) + 1 for p in pos] for order, pos in zip(orders, positives, strict=True)]
    assert positive_ranks(q, g, positives, chunk_size=chunk) == expected_ranks
    m = retrieval_metrics(q, g, positives, ks=(1, k), chunk_size=chunk)
    first = [min(r) for r in expected_ranks]
    assert m["recall@1"] == pytest.approx(sum(f <= 1 for f in first) / len(first))
    assert m[f"recall@{k}"] == pytest.approx(sum(f <= k for f in first) / len(first))
    aps = [sum((i + 1) / r for i, r in enumerate(sorted(rs)) if r <= 10) / len(rs) for rs in expected_ranks]
    assert m["mAP@10"] == pytest.approx(sum(aps) / len(aps))
    assert m["mean_rank"] == pytest.approx(sum(first) / len(first))


def test_chunk_size_invariance_on_random_data() -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.nn.functional.normalize(torch.randn(300, 16, generator=gen), dim=1)
    q = torch.nn.functional.normalize(g[:200] + 0.8 * torch.randn(200, 16, generator=gen), dim=1)
    positives = [[i, (i + 7) % 300] for i in range(200)]
    results = [retrieval_metrics(q, g, positives, chunk_size=c) for c in (5, 64, 1000)]
    tops = [streaming_topk(q, g, 10, chunk_size=c)[1] for c in (5, 64, 1000)]
    for r, t in zip(results[1:], tops[1:], strict=True):
        assert r == results[0]
        assert torch.equal(t, tops[0])
    assert 0.0 < results[0]["recall@1"] < 1.0


def test_nan_embeddings_name_the_rows() -> None:
    q = QUERIES.clone()
    q[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"queries .*rows 1\b"):
        retrieval_metrics(q, GALLERY, POSITIVES)


@pytest.mark.parametrize(
    ("positives", "message"),
    [
        ([[2], [0]], "2 entries but there are 3 queries"),
        ([[2], [], [3]], "query 1 has no positives"),
        ([[2], [0, 9], [3]], "query 1 lists positive 9"),
        ([[2], [0, 0], [3]], "twice"),
        ({0: [2], 1: [0]}, "missing queries \\[2\\]"),
    ],
)
def test_bad_positives_are_explained(positives, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(QUERIES, GALLERY, positives)


def test_dimension_mismatch_is_explained() -> None:
    with pytest.raises(ValueError, match="dimension 3 but gallery has 2"):
        retrieval_metrics(torch.ones(2, 3), GALLERY, [[0], [1]])


@pytest.mark.parametrize("count_block_elements", [1, 5, 1 << 18])
@pytest.mark.parametrize("kept_tile_bytes", [0, 64 << 20])
@pytest.mark.parametrize("tile_elements", [1, 3, 8])
def test_ranks_exact_across_cache_tiles(
    monkeypatch, tile_elements: int, kept_tile_bytes: int, count_block_elements: int
) -> None:
    """Tiny score tiles put tied items before, inside and after the positive's tile: ranks still match, whether
    the tiles holding positives are kept between passes or computed again, and whether a tile's rows are
    counted one at a time, in blocks with a shorter last one, or all at once."""
    import tasks.metrics.retrieval as retrieval

    monkeypatch.setattr(retrieval, "_TILE_ELEMENTS", tile_elements)
    monkeypatch.setattr(retrieval, "_KEPT_TILE_BYTES", kept_tile_bytes)
    monkeypatch.setattr(retrieval, "_COUNT_BLOCK_ELEMENTS", count_block_elements)
    gen = torch.Generator().manual_seed(1)
    q = torch.randint(-2, 3, (9, 2), generator=gen).float()
    g = torch.randint(-2, 3, (23, 2), generator=gen).float()  # 23 items over 25 values: many exact ties
    positives = [[(3 * i) % 23, (3 * i + 11) % 23] for i in range(9)]
    orders = _dense_ranks(q, g)
    expected = [[order.index(p) + 1 for p in pos] for order, pos in zip(orders, positives, strict=True)]
    for chunk in (1, 4, 9):
        assert positive_ranks(q, g, positives, chunk_size=chunk) == expected


def test_float_ranks_match_dense_matrix_ranks() -> None:
    """On float embeddings the ranks equal those read off the full score matrix with the same tie rule."""
    from tasks.metrics import ranks_lower_index_wins

    gen = torch.Generator().manual_seed(2)
    g = torch.nn.functional.normalize(torch.randn(700, 32, generator=gen), dim=1)
    q = torch.nn.functional.normalize(g[:300] + torch.randn(300, 32, generator=gen), dim=1)
    positives = [[i] for i in range(300)]
    dense = ranks_lower_index_wins(q @ g.T, torch.arange(300)).tolist()
    assert [r for (r,) in positive_ranks(q, g, positives, chunk_size=64)] == dense
