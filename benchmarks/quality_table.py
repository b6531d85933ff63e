"""The quality table: recctl's models next to independent baselines, per-user temporal split.

For each dataset every user's events are sorted by time (ties: file order) and the last 20%
(rounded half up) are the test events; validation is the same rule applied to the training
part. Relevant test items are those the user did not have in training, among items seen in
training; every model ranks all trained items except the user's training items; NDCG@10 with
binary gains, averaged over users with at least one relevant item. The split, the metric and
every baseline are computed here, by code that is not recctl's:

* EASE (closed form in numpy, lambda chosen on validation),
* item-kNN (cosine on the binary matrix, neighbours chosen on validation),
* ALS from `implicit` (factors / regularisation / alpha chosen on validation),
* LightFM called directly (WARP, epochs chosen on validation),
* RecTools' SASRec (full softmax, lr 2e-3, its other defaults; epochs chosen on validation).

recctl's models run through its library on the same split: once with their defaults, once
tuned on the same validation split (the rows marked "tuned"), and a blend of the two best
recctl models with its weight chosen on validation. Tuned choices are refitted on the whole
training part before the test. Nothing reads the test split before the final scoring.

Install what the baselines need (not recctl's runtime dependencies), in a venv with recctl:

    pip install -e . -r benchmarks/requirements-quality.txt

Run (datasets missing from ../shared/data are skipped with a message):

    nice -n 10 python -m benchmarks.quality_table [--datasets ml-100k,ml-latest-small,online-retail]
        [--max-epochs 30] [--threads 1] [--out quality_table.md]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
K = 10
TEST_FRACTION = 0.2

ScoreFn = Callable[[np.ndarray], np.ndarray]


# -- data -------------------------------------------------------------------------------------------
def load_events(name: str) -> pl.DataFrame | None:
    """``user, item, ts, row`` for a dataset, or None (with a message) when its files are absent."""
    if name == "ml-latest-small":
        path = DATA / "ml-latest-small" / "ratings.csv"
        if not path.exists():
            return _missing(name, path)
        raw = pl.read_csv(path)
        frame = raw.select(
            pl.col("userId").alias("user"), pl.col("movieId").alias("item"), pl.col("timestamp").alias("ts")
        )
    elif name == "ml-100k":
        path = DATA / "ml-100k" / "u.data"
        if not path.exists():
            return _missing(name, path)
        raw = pl.read_csv(path, separator="\t", has_header=False, new_columns=["user", "item", "rating", "ts"])
        frame = raw.select("user", "item", "ts")
    elif name == "online-retail":
        path = DATA / "online-retail" / "online_retail.parquet"
        if not path.exists():
            return _missing(name, path)
        raw = pl.read_parquet(path)
        # the usual cleaning: a customer, no cancellation, positive quantity and price
        raw = raw.filter(
            pl.col("CustomerID").is_not_null()
            & ~pl.col("InvoiceNo").cast(pl.String).str.starts_with("C")
            & (pl.col("Quantity") > 0)
            & (pl.col("UnitPrice") > 0)
        )
        frame = raw.select(
            pl.col("CustomerID").cast(pl.Int64).alias("user"),
            pl.col("StockCode").cast(pl.String).str.strip_chars().alias("item"),
            pl.col("InvoiceDate").cast(pl.Datetime("us")).dt.epoch("s").alias("ts"),
        )
    else:
        raise SystemExit(f"unknown dataset {name!r}")
    return frame.with_columns(pl.col("user").cast(pl.String), pl.col("item").cast(pl.String)).with_row_index("row")


def _missing(name: str, path: Path) -> None:
    print(f"[skip] {name}: {path} not found (see docs/quality.md for where the data comes from)", file=sys.stderr)
    return None


def per_user_split(events: pl.DataFrame, fraction: float = TEST_FRACTION) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each user's last ``fraction`` of events (by time, then file order; count rounded half up)."""
    ordered = events.sort("user", "ts", "row").with_columns(
        pl.int_range(pl.len()).over("user").alias("_r"), pl.len().over("user").alias("_n")
    )
    n_test = (pl.col("_n") * fraction + 0.5).floor()
    head = ordered.filter(pl.col("_r") < pl.col("_n") - n_test).drop("_r", "_n")
    tail = ordered.filter(pl.col("_r") >= pl.col("_n") - n_test).drop("_r", "_n")
    return head, tail


@dataclass
class Fold:
    """A training part and its held-out part, in index space (items: those seen in training)."""

    train: pl.DataFrame  # user, item, ts, row, uidx, iidx
    users: np.ndarray
    items: np.ndarray
    x: sp.csr_matrix  # binary (users x items) training matrix
    truth: sp.csr_matrix  # binary relevant held-out items (not in training)
    next_item: np.ndarray  # per user: the first held-out event's item (time order), -1 if none or untrained

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)


