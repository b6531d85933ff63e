"""The shared top-K kernel against a naive full-sort reference."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recctl import ranking
from recctl.ranking import TopK, block_rows_for, iter_top_k, mask_scores, select_top_k, top_k

BUILT = ranking._SELECT_F32 is not None
#: only test_compiled_selection_is_built fails where the extension is missing; the rest skip
requires_compiled = pytest.mark.skipif(not BUILT, reason="recctl._kernels is not built (pip install -e .)")
#: the selections behind select_top_k: compiled (recctl._kernels, when built) and the numpy fallback
SELECTIONS = {"numpy": ranking._select_numpy} | ({"compiled": ranking._select_compiled} if BUILT else {})


def naive_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable sort by descending score; -inf and NaN never selected; -1 / -inf padding."""
    n, m = scores.shape
    items = np.full((n, k), -1, np.int64)
    top = np.full((n, k), -np.inf, np.float32)
    for r in range(n):
        row = np.where(np.isnan(scores[r]), -np.inf, scores[r])
        order = np.argsort(-row, kind="stable")
        order = order[row[order] > -np.inf][:k]
        items[r, : len(order)] = order
        top[r, : len(order)] = row[order]
    return items, top


@st.composite
def score_blocks(draw: st.DrawFn) -> np.ndarray:
    """Score blocks from narrow to wide (both selection paths), with ties, -inf and NaN."""
    n = draw(st.integers(1, 5))
    m = draw(st.sampled_from([1, 2, 7, 40, 64, 65, 300, 2100, 2500, 5003]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        scores = rng.integers(-3, 4, size=(n, m)).astype(np.float32)  # many ties
    else:
        scores = rng.standard_normal((n, m)).astype(np.float32) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    scores[rng.random((n, m)) < draw(st.sampled_from([0.0, 0.3, 0.99, 1.0]))] = -np.inf
    if draw(st.booleans()):
        scores[rng.random((n, m)) < 0.01] = np.nan
    if draw(st.booleans()):
        scores[:, rng.integers(0, m)] = np.inf
    return scores


def test_compiled_selection_is_built() -> None:
    # `pip install -e .` / `make install` compile recctl/_kernels.c; without it every ranking runs
    # the slower numpy selection (recctl info says so)
    assert ranking._SELECT_F32 is not None, f"recctl._kernels is not built: {ranking._COMPILED_MISSING}"
    assert ranking.selection_backend() == "compiled"


@settings(max_examples=120, deadline=None)
@given(score_blocks(), st.integers(1, 25))
def test_select_top_k_matches_naive_reference(scores: np.ndarray, k: int) -> None:
    ref_items, ref_top = naive_top_k(scores, k)
    for select in (select_top_k, *SELECTIONS.values()):
        items, top = select(scores.copy(), k)
        np.testing.assert_array_equal(items, ref_items)
        np.testing.assert_array_equal(top, ref_top)


@requires_compiled
@settings(max_examples=60, deadline=None)
@given(score_blocks(), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_compiled_exclusions_match_masking_first(scores: np.ndarray, k: int, seed: int) -> None:
    # the compiled selection writes excluded items to -inf as it reads each row: the same lists
    # as masking the block first (CSR rows with repeated and unsorted items, empty rows)
    n, m = scores.shape
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, min(m, 6) + 1, n)
    indptr = np.concatenate(([0], np.cumsum(counts))) + 3  # not rebased, as a CSR row slice
    indices = rng.integers(0, m, int(counts.sum()))
    masked = scores.copy()
    masked[np.repeat(np.arange(n), counts), indices] = -np.inf
    ref_items, ref_top = naive_top_k(masked, k)
    block = scores.copy()
    items, top = ranking._select_compiled(block, k, (indptr, indices.astype(np.int32)))
    np.testing.assert_array_equal(items, ref_items)
    np.testing.assert_array_equal(top, ref_top)
    np.testing.assert_array_equal(block, masked)  # in place, as mask_scores


@requires_compiled
def test_compiled_selection_rejects_bad_buffers() -> None:
    from recctl._kernels import select_f32

    scores = np.zeros((2, 5), np.float32)
    items, top = np.empty((2, 3), np.int64), np.empty((2, 3), np.float32)
    with pytest.raises(TypeError, match="scores"):
        select_f32(scores.astype(np.float64), 3, items, top)
    with pytest.raises(ValueError, match="items"):
        select_f32(scores, 4, items, top)
    with pytest.raises(ValueError, match="k must be"):
        select_f32(scores, 0, items, top)
    with pytest.raises(ValueError, match="outside the 5 columns"):
        select_f32(scores, 3, items, top, np.array([0, 1, 1]), np.array([5]))
    with pytest.raises(ValueError, match="indptr"):
        select_f32(scores, 3, items, top, np.array([0, 2, 1]), np.array([1, 2]))
    with pytest.raises((BufferError, ValueError), match="contiguous"):
        select_f32(np.zeros((4, 5), np.float32)[::2], 3, items, top)  # not C-contiguous
    assert not np.isneginf(scores).any()  # nothing written before the checks passed


def test_without_the_extension_numpy_selects_the_same_lists(monkeypatch) -> None:
    monkeypatch.setattr(ranking, "_SELECT_F32", None)
    monkeypatch.setattr(ranking, "_COMPILED_MISSING", "No module named 'recctl._kernels'")
    assert ranking.selection_backend().startswith("numpy (recctl._kernels not built")
    u, v, seen = _factor_model(n_users=40)
    got = top_k(lambda r: u[r] @ v.T, np.arange(40), 7, exclude=seen)
    full = u @ v.T
    full[seen.nonzero()] = -np.inf
    np.testing.assert_array_equal(got.items, naive_top_k(full, 7)[0])


def test_float64_blocks_are_ranked_by_their_own_values() -> None:
    # float64 blocks take the numpy path: values equal only after rounding to float32 keep
    # their float64 order
    scores = np.zeros((1, 3000), np.float64)
    scores[0, 10] = 1.0
    scores[0, 5] = 1.0 - 1e-12
    items, top = select_top_k(scores, 2)
    assert items.tolist() == [[10, 5]] and top.dtype == np.float32


@pytest.mark.parametrize("n_items", [3000, 5003, 50_000])
def test_grouped_path_is_exact_on_wide_random_blocks(n_items: int) -> None:
    rng = np.random.default_rng(n_items)
    scores = rng.standard_normal((6, n_items)).astype(np.float32)
    scores[:, rng.choice(n_items, 50, replace=False)] = 5.0  # a tie group straddling the cut
    for k in (1, 10, 64):
        items, top = select_top_k(scores, k)
        ref_items, ref_top = naive_top_k(scores, k)
        np.testing.assert_array_equal(items, ref_items)
        np.testing.assert_array_equal(top, ref_top)


def test_grouped_path_with_all_nan_groups_and_few_eligible_items() -> None:
    # whole strided groups of NaN (their bound is NaN), and rows with fewer eligible items than k
    from recctl.ranking import _group_shape

    rng = np.random.default_rng(3)
    n_items = 6000
    n_groups, _ = _group_shape(n_items, 10)
    scores = rng.standard_normal((4, n_items)).astype(np.float32)
    cols = np.arange(n_items)
    scores[:, cols % n_groups < 40] = np.nan
    scores[1] = -np.inf
    scores[1, [5, 4321]] = [2.0, np.nan]
    scores[2, cols % n_groups >= 40] = -np.inf
    scores[3, -3:] = 9.0  # the best items sit in the tail beyond the last full group
    for k in (1, 10, 30):
        items, top = select_top_k(scores, k)
        ref_items, ref_top = naive_top_k(scores, k)
        np.testing.assert_array_equal(items, ref_items)
        np.testing.assert_array_equal(top, ref_top)


def test_ties_break_by_lower_item_index() -> None:
    scores = np.zeros((1, 4000), np.float32)
    items, _ = select_top_k(scores, 3)
    assert items.tolist() == [[0, 1, 2]]


def test_padding_when_fewer_eligible_items_than_k() -> None:
    scores = np.full((2, 5), -np.inf, np.float32)
    scores[0, 3] = 1.0
    items, top = select_top_k(scores, 3)
    assert items.tolist() == [[3, -1, -1], [-1, -1, -1]]
    assert top[0, 0] == 1.0 and np.isneginf(top[0, 1:]).all() and np.isneginf(top[1]).all()


def test_nan_scores_are_never_selected() -> None:
    scores = np.arange(3000, dtype=np.float32)[None, :].repeat(2, axis=0)
    scores[0, -1] = np.nan
    items, _ = select_top_k(scores, 2)
    assert items.tolist() == [[2998, 2997], [2999, 2998]]


def test_mask_scores_excludes_rows_and_items_in_place() -> None:
    scores = np.ones((2, 4), np.float32)
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 0]]))
    out = mask_scores(scores, exclude, np.array([True, True, True, False]))
    assert out is scores
    assert np.isneginf(scores).tolist() == [[True, False, False, True], [False, False, True, True]]


