"""The shared numerics against brute-force dense computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recctl.models._similarity import (
    fit_term_weights,
    l2_normalize_rows,
    normalize_scores,
    topn_similarity,
)


def _random_sparse(seed: int, shape=(40, 25), density=0.2) -> sp.csr_matrix:
    return sp.random(*shape, density=density, random_state=seed, format="csr", dtype=np.float32) * 3


def _dense_topn(vectors: np.ndarray, n: int, shrink: float, normalize: bool) -> np.ndarray:
    dots = vectors @ vectors.T
    if normalize:
        norms = np.linalg.norm(vectors, axis=1)
        denom = norms[:, None] * norms[None, :] + shrink
        sims = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
    else:
        sims = dots
    np.fill_diagonal(sims, 0)
    out = np.zeros_like(sims)
    for i, row in enumerate(sims):
        order = np.argsort(-row, kind="stable")[:n]
        keep = order[row[order] > 0]
        out[i, keep] = row[keep]
    return out


def test_topn_similarity_matches_brute_force():
    x = _random_sparse(0)
    for normalize, shrink in [(True, 0.0), (True, 5.0), (False, 0.0)]:
        got = topn_similarity(x, 6, shrink=shrink, normalize=normalize).toarray()
        want = _dense_topn(x.toarray().astype(np.float64), 6, shrink, normalize)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert (np.diff(sp.csr_matrix(got).indptr) <= 6).all()


def test_topn_similarity_blocks_and_row_subsets_agree():
    x = _random_sparse(1, (50, 30))
    whole = topn_similarity(x, 5).toarray()
    tiny_blocks = topn_similarity(x, 5, block_entries=60).toarray()  # one row per block
    np.testing.assert_allclose(whole, tiny_blocks, rtol=1e-6)
    rows = np.array([3, 17, 40])
    part = topn_similarity(x, 5, rows=rows).toarray()
    np.testing.assert_allclose(part[rows], whole[rows], rtol=1e-6)
    others = np.setdiff1d(np.arange(50), rows)
    assert not part[others].any()


def test_shrinkage_pulls_low_support_pairs_down():
    # items 0 and 1 share one user; items 2 and 3 share ten
    rows = [0, 0] + [u for u in range(1, 11) for _ in (0, 1)]
    cols = [0, 1] + [c for _ in range(1, 11) for c in (2, 3)]
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(11, 4))
    plain = topn_similarity(x.T.tocsr(), 3).toarray()
    shrunk = topn_similarity(x.T.tocsr(), 3, shrink=5).toarray()
    assert plain[0, 1] == plain[2, 3] == 1.0
    assert shrunk[0, 1] < shrunk[2, 3]


def test_bm25_and_tfidf_weights_by_hand():
    docs = sp.csr_matrix(np.array([[1, 0, 2], [1, 1, 0], [0, 0, 1]], np.float32))
    tw = fit_term_weights(docs, "tfidf")
    idf = np.log(3) - np.log1p(np.array([2, 1, 2]))
    np.testing.assert_allclose(tw.idf, idf)
    np.testing.assert_allclose(tw.transform(docs).toarray(), np.sqrt(docs.toarray()) * idf, rtol=1e-6)
    bm = fit_term_weights(docs, "bm25", k1=1.2, b=0.75)
    lengths = docs.toarray().sum(1)
    norm = 0.25 + 0.75 * lengths / lengths.mean()
    tf = docs.toarray()
    want = np.where(tf > 0, tf * 2.2 / (1.2 * norm[:, None] + tf) * idf, 0)
    np.testing.assert_allclose(bm.transform(docs).toarray(), want, rtol=1e-5)


def test_normalize_scores_minmax_and_zscore():
    s = np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0], [0.0, -np.inf, 4.0]], np.float32)
    mm = normalize_scores(s, "minmax")
    np.testing.assert_allclose(mm[0], [0, 1, 0.5])
    np.testing.assert_allclose(mm[1], [0, 0, 0])  # no opinion -> zeros
    assert mm[2, 1] == -np.inf and mm[2, 2] == 1.0
    z = normalize_scores(s[:1], "zscore")
    np.testing.assert_allclose(z[0], (s[0] - 2) / np.std(s[0]), rtol=1e-6)


def test_l2_normalize_rows_keeps_empty_rows():
    x = sp.csr_matrix(np.array([[3, 4], [0, 0]], np.float32))
    np.testing.assert_allclose(l2_normalize_rows(x).toarray(), [[0.6, 0.8], [0, 0]])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 30),
    d=st.integers(1, 12),
    keep=st.integers(1, 8),
    shrink=st.sampled_from([0.0, 1.0, 10.0]),
)
def test_topn_similarity_property(seed, n, d, keep, shrink):
    x = _random_sparse(seed, (n, d), density=0.4)
    got = topn_similarity(x, keep, shrink=shrink, block_entries=max(n, 7)).toarray()
    full = _dense_topn(x.toarray().astype(np.float64), n, shrink, True)  # every positive pair
    assert (np.diag(got) == 0).all() and ((got > 0).sum(axis=1) <= keep).all()
    kept = got > 0
    # every kept entry is the true similarity, and each row keeps the `keep` best values
    # (which of several tied neighbours is kept is a tie-break, not checked here)
    np.testing.assert_allclose(got[kept], full[kept], rtol=1e-4, atol=1e-6)
    best = -np.sort(-full, axis=1)[:, :keep]
    np.testing.assert_allclose(-np.sort(-got, axis=1)[:, :keep], best, rtol=1e-4, atol=1e-6)


def _float32_reference(x: sp.csr_matrix, keep: int, shrink: float) -> np.ndarray:
    """Brute force with the same float32 operations: exact, ties to the lower column."""
    dots = (x @ x.T).toarray().astype(np.float32)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1), np.float64).ravel()).astype(np.float32)
    denom = np.multiply.outer(norms, norms) + np.float32(shrink)
    sims = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
    np.fill_diagonal(sims, 0)
    out = np.zeros_like(sims)
    for i, row in enumerate(sims):
        order = np.argsort(-row, kind="stable")[:keep]
        order = order[row[order] > 0]
        out[i, order] = row[order]
    return out


@pytest.mark.parametrize(
    ("shape", "density", "dense_path"),
    [((2000, 4000), 0.002, False), ((300, 400), 0.3, True)],  # a sparse and a dense item-item product
)
@pytest.mark.parametrize("shrink", [0.0, 3.0])
def test_topn_similarity_equals_brute_force_on_both_selection_paths(
    monkeypatch, kernel_path, shape, density, dense_path, shrink
):
    import recctl.models._similarity as sim

    calls: list[int] = []
    real_dense = sim._dense_row_topn

    def spy(*args):
        calls.append(1)
        return real_dense(*args)

    monkeypatch.setattr(sim, "_dense_row_topn", spy)
    rng = np.random.default_rng(int(density * 1000))
    x = sp.csr_matrix((rng.random(shape) < density).astype(np.float32))  # 0/1: many exact ties
    for n_jobs in (1, 2):
        got = topn_similarity(x, 7, shrink=shrink, block_entries=20_000, n_jobs=n_jobs)
        np.testing.assert_array_equal(got.toarray(), _float32_reference(x, 7, shrink))
        assert got.has_sorted_indices and (np.diff(got.indptr) <= 7).all()
    assert bool(calls) == (dense_path and kernel_path == "numpy")


def test_compiled_and_numpy_similarities_are_the_same_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Weighted vectors (float sums: the order of additions matters), shrink, dot products, row subsets."""
    import recctl.models._similarity as sim

    if sim._KNN_ROWS is None:
        pytest.skip("recctl._kernels is not built (pip install -e .)")
    rng = np.random.default_rng(11)
    x = sp.random(400, 700, density=0.03, random_state=rng, format="csr", dtype=np.float32)  # users x items
    x.data = rng.gamma(1.0, 2.0, x.nnz).astype(np.float32)
    vectors = x.T.tocsr()
    rows = np.array([0, 5, 6, 7, 300, 699])
    cases: list[dict] = [
        {"shrink": 0.0},
        {"shrink": 2.5, "n_jobs": 2},
        {"normalize": False, "n_jobs": 2},
        {"rows": rows, "shrink": 1.0},
        {"rows": rows[::-1], "n_jobs": 2},  # unsorted rows: sorted first
    ]
    for kwargs in cases:
        compiled = topn_similarity(vectors, 9, transposed=x, **kwargs)
        monkeypatch.setenv("RECCTL_TOPK_SELECTION", "numpy")
        plain = topn_similarity(vectors, 9, transposed=x, block_entries=3_000, **kwargs)
        monkeypatch.delenv("RECCTL_TOPK_SELECTION")
        assert compiled.has_sorted_indices and plain.has_sorted_indices
        np.testing.assert_array_equal(compiled.indptr, plain.indptr)
        np.testing.assert_array_equal(compiled.indices, plain.indices)
        np.testing.assert_array_equal(compiled.data, plain.data)  # bit for bit