def make_fold(train: pl.DataFrame, held: pl.DataFrame) -> Fold:
    """Index a split; held-out items unseen in training or already had by the user are dropped."""
    users = np.sort(train["user"].unique().to_numpy())
    items = np.sort(train["item"].unique().to_numpy())
    umap = pl.DataFrame({"user": users, "uidx": np.arange(len(users), dtype=np.int32)})
    imap = pl.DataFrame({"item": items, "iidx": np.arange(len(items), dtype=np.int32)})
    train = train.join(umap, on="user").join(imap, on="item").sort("uidx", "ts", "row")
    x = _binary(train["uidx"].to_numpy(), train["iidx"].to_numpy(), len(users), len(items))
    held = held.join(umap, on="user").join(imap, on="item")
    truth = _binary(held["uidx"].to_numpy(), held["iidx"].to_numpy(), len(users), len(items))
    truth = (truth - truth.multiply(x)).tocsr()
    truth.eliminate_zeros()
    first = held.sort("uidx", "ts", "row").group_by("uidx", maintain_order=True).first()
    next_item = np.full(len(users), -1, np.int64)
    next_item[first["uidx"].to_numpy()] = first["iidx"].to_numpy()
    return Fold(train, users, items, x, truth, next_item)


def _binary(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    mat = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_rows, n_cols))
    mat.data[:] = 1.0
    return mat


@dataclass
class Scored:
    """A score function evaluated on a fold (rows: the fold's users with a relevant item)."""

    ndcg: float
    loss: float | None = None  # mean full-softmax cross-entropy of each user's next held-out item
    matrix: np.ndarray | None = None  # raw scores of those users (kept to blend without refitting)


def eval_users(fold: Fold) -> np.ndarray:
    """The users NDCG averages over: those with at least one relevant held-out item."""
    return np.flatnonzero(np.diff(fold.truth.indptr) > 0)


def evaluate(score: ScoreFn, fold: Fold, *, loss: bool = False, keep: bool = False, batch: int = 1024) -> Scored:
    """NDCG@10 of ``score`` on ``fold``; optionally the next-item loss and the raw score matrix.

    The loss is the cross-entropy of a softmax over every trained item (the training objective
    of both SASRecs) of each user's first held-out event among trained items, averaged over
    users: the "validation loss" an epoch can be chosen by (as RecTools' own validation does
    for a held-out next item).
    """
    users = eval_users(fold)
    todo = np.union1d(users, np.flatnonzero(fold.next_item >= 0)) if loss else users
    is_eval = np.isin(todo, users)
    discount = 1.0 / np.log2(np.arange(2, K + 2))
    total, losses = 0.0, []
    kept = np.empty((len(users), fold.n_items), np.float32) if keep else None
    row = 0
    for start in range(0, len(todo), batch):
        u = todo[start : start + batch]
        s = np.array(score(u), dtype=np.float32, copy=True)
        if loss:
            has = fold.next_item[u] >= 0
            logits = s[has].astype(np.float64)
            target = logits[np.arange(has.sum()), fold.next_item[u][has]]
            # an item the model cannot score (RecTools drops users with one event, and items
            # only they had) has -inf: such targets are left out, the same set every epoch
            top = logits.max(axis=1, keepdims=True)
            lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
            losses.append((lse - target)[np.isfinite(target)])
        e = is_eval[start : start + batch]
        u, s = u[e], s[e]
        if kept is not None:
            kept[row : row + len(u)] = s
        row += len(u)
        total += _ndcg_sum(s, u, fold, discount)
    return Scored(total / max(len(users), 1), float(np.concatenate(losses).mean()) if losses else None, kept)


def _ndcg_sum(s: np.ndarray, u: np.ndarray, fold: Fold, discount: np.ndarray) -> float:
    """Sum of NDCG@K over the rows ``s`` (scores of users ``u``); training items are masked in place."""
    if not len(u):
        return 0.0
    seen = fold.x[u].tocoo()
    s[seen.row, seen.col] = -np.inf
    top = np.argpartition(-s, K, axis=1)[:, :K]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable"), 1)
    rel = fold.truth[u]
    hits = np.asarray(rel[np.arange(len(u))[:, None], top].todense()) > 0
    ideal = np.cumsum(discount)[np.minimum(np.diff(rel.indptr), K) - 1]
    return float(((hits * discount).sum(axis=1) / ideal).sum())


def ndcg_at_k(score: ScoreFn, fold: Fold) -> float:
    """Mean NDCG@10 over users with a relevant held-out item; training items are never ranked."""
    return evaluate(score, fold).ndcg


