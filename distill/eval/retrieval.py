"""Retrieval metrics with binary relevance: Recall@k, MRR@k, nDCG@k.

Only the ranks of the relevant documents are needed, so the metrics are computed from them and the
(Q, D) score matrix is built one chunk of queries at a time (a memory budget sets the chunk), never
whole: 1,000 WordNet queries against its 117k glosses would be a 470 MB float matrix.

Definitions, per query with relevant set R (|R| >= 1) and 1-based ranks r(d), averaged over queries:
  Recall@k = |{d in R : r(d) <= k}| / |R|
  MRR@k    = 1 / min_{d in R} r(d) if that rank is <= k, else 0
  nDCG@k   = DCG@k / IDCG@k, DCG@k = sum_{d in R, r(d) <= k} 1 / log2(r(d) + 1),
             IDCG@k = sum_{i=1}^{min(|R|, k)} 1 / log2(i + 1)
Ties are pessimistic and deterministic: a relevant document ranks after every non-relevant document
with the same score (a constant encoder scores ~0, not whatever the collection's order would give
it); relevant documents tied with each other take consecutive ranks in the order they are listed.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from distill.errors import DataError

SCORE_BUDGET_BYTES = 64 * 2**20  # one chunk of float32 scores (plus a bool mask of the same shape)


def _check_relevant(relevant: Sequence[Sequence[int]], n_queries: int, n_docs: int) -> None:
    if len(relevant) != n_queries:
        raise DataError(f"retrieval: {len(relevant)} relevance lists for {n_queries} queries")
    for q, docs in enumerate(relevant):
        if len(docs) == 0:
            raise DataError(f"retrieval: query {q} has no relevant document (its metrics would be undefined)")
        if len(set(docs)) != len(docs) or min(docs) < 0 or max(docs) >= n_docs:
            raise DataError(f"retrieval: query {q}: relevant ids must be distinct and in [0, {n_docs}), got {list(docs)}")


def _padded(relevant: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """(Q, R) relevant ids (0 where padded) and the (Q, R) mask of real entries."""
    width = max(len(r) for r in relevant)
    ids = torch.zeros(len(relevant), width, dtype=torch.long)
    mask = torch.zeros(len(relevant), width, dtype=torch.bool)
    for q, docs in enumerate(relevant):
        ids[q, :len(docs)] = torch.as_tensor(list(docs), dtype=torch.long)
        mask[q, :len(docs)] = True
    return ids, mask


def relevant_ranks(scores: Tensor, relevant: Sequence[Sequence[int]]) -> Tensor:
    """(Q, R) 1-based ranks of each query's relevant documents (0 where padded) under `scores` (Q, D).

    Higher score ranks first; ties as in the module docstring.
    """
    _check_relevant(relevant, scores.shape[0], scores.shape[1])
    ids, mask = _padded(relevant)
    rel = scores.gather(1, ids)  # (Q, R): the very values compared below, so rounding cannot split a tie
    ranks = torch.zeros_like(ids)
    for j in range(ids.shape[1]):
        s = rel[:, j:j + 1]
        higher = (scores > s).sum(1)
        tied = (scores == s).sum(1)
        tied_relevant = ((rel == s) & mask).sum(1)
        tied_relevant_before = ((rel[:, :j] == s) & mask[:, :j]).sum(1)
        ranks[:, j] = 1 + higher + (tied - tied_relevant) + tied_relevant_before
    return ranks * mask


def metrics_from_ranks(ranks: Tensor, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """{"recall@k", "mrr@k", "ndcg@k"} for each k, means over queries, from (Q, R) ranks (0 = padding)."""
    if ranks.numel() == 0 or ranks.shape[0] == 0:
        raise DataError("retrieval: no query to evaluate")
    mask = ranks > 0
    n_rel = mask.sum(1).double()
    first = torch.where(mask, ranks, torch.full_like(ranks, torch.iinfo(ranks.dtype).max)).min(1).values
    gain = torch.where(mask, 1.0 / torch.log2(ranks.double() + 1), torch.zeros((), dtype=torch.float64))
    out = {}
    for k in ks:
        hit = mask & (ranks <= k)
        ideal = torch.tensor([sum(1 / math.log2(i + 2) for i in range(min(int(n), k))) for n in n_rel.tolist()],
                             dtype=torch.float64)
        out[f"recall@{k}"] = float((hit.sum(1) / n_rel).mean())
        out[f"mrr@{k}"] = float(torch.where(first <= k, 1.0 / first.double(), torch.zeros((), dtype=torch.float64)).mean())
        out[f"ndcg@{k}"] = float(((gain * hit).sum(1) / ideal).mean())
    return out


def ranks_by_embeddings(queries: Tensor, documents: Tensor, relevant: Sequence[Sequence[int]],
                        budget_bytes: int = SCORE_BUDGET_BYTES) -> Tensor:
    """(Q, R) relevant ranks under the dot-product scores of `queries` (Q, E) and `documents` (D, E).

    The scores are built `budget_bytes` at a time (whole query rows, at least one). Embeddings must
    be finite: a NaN score compares false with everything and would rank first.
    """
    if queries.shape[1] != documents.shape[1]:
        raise DataError(f"retrieval: query embeddings are {queries.shape[1]}-d, document embeddings {documents.shape[1]}-d")
    for name, x in (("query", queries), ("document", documents)):
        if not torch.isfinite(x).all():
            raise DataError(f"retrieval: the {name} embeddings hold NaN or inf")
    _check_relevant(relevant, queries.shape[0], documents.shape[0])
    rows = max(1, budget_bytes // (5 * max(documents.shape[0], 1)))  # 4 bytes of score + 1 of comparison mask
    docs_t = documents.float().T
    chunks = [relevant_ranks(queries[i:i + rows].float() @ docs_t, relevant[i:i + rows])
              for i in range(0, queries.shape[0], rows)]
    width = max(c.shape[1] for c in chunks)
    return torch.cat([torch.nn.functional.pad(c, (0, width - c.shape[1])) for c in chunks])


def retrieval_metrics(queries: Tensor, documents: Tensor, relevant: Sequence[Sequence[int]],
                      ks: Sequence[int] = (1, 10), budget_bytes: int = SCORE_BUDGET_BYTES) -> dict[str, float]:
    """Recall@k, MRR@k and nDCG@k of dot-product retrieval (normalise the embeddings first for cosine)."""
    return metrics_from_ranks(ranks_by_embeddings(queries, documents, relevant, budget_bytes), ks)
