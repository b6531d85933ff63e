"""A plain, per-user, loop-by-loop reference implementation of every metric.

Written from the definitions in docs/metrics.md without looking at the vectorised code, so
property tests can compare the two on random rankings.
"""

from __future__ import annotations

import math


def user_metrics(ranked: list[int], rel: dict[int, float], k: int) -> dict[str, float]:
    """Accuracy metrics of one list (``-1`` = padding) against ``rel`` (item -> weight > 0)."""
    top = list(ranked[:k])
    top += [-1] * (k - len(top))
    hits = [1 if i in rel else 0 for i in top]
    n_rel = len(rel)
    n_hits = sum(hits)
    precision = n_hits / k
    recall = n_hits / n_rel
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    ap = 0.0
    seen = 0
    for j, h in enumerate(hits, start=1):
        if h:
            seen += 1
            ap += seen / j
    ap /= min(n_rel, k)
    dcg = sum(h / math.log2(j + 1) for j, h in enumerate(hits, start=1))
    idcg = sum(1 / math.log2(j + 1) for j in range(1, min(n_rel, k) + 1))
    gains = [rel.get(i, 0.0) for i in top]
    gdcg = sum(g / math.log2(j + 1) for j, g in enumerate(gains, start=1))
    ideal = sorted(rel.values(), reverse=True)[:k]
    gidcg = sum(g / math.log2(j + 1) for j, g in enumerate(ideal, start=1))
    rr = 0.0
    for j, h in enumerate(hits, start=1):
        if h:
            rr = 1 / j
            break
    n_real = sum(1 for i in top if i >= 0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "map": ap,
        "ndcg": dcg / idcg,
        "ndcg_graded": gdcg / gidcg,
        "mrr": rr,
        "hit_rate": 1.0 if n_hits else 0.0,
        "user_coverage": 1.0 if n_real >= k else 0.0,
    }


def novelty(ranked: list[int], k: int, counts: list[float], n_users: int) -> float:
    items = [i for i in ranked[:k] if i >= 0]
    if not items:
        return math.nan
    return sum(-math.log2((counts[i] + 1) / (n_users + 1)) for i in items) / len(items)


def popularity_bias(ranked: list[int], k: int, head: set[int]) -> float:
    items = [i for i in ranked[:k] if i >= 0]
    if not items:
        return math.nan
    return sum(1 for i in items if i in head) / len(items)


def diversity(ranked: list[int], k: int, features: list[list[float]]) -> float:
    items = [i for i in ranked[:k] if i >= 0]
    if len(items) < 2:
        return math.nan
    total, pairs = 0.0, 0
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            fa, fb = features[items[a]], features[items[b]]
            na = math.sqrt(sum(x * x for x in fa))
            nb = math.sqrt(sum(x * x for x in fb))
            cos = 0.0 if na == 0 or nb == 0 else sum(x * y for x, y in zip(fa, fb, strict=True)) / (na * nb)
            total += 1 - cos
            pairs += 1
    return total / pairs


def auc(scores: list[float], rel: set[int], excluded: set[int]) -> float:
    pos = [scores[i] for i in rel]
    neg = [scores[i] for i in range(len(scores)) if i not in rel and i not in excluded]
    if not pos or not neg:
        return math.nan
    wins = 0.0
    for p in pos:
        for q in neg:
            wins += 1.0 if p > q else 0.5 if p == q else 0.0
    return wins / (len(pos) * len(neg))


def holm(p: list[float]) -> list[float]:
    """Holm's step-down procedure, written as in the textbook."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