def from_matrix(matrix: np.ndarray, fold: Fold) -> ScoreFn:
    """A score function reading the rows :func:`evaluate` kept (for the fold's evaluated users)."""
    pos = np.full(fold.n_users, -1, np.int64)
    pos[eval_users(fold)] = np.arange(matrix.shape[0])
    return lambda u: matrix[pos[u]]


# -- candidates ---------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """A model family: how to fit it on a fold, and the grid it is tuned over on validation.

    ``fit(fold, params)`` returns a score function; epoch-wise models instead implement
    ``fit_epochs(fold, params, max_epochs)`` yielding ``(epoch, score_fn)`` after each epoch.
    ``select`` names how the epoch count is chosen on validation: by NDCG@10 (``ndcg``), by the
    next-item loss (``loss``), or both (two rows).
    """

    name: str
    source: str  # "recctl" or the independent library / code
    defaults: dict[str, Any]
    grid: list[dict[str, Any]] = field(default_factory=list)
    fit: Callable[[Fold, dict[str, Any]], ScoreFn] | None = None
    fit_epochs: Callable[[Fold, dict[str, Any], int], Iterator[tuple[int, ScoreFn]]] | None = None
    select: tuple[str, ...] = ("ndcg",)


@dataclass
class Choice:
    """What validation chose for one selection rule."""

    rule: str  # "ndcg" or "loss"
    params: dict[str, Any]
    valid: float  # validation NDCG@10 of the choice
    valid_loss: float | None = None
    matrix: np.ndarray | None = None  # validation scores of the choice (for blends)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def select_on_validation(
    cand: Candidate, valid: Fold, max_epochs: int, keep: bool = False
) -> tuple[list[Choice], float]:
    """Per selection rule, the grid point (and epoch count) validation picks; also the search time.

    ``ndcg``: the best validation NDCG@10; ``loss``: the lowest next-item loss (epoch-wise
    models only). With ``keep`` the chosen point's validation scores are kept for blending.
    """
    best: dict[str, Choice] = {}
    t0 = time.perf_counter()
    want_loss = "loss" in cand.select
    for point in cand.grid or [{}]:
        params = {**cand.defaults, **point}
        if cand.fit_epochs is not None:
            steps = (
                (epoch, {**params, "epochs": epoch}, score)
                for epoch, score in cand.fit_epochs(valid, params, max_epochs)
            )
        else:
            assert cand.fit is not None
            steps = iter([(0, params, cand.fit(valid, params))])
        for epoch, at, score in steps:
            res = evaluate(score, valid, loss=want_loss, keep=keep)
            if epoch:
                extra = f" loss {res.loss:.4f}" if res.loss is not None else ""
                print(
                    f"      {cand.name} epoch {epoch}: valid NDCG@10 {res.ndcg:.4f}{extra} "
                    f"({time.perf_counter() - t0:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
            if "ndcg" in cand.select and ("ndcg" not in best or res.ndcg > best["ndcg"].valid):
                best["ndcg"] = Choice("ndcg", at, res.ndcg, res.loss, res.matrix)
            if (
                want_loss
                and res.loss is not None
                and ("loss" not in best or res.loss < (best["loss"].valid_loss or np.inf))
            ):
                best["loss"] = Choice("loss", at, res.ndcg, res.loss, res.matrix)
    return [best[r] for r in cand.select if r in best], time.perf_counter() - t0


@dataclass
class Final:
    """A setting refitted on the whole training part and scored on test."""

    test: Scored
    fit_s: float


def fit_finals(cand: Candidate, fold: Fold, settings: list[dict[str, Any]], keep: bool = False) -> list[Final]:
    """Fit each setting on the whole training part and score it on test.

    Epoch-wise settings that differ only in their epoch count share one training run, scored at
    each count (a model trained for E epochs is the same whether or not training continues
    after E: nothing else depends on the count); ``fit_s`` is then the training time up to it.
    """
    out: dict[int, Final] = {}
    if cand.fit_epochs is None:
        assert cand.fit is not None
        for i, params in enumerate(settings):
            score, fit_s = timed(lambda p=params: cand.fit(fold, p))
            out[i] = Final(evaluate(score, fold, keep=keep), fit_s)
        return [out[i] for i in range(len(settings))]
    groups: dict[str, list[int]] = {}
    for i, params in enumerate(settings):
        groups.setdefault(repr(sorted((k, v) for k, v in params.items() if k != "epochs")), []).append(i)
    for members in groups.values():
        wanted = {int(settings[i].get("epochs", 1)): [] for i in members}
        for i in members:
            wanted[int(settings[i].get("epochs", 1))].append(i)
        base = {k: v for k, v in settings[members[0]].items() if k != "epochs"}
        steps = cand.fit_epochs(fold, base, max(wanted))
        spent = 0.0
        while True:
            t0 = time.perf_counter()
            step = next(steps, None)
            spent += time.perf_counter() - t0
            if step is None:
                break
            epoch, score = step
            if epoch in wanted:
                result = evaluate(score, fold, keep=keep)
                for i in wanted[epoch]:
                    out[i] = Final(result, spent)
    return [out[i] for i in range(len(settings))]


# -- independent baselines ------------------------------------------------------------------------------
def ease_fit(fold: Fold, params: dict[str, Any]) -> ScoreFn:
    """EASE (Steck 2019): B = I - P diagMat(1 / diag(P)), P = (X'X + lambda I)^-1."""
    g = (fold.x.T @ fold.x).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += params["lambda"]
    p = np.linalg.inv(g)
    b = (-p / np.diag(p)).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    return lambda u: np.asarray(fold.x[u] @ b)


def knn_fit(fold: Fold, params: dict[str, Any]) -> ScoreFn:
    """Item-kNN: cosine between item columns, each item's top ``k`` neighbours kept."""
    norms = np.sqrt(np.asarray(fold.x.multiply(fold.x).sum(axis=0))).ravel()
    xn = fold.x @ sp.diags(1.0 / np.maximum(norms, 1e-9))
    sim = (xn.T @ xn).toarray().astype(np.float32)
    np.fill_diagonal(sim, 0.0)
    k = min(params["k"], sim.shape[0] - 1)
    cut = np.partition(sim, -k, axis=0)[-k][None, :]  # keep each item's k most similar sources
    sim[sim < cut] = 0.0
    return lambda u: np.asarray(fold.x[u] @ sim)


def als_fit(fold: Fold, params: dict[str, Any]) -> ScoreFn:
    from implicit.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=params["factors"],
        regularization=params["reg"],
        alpha=params["alpha"],
        iterations=params["iterations"],
        random_state=0,
        num_threads=params["threads"],
    )
    model.fit(fold.x.tocsr(), show_progress=False)
    uf, itf = _to_numpy(model.user_factors), _to_numpy(model.item_factors)
    return lambda u: uf[u] @ itf.T