def test_compiled_kernel_refuses_malformed_input() -> None:
    import recctl.models._similarity as sim

    if sim._KNN_ROWS is None:
        pytest.skip("recctl._kernels is not built (pip install -e .)")
    x = sp.csr_matrix(np.eye(3, dtype=np.float32))
    a = (x.indptr.astype(np.int32), x.indices.astype(np.int32), x.data)
    out = (np.empty(6, np.int32), np.empty(6, np.float32), np.empty(3, np.int32))
    bad = x.indices.astype(np.int32).copy()
    bad[1] = 7  # a column beyond the matrix
    with pytest.raises(ValueError, match="outside"):
        sim._KNN_ROWS(*a, a[0], bad, x.data, np.arange(3), None, 0.0, 2, *out)
    with pytest.raises(ValueError, match="rows"):
        sim._KNN_ROWS(*a, *a, np.array([0, 3]), None, 0.0, 2, out[0][:4], out[1][:4], out[2][:2])
    with pytest.raises(TypeError, match="int32"):
        sim._KNN_ROWS(x.indptr.astype(np.int64), *a[1:], *a, np.arange(3), None, 0.0, 2, *out)


def test_sparse_product_equals_scipy():
    from recctl.models._similarity import sparse_product

    a = _random_sparse(3, (60, 80), density=0.1)
    b = _random_sparse(4, (80, 50), density=0.1)
    got = sparse_product(a, b)
    np.testing.assert_allclose(got.toarray(), (a @ b).toarray(), rtol=1e-6)
    assert sparse_product(a[:0], b).shape == (0, 50)


