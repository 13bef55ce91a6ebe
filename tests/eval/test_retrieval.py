"""Retrieval metrics against hand-computed cases, the tie rule, and chunked == whole."""
import math

import pytest
import torch

from distill.errors import DataError
from distill.eval.retrieval import metrics_from_ranks, ranks_by_embeddings, relevant_ranks, retrieval_metrics

L3, L5 = 1 / math.log2(3), 1 / math.log2(5)  # DCG gains at ranks 2 and 4

# q0: relevant doc 2 ranks 2nd (only 0.9 is higher); q1: relevant docs 1 (1st) and 0 (4th)
SCORES = torch.tensor([[0.9, 0.1, 0.5, 0.3],
                       [0.2, 0.8, 0.4, 0.6]])
RELEVANT = [[2], [1, 0]]


def test_ranks_hand_computed():
    assert relevant_ranks(SCORES, RELEVANT).tolist() == [[2, 0], [1, 4]]


def test_metrics_hand_computed():
    m = metrics_from_ranks(relevant_ranks(SCORES, RELEVANT), ks=(1, 2, 10))
    expected = {
        "recall@1": (0 + 1 / 2) / 2, "mrr@1": (0 + 1) / 2, "ndcg@1": (0 + 1 / 1) / 2,
        "recall@2": (1 + 1 / 2) / 2, "mrr@2": (1 / 2 + 1) / 2, "ndcg@2": (L3 / 1 + 1 / (1 + L3)) / 2,
        "recall@10": (1 + 1) / 2, "mrr@10": (1 / 2 + 1) / 2, "ndcg@10": (L3 / 1 + (1 + L5) / (1 + L3)) / 2,
    }
    assert m.keys() == expected.keys()
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


def test_mrr_is_zero_beyond_k_and_ideal_dcg_is_capped_at_k():
    # ranks 3 and 5 of 3 relevant documents, k = 2: nothing in the top 2
    m = metrics_from_ranks(torch.tensor([[3, 5, 7]]), ks=(2, 5))
    assert m["mrr@2"] == 0 and m["recall@2"] == 0 and m["ndcg@2"] == 0
    assert m["mrr@5"] == pytest.approx(1 / 3)
    assert m["recall@5"] == pytest.approx(2 / 3)
    # IDCG@5 with 3 relevant documents uses 3 gains, not 5
    ideal = 1 + L3 + 1 / math.log2(4)
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(6)) / ideal)


def test_ties_rank_relevant_documents_after_tied_non_relevant_ones():
    flat = torch.full((1, 3), 0.5)
    assert relevant_ranks(flat, [[1]]).tolist() == [[3]]
    assert relevant_ranks(flat, [[0]]).tolist() == [[3]]  # whatever its position in the collection
    # two tied relevant documents share the ranks after the one tied non-relevant document, in listed order
    assert relevant_ranks(flat, [[0, 2]]).tolist() == [[2, 3]]
    assert relevant_ranks(flat, [[2, 0]]).tolist() == [[2, 3]]
    # a strictly higher document still counts; a tie only with a relevant document costs nothing
    assert relevant_ranks(torch.tensor([[0.7, 0.5, 0.5, 0.1]]), [[1, 2]]).tolist() == [[2, 3]]


def test_a_constant_encoder_scores_nothing_and_identity_scores_everything():
    n = 20
    docs = torch.eye(n)
    relevant = [[i] for i in range(n)]
    constant = retrieval_metrics(torch.ones(n, n), torch.ones(n, n), relevant)
    assert constant["recall@10"] == 0 and constant["mrr@10"] == 0
    perfect = retrieval_metrics(docs, docs, relevant)
    assert all(v == 1.0 for v in perfect.values())


def test_chunked_equals_whole():
    torch.manual_seed(0)
    q, d = torch.randn(37, 8), torch.randn(300, 8)
    relevant = [list(torch.randperm(300)[:1 + i % 4].tolist()) for i in range(37)]
    whole = relevant_ranks(q @ d.T, relevant)
    one_row = ranks_by_embeddings(q, d, relevant, budget_bytes=1)  # one query per chunk, differing widths padded
    assert torch.equal(whole, one_row)
    assert metrics_from_ranks(whole) == retrieval_metrics(q, d, relevant, budget_bytes=5 * 300 * 5)


@pytest.mark.parametrize("relevant, message", [([[0], []], "no relevant document"), ([[0], [9]], "in \\[0, 4\\)"),
                                               ([[0], [1, 1]], "distinct"), ([[0]], "2 queries")])
def test_bad_relevance_lists_are_refused(relevant, message):
    with pytest.raises(DataError, match=message):
        relevant_ranks(SCORES, relevant)


def test_nan_embeddings_and_width_mismatch_are_refused():
    with pytest.raises(DataError, match="NaN"):
        retrieval_metrics(torch.tensor([[float("nan"), 0.0]]), torch.eye(2), [[0]])
    with pytest.raises(DataError, match="3-d"):
        retrieval_metrics(torch.ones(1, 3), torch.eye(2), [[0]])