def _to_numpy(arr: Any) -> np.ndarray:
    return np.asarray(arr.to_numpy() if hasattr(arr, "to_numpy") else arr)


def lightfm_epochs(fold: Fold, params: dict[str, Any], max_epochs: int) -> Iterator[tuple[int, ScoreFn]]:
    from lightfm import LightFM

    model = LightFM(no_components=params["no_components"], loss="warp", learning_rate=params["lr"], random_state=0)
    coo = fold.x.tocoo()
    items = np.arange(fold.n_items, dtype=np.int32)
    for epoch in range(1, max_epochs + 1):
        model.fit_partial(coo, epochs=1, num_threads=params["threads"])

        def score(u: np.ndarray, m: Any = model) -> np.ndarray:
            return np.vstack([m.predict(int(x), items, num_threads=params["threads"]) for x in u])

        if epoch % params.get("every", 1) == 0 or epoch == max_epochs:
            yield epoch, score


def rectools_sasrec_epochs(fold: Fold, params: dict[str, Any], max_epochs: int) -> Iterator[tuple[int, ScoreFn]]:
    """RecTools' SASRec, one epoch at a time (``fit_partial``), scored through its recommend."""
    import pandas as pd  # noqa: TID251 - RecTools takes pandas frames; this is benchmark-only code
    from rectools import Columns as RC
    from rectools.dataset import Dataset as RDataset
    from rectools.models import SASRecModel

    frame = fold.train.select(
        pl.col("uidx").alias(RC.User),
        pl.col("iidx").alias(RC.Item),
        pl.lit(1.0).alias(RC.Weight),
        # RecTools orders a session by datetime only: the file-order tie-break goes into it
        (pl.col("ts") * 1_000_000 + pl.col("row") % 1_000_000).cast(pl.Datetime("us")).alias(RC.Datetime),
    )
    dataset = RDataset.construct(pd.DataFrame(frame.to_dict(as_series=False)))
    # the sizes recctl's sasrec uses by default (RecTools' own: 256 factors, 4 heads, 100 events
    # took ~60 s an epoch on ml-100k on one thread)
    model = SASRecModel(
        loss="softmax",
        lr=params["lr"],
        n_factors=params["n_factors"],
        n_heads=params["n_heads"],
        n_blocks=2,
        session_max_len=params["max_len"],
        dropout_rate=0.2,
        epochs=1,
        deterministic=True,
        verbose=0,
        recommend_n_threads=params["threads"],
    )
    for epoch in range(1, max_epochs + 1):
        model.fit_partial(dataset, min_epochs=1, max_epochs=1)

        def score(u: np.ndarray, m: Any = model) -> np.ndarray:
            # every item's score (the logit its softmax is trained on): the caller masks what
            # the user had, and the next-item loss needs the whole row
            recs = m.recommend(users=u, dataset=dataset, k=fold.n_items, filter_viewed=False)
            out = np.full((len(u), fold.n_items), -np.inf, np.float32)
            pos = np.full(fold.n_users, -1, np.int64)
            pos[u] = np.arange(len(u))
            rows = pos[recs[RC.User].to_numpy().astype(np.int64)]
            out[rows, recs[RC.Item].to_numpy().astype(np.int64)] = recs[RC.Score].to_numpy()
            return out

        yield epoch, score