def test_topn_similarity_from_a_given_transpose_and_index_dtypes_agree():
    # item-kNN passes its user x item matrix as the item vectors' transpose; same entries, same result
    rng = np.random.default_rng(7)
    x = sp.csr_matrix((rng.random((300, 120)) < 0.05).astype(np.float32))  # users x items, 0/1
    vectors = x.T.tocsr()
    plain = topn_similarity(vectors, 5, block_entries=500)
    given = topn_similarity(vectors, 5, block_entries=500, transposed=x)
    assert (plain != given).nnz == 0 and plain.has_sorted_indices and given.has_sorted_indices
    np.testing.assert_array_equal(given.toarray(), _float32_reference(vectors, 5, 0.0))


def test_similarity_without_scipys_private_product_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a scipy release move ``_sparsetools.csr_matmat``, ``@`` takes over: same matrix."""
    import builtins

    from recctl.models._similarity import topn_similarity

    x = _random_sparse(5, (120, 90), density=0.08)
    before = topn_similarity(x, 7, shrink=1.0, block_entries=5_000, n_jobs=1)
    real_import = builtins.__import__

    def no_sparsetools(name: str, *args: object, **kwargs: object) -> object:
        if name == "scipy.sparse._sparsetools":
            raise ImportError("moved")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_sparsetools)
    after = topn_similarity(x, 7, shrink=1.0, block_entries=5_000, n_jobs=1)
    np.testing.assert_array_equal(after.toarray(), before.toarray())