def _factor_model(n_users: int = 300, n_items: int = 2500, seed: int = 0):
    rng = np.random.default_rng(seed)
    # small integers: every product is exact in float32 whatever BLAS kernel or block shape
    # computes it, so blocked and whole-matrix scores agree bit for bit (ties included)
    u = rng.integers(-4, 5, (n_users, 8)).astype(np.float32)
    v = rng.integers(-4, 5, (n_items, 8)).astype(np.float32)
    seen = sp.random(n_users, n_items, density=0.01, format="csr", random_state=seed)
    return u, v, seen


@pytest.mark.parametrize("selection", [pytest.param("compiled", marks=requires_compiled), "numpy"])
@pytest.mark.parametrize(("n_jobs", "reverse"), [(1, False), (2, False), (2, True)])
def test_iter_top_k_blocks_in_order_excluding_seen(n_jobs: int, reverse: bool, selection: str, monkeypatch) -> None:
    monkeypatch.setenv(ranking.SELECTION_ENV, selection)
    assert ranking.selection_backend().startswith(selection)
    u, v, seen = _factor_model()
    mask = np.ones(v.shape[0], bool)
    mask[:100] = False
    # contiguous user ranges take the cheap row-slice path, others a fancy index
    users = np.arange(len(u))[::-1].copy() if reverse else np.arange(len(u))
    blocks = list(
        iter_top_k(
            lambda r: u[r] @ v.T,
            users,
            10,
            exclude=seen,
            item_mask=mask,
            batch_size=64,
            n_jobs=n_jobs,
            max_block_bytes=40 * 2500 * 4,
        )
    )
    assert len(blocks) == 8  # 300 users in blocks of min(64, 40) rows
    result = TopK.concat(blocks)
    np.testing.assert_array_equal(result.users, users)
    full = u[users] @ v.T
    full[:, ~mask] = -np.inf
    full[seen[users].nonzero()] = -np.inf
    ref_items, _ = naive_top_k(full, 10)
    np.testing.assert_array_equal(result.items, ref_items)