# -- recctl ---------------------------------------------------------------------------------------------
def recctl_dataset(fold: Fold) -> Any:
    import datetime as dt

    from recctl.columns import Columns
    from recctl.data.dataset import Dataset, interactions_matrix

    t0 = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    events = fold.train.select(
        pl.col("uidx").alias(Columns.UserIdx),
        pl.col("iidx").alias(Columns.ItemIdx),
        pl.lit("interaction").alias(Columns.Event),
        (pl.lit(t0) + pl.duration(seconds=pl.col("ts"))).alias(Columns.Timestamp),
        pl.lit(1.0).alias(Columns.Weight),
    )
    return Dataset(
        user_ids=fold.users.astype(object),
        item_ids=fold.items.astype(object),
        interactions=interactions_matrix(events, fold.n_users, fold.n_items),
        events=events,
    )


def recctl_fit(kind: str) -> Callable[[Fold, dict[str, Any]], ScoreFn]:
    def fit(fold: Fold, params: dict[str, Any]) -> ScoreFn:
        from recctl.models.registry import get_model_class

        model = get_model_class(kind)(**params).fit(recctl_dataset(fold))
        return model.score

    return fit


def recctl_epochs(kind: str) -> Callable[[Fold, dict[str, Any], int], Iterator[tuple[int, ScoreFn]]]:
    def fit_epochs(fold: Fold, params: dict[str, Any], max_epochs: int) -> Iterator[tuple[int, ScoreFn]]:
        from recctl.models.registry import get_model_class

        params = {**params, "epochs": max_epochs}
        params.pop("every", None)
        model = get_model_class(kind)(**params)
        every = 1 if kind == "sasrec" else 5
        for epoch in model.iter_fit(recctl_dataset(fold)):
            if epoch % every == 0 or epoch == max_epochs:
                yield epoch, model.score

    return fit_epochs


def candidates(threads: int, kinds: list[str]) -> list[Candidate]:
    """Every row of the table: recctl's kinds and the independent baselines."""
    out = [
        Candidate("popularity", "recctl", {}, fit=recctl_fit("popularity")),
        Candidate("item_knn", "recctl", {}, [{"neighbors": n} for n in (20, 50, 100, 200)], fit=recctl_fit("item_knn")),
        Candidate(
            "ease", "recctl", {}, [{"l2": v} for v in (10.0, 50.0, 200.0, 500.0, 2000.0)], fit=recctl_fit("ease")
        ),
        Candidate(
            "lightfm",
            "recctl",
            {"loss": "warp", "num_threads": threads, "random_state": 0},
            [{"no_components": 64, "learning_rate": 0.05}],
            fit_epochs=recctl_epochs("lightfm"),
        ),
        Candidate(
            "sasrec",
            "recctl",
            {"num_threads": threads, "random_state": 0},
            [{}],
            fit_epochs=recctl_epochs("sasrec"),
        ),
    ]
    for kind, grid in (("als", [{"factors": f} for f in (64, 128)]), ("rp3beta", [{}])):
        if kind in kinds:  # the kinds issue-16's models engineer adds
            out.append(Candidate(kind, "recctl", {}, grid, fit=recctl_fit(kind)))
    out += [
        Candidate(
            "EASE (numpy)",
            "independent",
            {"lambda": 500.0},
            [{"lambda": v} for v in (10.0, 50.0, 200.0, 500.0, 2000.0)],
            fit=ease_fit,
        ),
        Candidate(
            "item-kNN cosine (numpy)", "independent", {"k": 50}, [{"k": v} for v in (20, 50, 100, 200)], fit=knn_fit
        ),
        Candidate(
            "ALS (implicit)",
            "independent",
            {"factors": 64, "reg": 0.01, "alpha": 1.0, "iterations": 15, "threads": threads},
            [{"factors": f, "reg": r, "alpha": a} for f in (64, 128) for r in (0.01, 0.1) for a in (1.0, 10.0)],
            fit=als_fit,
        ),
        Candidate(
            "LightFM WARP (direct)",
            "independent",
            {"no_components": 64, "lr": 0.05, "threads": threads, "every": 5},
            [{}],
            fit_epochs=lightfm_epochs,
        ),
        Candidate(
            "SASRec (RecTools)",
            "independent",
            {"lr": 2e-3, "n_factors": 64, "n_heads": 2, "max_len": 50, "threads": threads},
            [{}],
            fit_epochs=rectools_sasrec_epochs,
            select=("loss", "ndcg"),
        ),
    ]
    return out


# -- the run -----------------------------------------------------------------------------------------
@dataclass
class Row:
    dataset: str
    model: str
    source: str
    setting: str
    params: str
    valid: float | None
    test: float
    fit_s: float
    search_s: float | None
    valid_loss: float | None = None
    load: float = field(default_factory=lambda: round(os.getloadavg()[0], 1))  # 1-min load when the row ended
    finished: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def run_dataset(name: str, args: argparse.Namespace) -> list[Row]:
    events = load_events(name)
    if events is None:
        return []
    train, test = per_user_split(events)
    inner, valid = per_user_split(train)
    full, vfold = make_fold(train, test), make_fold(inner, valid)
    print(
        f"== {name}: {events.height:,} events; train {full.n_users:,} users x {full.n_items:,} items; "
        f"test users {len(eval_users(full)):,}",
        file=sys.stderr,
        flush=True,
    )
    from recctl.models.registry import model_kinds

    rows: list[Row] = []
    # the two best tuned recctl rows on validation, with their validation and test scores
    blend_inputs: list[tuple[float, str, np.ndarray, np.ndarray, float]] = []
    for cand in candidates(args.threads, model_kinds()):
        if args.models and not any(m in cand.name for m in args.models):
            continue
        own = cand.source == "recctl"
        choices, search_s = select_on_validation(cand, vfold, args.max_epochs, keep=own)
        settings: list[tuple[str, dict[str, Any], Choice | None]] = []
        if own:
            params = dict(cand.defaults)
            if cand.fit_epochs is not None:
                params["epochs"] = _default_epochs(cand.name)
            settings.append(("default", params, None))
        for choice in choices:
            label = (
                "tuned" if len(choices) == 1 else f"tuned ({'valid loss' if choice.rule == 'loss' else 'valid NDCG'})"
            )
            settings.append((label, choice.params, choice))
        finals = fit_finals(cand, full, [p for _, p, _ in settings], keep=own)
        for (setting, params, choice), final in zip(settings, finals, strict=True):
            shown = {k: v for k, v in params.items() if k not in ("threads", "num_threads", "random_state", "every")}
            value = None if choice is None else choice.valid
            row = Row(name, cand.name, cand.source, setting, str(shown), value, final.test.ndcg, final.fit_s, None)
            if choice is not None:
                row.search_s = search_s
                row.valid_loss = choice.valid_loss
            rows.append(_kept(row, args))
            print(
                f"   {cand.name:28s} {setting:8s} test {final.test.ndcg:.4f} fit {final.fit_s:7.1f}s {shown}",
                file=sys.stderr,
                flush=True,
            )
            if own and choice is not None and choice.matrix is not None and final.test.matrix is not None:
                blend_inputs.append((choice.valid, cand.name, choice.matrix, final.test.matrix, final.fit_s))
                blend_inputs = sorted(blend_inputs, key=lambda t: -t[0])[:2]  # keep memory bounded
    if len(blend_inputs) >= 2:
        rows.append(_kept(_blend_row(name, blend_inputs, vfold, full), args))
    if args.tune_budget > 0 and (not args.models or "tune" in args.models):
        rows.append(_kept(recctl_tune_pick(name, train, test, full, args), args))
    return rows


def _kept(row: Row, args: argparse.Namespace) -> Row:
    """Append a finished row to ``--jsonl`` (a long run's rows survive its interruption)."""
    if args.jsonl:
        with open(args.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(dataclasses.asdict(row)) + "\n")
    return row


def _default_epochs(name: str) -> int:
    from recctl.models.registry import get_model_class

    return int(get_model_class(name).config_class().epochs)  # type: ignore[attr-defined]