def test_iter_top_k_reports_progress_and_bounds_block_size() -> None:
    u, v, _ = _factor_model(n_users=100)
    seen_sizes: list[int] = []
    lock = threading.Lock()

    def score(rows: np.ndarray) -> np.ndarray:
        with lock:
            seen_sizes.append(len(rows))
        return u[rows] @ v.T

    done: list[int] = []
    top_k(
        score,
        np.arange(100),
        5,
        n_items=2500,
        batch_size=1000,
        max_block_bytes=25 * 2500 * 4,
        n_jobs=2,
        progress=done.append,
    )
    assert max(seen_sizes) == 25
    assert done == [25, 50, 75, 100]
    assert block_rows_for(2500, 1000, 25 * 2500 * 4) == 25
    assert block_rows_for(10**9, 10, 1) == 1


def test_top_k_with_no_users_has_k_columns() -> None:
    result = top_k(lambda r: np.zeros((len(r), 5), np.float32), np.array([], np.int64), 3)
    assert result.items.shape == (0, 3)


def test_bad_score_function_shape_is_reported() -> None:
    with pytest.raises(ValueError, match="shape"):
        top_k(lambda r: np.zeros(5, np.float32), np.arange(3), 2)


def test_blas_is_single_threaded_inside_the_pool() -> None:
    from threadpoolctl import threadpool_info

    seen: list[int] = []

    def score(rows: np.ndarray) -> np.ndarray:
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return np.ones((len(rows), 3000), np.float32)

    top_k(score, np.arange(40), 3, batch_size=10, n_jobs=2)
    assert seen and set(seen) == {1}  # no workers x BLAS-threads oversubscription


def test_thread_counts_use_all_cores_and_obey_the_process_cap(monkeypatch) -> None:
    from recctl.ranking import max_threads, resolve_n_jobs

    monkeypatch.delenv("RECCTL_MAX_THREADS", raising=False)
    cores = max_threads()
    assert resolve_n_jobs(-1) == resolve_n_jobs(None) == cores
    assert resolve_n_jobs(1) == 1
    monkeypatch.setenv("RECCTL_MAX_THREADS", "1")
    assert max_threads() == 1 and resolve_n_jobs(-1) == 1 and resolve_n_jobs(8) == 1
    monkeypatch.setenv("RECCTL_MAX_THREADS", "not a number")
    assert max_threads() == cores