def _blend_row(name: str, top: list[tuple[float, str, np.ndarray, np.ndarray, float]], vfold: Fold, full: Fold) -> Row:
    """recctl's two best tuned models blended (per-user min-max scores), the weight chosen on validation.

    The components' scores at their chosen settings were kept when they were evaluated, so
    the blend needs no refit; ``fit s`` is the sum of the components' final fits.
    """
    from recctl.models._similarity import normalize_scores

    (_, a, va, ta, fa), (_, b, vb, tb, fb) = top
    t0 = time.perf_counter()
    best = (-1.0, 1.0)
    for w in np.linspace(0.0, 1.0, 11):
        value = ndcg_at_k(_mix(from_matrix(va, vfold), from_matrix(vb, vfold), float(w), normalize_scores), vfold)
        best = max(best, (value, float(w)))
    search_s = time.perf_counter() - t0
    test = ndcg_at_k(_mix(from_matrix(ta, full), from_matrix(tb, full), best[1], normalize_scores), full)
    label = f"blend {a} x {best[1]:.1f} + {b} x {1 - best[1]:.1f}"
    print(f"   {label:28s} tuned    test {test:.4f}", file=sys.stderr, flush=True)
    return Row(name, "blend", "recctl", "tuned", label, best[0], test, fa + fb, search_s)


def _mix(sa: ScoreFn, sb: ScoreFn, w: float, normalize: Callable[..., np.ndarray]) -> ScoreFn:
    return lambda u: (
        w * normalize(np.asarray(sa(u), np.float32), "minmax")
        + (1 - w) * normalize(np.asarray(sb(u), np.float32), "minmax")
    )


def recctl_tune_pick(name: str, train: pl.DataFrame, test: pl.DataFrame, full: Fold, args: argparse.Namespace) -> Row:
    """What ``recctl tune`` (``models: all``, blend included) picks on validation, scored on test here.

    recctl gets the same training events and, as its test split (``split: files``), exactly the
    relevant test pairs scored here; it carves its own validation split from training by its
    ``user_time`` rule (each user's last 20%), runs ``recctl tune`` within ``--tune-budget``
    seconds with ``tune.apply``, then ``recctl train``; the model it calls ``tuned`` is loaded
    and scored by this script's metric.
    """
    import yaml

    from recctl.config import load_config
    from recctl.data.dataset import load_dataset
    from recctl.models.base import Recommender
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from recctl.stages.train import run_train
    from recctl.stages.tune import run_tune

    work = Path(args.workdir) / name
    work.mkdir(parents=True, exist_ok=True)
    rel = full.truth.tocoo()
    pairs = pl.DataFrame({"user": full.users[rel.row], "item": full.items[rel.col]})
    held = test.join(pairs, on=["user", "item"], how="semi")
    stamp = pl.from_epoch(pl.col("ts"), time_unit="s").dt.strftime("%Y-%m-%d %H:%M:%S").alias("ts")
    pl.concat([train, held]).sort("row").select("user", "item", stamp).write_csv(work / "events.csv")
    pairs.write_csv(work / "test.csv")
    threads = {"num_threads": args.threads}
    models = {
        "popular": {"kind": "popularity"},
        "item_knn": {"kind": "item_knn"},
        "ease": {"kind": "ease"},
        "lightfm": {"kind": "lightfm", **threads},
        "sasrec": {"kind": "sasrec", **threads},
    }
    from recctl.models.registry import model_kinds

    for kind in ("als", "rp3beta"):
        if kind in model_kinds():
            models[kind] = {"kind": kind}
    raw = {
        "name": f"quality-{name}",
        "workdir": "work",
        "seed": 0,
        "data": {
            "interactions": {
                "path": "events.csv",
                "columns": {"user_id": "user", "item_id": "item", "timestamp": "ts"},
                "timestamp_format": "%Y-%m-%d %H:%M:%S",
            }
        },
        "preprocess": {
            "min_user_interactions": 1,
            "min_item_interactions": 1,
            "split": {
                "strategy": "files",
                "test_file": "test.csv",
                "valid_strategy": "user_time",
                "valid_fraction": 0.2,
            },
        },
        "models": models,
        "evaluate": {"k": [10], "metrics": ["ndcg"], "n_bootstrap": 0},
        "tune": {
            "models": "all",
            "objective": "ndcg@10",
            "n_trials": args.tune_trials,
            "timeout_s": float(args.tune_budget),
            "max_epochs": args.max_epochs,
            "apply": True,
        },
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    cfg = load_config(path)
    t0 = time.perf_counter()
    run_ingest(cfg)
    run_preprocess(cfg)
    summary = run_tune(cfg).summary
    search_s = time.perf_counter() - t0
    # `recctl train` trains every model; the table needs only tune's pick (`tuned`), so the
    # cheapest model is named and `tuned` comes with it (tune.apply); fit s is the pick's own.
    # The train stage then holds fewer models than the config lists, which `load_trained_model`
    # rightly calls stale: the file is read straight from what train just wrote (sha256 checked)
    pick = run_train(cfg, models=["popular"]).summary["models"]["tuned"]
    fit_s = float(pick["fit_seconds"])
    model = Recommender.load(cfg.stage_dir("train") / pick["file"], pick["sha256"])
    data = load_dataset(cfg.stage_dir("preprocess"), "train")
    user_pos = {u: i for i, u in enumerate(np.asarray(data.user_ids).astype(str))}
    item_pos = {it: i for i, it in enumerate(np.asarray(data.item_ids).astype(str))}
    cols = np.array([item_pos.get(str(it), -1) for it in full.items])

    def score(u: np.ndarray) -> np.ndarray:
        rows = np.array([user_pos[str(x)] for x in full.users[u]])
        s = np.asarray(model.score(rows), dtype=np.float32)
        out = np.full((len(u), full.n_items), -np.inf, np.float32)
        out[:, cols >= 0] = s[:, cols[cols >= 0]]
        return out

    value = ndcg_at_k(score, full)
    winner = summary.get("winner")
    ranking = {
        e["model"]: round(float(e["value"]), 4) for e in summary.get("ranking", []) if e.get("value") is not None
    }
    seconds = {n: round(float(m["seconds"])) for n, m in summary.get("models", {}).items()}
    trials = {n: int(m["n_trials"]) for n, m in summary.get("models", {}).items()}
    blend = summary.get("blend") or {}
    label = (
        f"winner {winner}; validation ranking {ranking}; blend {blend.get('components')} x {blend.get('weights')} "
        f"({blend.get('decision')}); seconds per model {seconds}; trials {trials}; "
        f"skipped {summary.get('skipped') or 'none'}; budget {summary.get('budget')}"
    )
    valid_value = ranking.get(str(winner))
    print(
        f"   recctl tune pick ({winner})      test {value:.4f} search {search_s:.0f}s fit {fit_s:.0f}s", file=sys.stderr
    )
    print(f"      {label}", file=sys.stderr, flush=True)
    return Row(name, "recctl tune pick", "recctl", "tune", label, valid_value, value, fit_s, search_s)


def render(rows: list[Row]) -> str:
    """One Markdown table per dataset, with the gap of recctl's best tuned row to the best baseline."""
    out = []
    for name in dict.fromkeys(r.dataset for r in rows):
        part = [r for r in rows if r.dataset == name]
        out += [
            f"\n### {name}\n",
            "| model | by | setting | NDCG@10 test | NDCG@10 valid | fit s | search s | load | parameters |",
        ]
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in sorted(part, key=lambda r: -r.test):
            valid = f"{r.valid:.4f}" if r.valid is not None else "–"
            search = f"{r.search_s:.0f}" if r.search_s is not None else "–"
            loss = f"; valid loss {r.valid_loss:.4f}" if r.valid_loss is not None else ""
            out.append(
                f"| {r.model} | {r.source} | {r.setting} | {r.test:.4f} | {valid} | {r.fit_s:.1f} | {search} "
                f"| {r.load:.1f} | `{r.params}`{loss} |"
            )
        base = [r for r in part if r.source == "independent"]
        own = [r for r in part if r.source == "recctl" and r.setting == "tuned" and r.valid is not None]
        tuned_by_recctl = [r for r in part if r.setting == "tune"]
        if base and (own or tuned_by_recctl):
            # recctl tune's own pick when it ran; else the benchmark grid's best on validation
            pick = tuned_by_recctl[0] if tuned_by_recctl else max(own, key=lambda r: r.valid or 0.0)
            top = max(base, key=lambda r: r.test)
            out.append(
                f"\nrecctl's pick on validation: **{pick.model}** ({pick.test:.4f}); strongest independent "
                f"baseline: **{top.model}** ({top.test:.4f}); ratio **{pick.test / top.test:.3f}** (goal: >= 1.10)."
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml-100k,ml-latest-small,online-retail")
    parser.add_argument("--models", default="", help="comma-separated substrings of the rows to run (default: all)")
    parser.add_argument("--max-epochs", type=int, default=30, help="ceiling of every epoch search")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="", help="also write the Markdown table here")
    parser.add_argument(
        "--tune-budget", type=float, default=1800, help="seconds for `recctl tune` (models: all); 0 skips it"
    )
    parser.add_argument("--tune-trials", type=int, default=6, help="tune.n_trials per model")
    parser.add_argument("--workdir", default="/tmp/recctl-quality", help="scratch folder for recctl's runs")
    parser.add_argument("--jsonl", default="", help="append every finished row to this JSON-lines file")
    parser.add_argument(
        "--render", default="", help="comma-separated JSON-lines files: print their rows as tables, run nothing"
    )
    args = parser.parse_args(argv)
    if args.render:
        rows = [Row(**json.loads(line)) for f in args.render.split(",") for line in Path(f).read_text().splitlines()]
        print(render(rows))
        return 0
    args.models = [m for m in args.models.split(",") if m]
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(args.threads)
    rows: list[Row] = []
    for name in args.datasets.split(","):
        rows += run_dataset(name.strip(), args)
    text = render(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
