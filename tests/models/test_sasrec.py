"""SASRec: the optional-extra contract, sequence building, learning, and the real-time path."""

from __future__ import annotations

import datetime as dt
import logging
import pickle
import sys

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.data.dataset import Dataset, interactions_matrix
from recctl.errors import MissingExtraError
from recctl.models.registry import get_model_class, model_kinds
from recctl.models.sasrec import SASRecConfig, SASRecModel, _pad_rows, _ragged_tail, _training_chunks

N_USERS, N_ITEMS, STEP = 120, 30, 7
TINY = {
    "max_len": 8,
    "hidden_size": 16,
    "n_heads": 2,
    "n_blocks": 1,
    "dropout": 0.0,
    "lr": 0.01,
    "epochs": 12,
    "batch_size": 32,
    "random_state": 3,
    "num_threads": 1,
}


def planted_dataset(with_events: bool = True, with_features: bool = False) -> Dataset:
    """Users walk the catalogue in steps of STEP: the next item is always (last + STEP) % N_ITEMS."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(N_USERS):
        start, n = int(rng.integers(N_ITEMS)), int(rng.integers(4, 12))
        rows += [(u, (start + t * STEP) % N_ITEMS, t) for t in range(n)]
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    events = pl.DataFrame(rows, schema=[Columns.UserIdx, Columns.ItemIdx, "t"], orient="row").select(
        Columns.UserIdx,
        Columns.ItemIdx,
        pl.lit("view").alias(Columns.Event),
        (pl.lit(t0) + pl.duration(hours=pl.col("t"))).alias(Columns.Timestamp),
        pl.lit(1.0).alias(Columns.Weight),
    )
    features = None
    if with_features:  # two features: item parity and a constant
        features = sp.csr_matrix(np.c_[np.arange(N_ITEMS) % 2, np.ones(N_ITEMS)].astype(np.float32))
    return Dataset(
        user_ids=np.array([f"u{i}" for i in range(N_USERS)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(N_ITEMS)], dtype=object),
        interactions=interactions_matrix(events, N_USERS, N_ITEMS),
        events=events if with_events else None,
        item_features=features,
        item_feature_names=["odd", "all"] if with_features else None,
    )


def next_item_accuracy(model: SASRecModel) -> float:
    scores = model.score(np.arange(N_USERS))
    last = np.array([model.user_history(u)[-1] for u in range(N_USERS)])
    return float(np.mean(scores.argmax(axis=1) == (last + STEP) % N_ITEMS))


# -- without torch ---------------------------------------------------------------------------------
def test_missing_torch_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    assert "sasrec" in model_kinds()
    cls = get_model_class("sasrec")
    with pytest.raises(MissingExtraError) as info:
        cls(max_len=5)
    assert "pip install 'recctl[neural]'" in str(info.value)
    assert "sasrec" in str(info.value)
    assert info.value.exit_code == 6


def test_config_refuses_heads_not_dividing_hidden() -> None:
    with pytest.raises(ValueError, match="multiple of n_heads"):
        SASRecConfig(hidden_size=10, n_heads=3)
    with pytest.raises(ValueError, match="did you mean 'max_len'"):
        SASRecConfig(max_lenn=3)


def test_training_chunks_make_every_event_a_target_once() -> None:
    users = np.array([0, 0, 0, 0, 0, 2, 2])
    items = np.array([5, 6, 7, 8, 9, 1, 2])
    inputs, targets = _training_chunks(users, items, max_len=3)
    # user 0: 4 pairs -> windows [(8->9),(7->8),(6->7)] and [(5->6)]; user 2: one pair
    assert inputs.tolist() == [[7, 8, 9], [0, 0, 6], [0, 0, 2]]
    assert targets.tolist() == [[8, 9, 10], [0, 0, 7], [0, 0, 3]]
    ptr, flat = _ragged_tail(users, items, n_users=3, max_len=3)
    assert ptr.tolist() == [0, 3, 3, 5] and flat.tolist() == [7, 8, 9, 1, 2]
    assert _pad_rows(ptr, flat, np.array([2, 1, 0]), 4).tolist() == [[0, 0, 2, 3], [0, 0, 0, 0], [0, 8, 9, 10]]


# -- with torch ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch():  # noqa: ANN201
    return pytest.importorskip("torch", reason="the neural extra is not installed: pip install 'recctl[neural]'")


@pytest.fixture(scope="module")
def fitted(torch) -> SASRecModel:  # noqa: ANN001
    return SASRecModel(**TINY).fit(planted_dataset())


def test_learns_the_planted_next_item(fitted: SASRecModel) -> None:
    # random guessing gets 1/30; popularity is flat here
    assert next_item_accuracy(fitted) > 0.8


def test_same_seed_same_model_and_global_torch_state_restored(torch, fitted: SASRecModel) -> None:  # noqa: ANN001
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    again = SASRecModel(**TINY).fit(planted_dataset())
    np.testing.assert_array_equal(again.score(np.arange(N_USERS)), fitted.score(np.arange(N_USERS)))
    assert torch.equal(torch.rand(3), expected_draw)  # the caller's RNG stream was left alone
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, det)


def test_numpy_inference_matches_torch(torch, fitted: SASRecModel) -> None:  # noqa: ANN001
    from recctl.models import _sasrec_numpy

    seq = _pad_rows(fitted.hist_indptr_, fitted.hist_items_, np.arange(N_USERS), TINY["max_len"])
    with torch.no_grad():
        expected = fitted._net(torch.from_numpy(seq)).numpy()
    got = _sasrec_numpy.encode(seq, fitted.weights_, TINY["n_heads"])
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_torch_scoring_and_numpy_fallback_agree(fitted: SASRecModel, monkeypatch: pytest.MonkeyPatch) -> None:
    from recctl.models import _sasrec_numpy

    users = np.arange(N_USERS)
    via_torch = fitted.score(users)  # torch is installed here: the torch path
    seq = _pad_rows(fitted.hist_indptr_, fitted.hist_items_, users, TINY["max_len"])
    full = _sasrec_numpy.encode(seq, fitted.weights_, TINY["n_heads"])[:, -1]  # every position
    np.testing.assert_allclose(_sasrec_numpy.sequence_vectors(seq, fitted.weights_, TINY["n_heads"]), full, atol=2e-5)
    model = pickle.loads(pickle.dumps(fitted))
    monkeypatch.setitem(sys.modules, "torch", None)
    np.testing.assert_allclose(model.score(users), via_torch, atol=1e-4)


def test_loss_auto_and_latest_windows(torch) -> None:  # noqa: ANN001
    from recctl.models.sasrec import _resolve_loss

    assert _resolve_loss("auto", 20_000) == "softmax" and _resolve_loss("auto", 20_001) == "sampled_softmax"
    assert _resolve_loss("bce", 10) == "bce"
    users = np.array([0, 0, 0, 0, 0, 2, 2])
    items = np.array([5, 6, 7, 8, 9, 1, 2])
    inputs, targets = _training_chunks(users, items, max_len=3, latest_only=True)
    assert inputs.tolist() == [[7, 8, 9], [0, 0, 2]] and targets.tolist() == [[8, 9, 10], [0, 0, 3]]
    model = SASRecModel(**{**TINY, "windows": "latest", "epochs": 2}).fit(planted_dataset())
    assert model.loss_ == "softmax" and len(model.epoch_losses_) == 2


def test_pickle_round_trip_answers_identically(fitted: SASRecModel, tmp_path) -> None:  # noqa: ANN001
    record = fitted.save(tmp_path / "m.pkl")
    loaded = SASRecModel.load(tmp_path / "m.pkl", record.sha256)
    assert loaded._net is None and all(isinstance(v, np.ndarray) for v in loaded.weights_.values())
    np.testing.assert_array_equal(loaded.score(np.arange(N_USERS)), fitted.score(np.arange(N_USERS)))
    a = fitted.recommend(np.arange(N_USERS), 5)
    b = loaded.recommend(np.arange(N_USERS), 5)
    np.testing.assert_array_equal(a.items, b.items)


def test_pickled_model_scores_without_torch(fitted: SASRecModel, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = pickle.dumps(fitted)
    monkeypatch.setitem(sys.modules, "torch", None)
    loaded = pickle.loads(blob)
    assert loaded.score_from_item_ids(["i1"]).argmax() == (1 + STEP) % N_ITEMS


def test_new_events_change_the_list_without_retraining(fitted: SASRecModel) -> None:
    model = pickle.loads(pickle.dumps(fitted))
    user = 0
    before = int(model.recommend(np.array([user]), 1).items[0, 0])
    new_item = (int(model.user_history(user)[-1]) + 11) % N_ITEMS
    changed = model.update_histories(pl.DataFrame({Columns.UserIdx: [user, N_USERS], Columns.ItemIdx: [new_item, 4]}))
    assert changed == 2 and model.n_users == N_USERS + 1
    assert model.user_history(user)[-1] == new_item
    after = int(model.recommend(np.array([user]), 1).items[0, 0])
    assert after == (new_item + STEP) % N_ITEMS != before
    # a brand-new user is answered from their one event
    assert int(model.recommend(np.array([N_USERS]), 1).items[0, 0]) == (4 + STEP) % N_ITEMS
    # the trained model itself was not touched
    assert fitted.n_users == N_USERS


def test_score_from_items_follows_the_latest_item(fitted: SASRecModel) -> None:
    scores = fitted.score_from_items(np.array([3, 3 + STEP, 3 + 2 * STEP]))
    assert scores.shape == (N_ITEMS,) and scores.argmax() == (3 + 3 * STEP) % N_ITEMS
    # an empty history falls back to popularity instead of failing
    np.testing.assert_array_equal(fitted.score_from_items(np.array([], np.int64)), fitted.item_pop_)


def test_iter_fit_yields_a_usable_model_each_epoch(torch) -> None:  # noqa: ANN001
    model = SASRecModel(**{**TINY, "epochs": 3, "loss": "softmax"})
    seen = []
    for epoch in model.iter_fit(planted_dataset(), progress=seen.append):
        assert model.score(np.arange(2)).shape == (2, N_ITEMS)
        assert epoch == len(seen)
    assert seen == [1 / 3, 2 / 3, 1.0] and len(model.epoch_losses_) == 3


def test_patience_stops_early_and_keeps_the_best_epoch(torch) -> None:  # noqa: ANN001
    model = SASRecModel(**{**TINY, "epochs": 40, "patience": 2}).fit(planted_dataset())
    assert model.best_epoch_ is not None and len(model.valid_ndcg_) < 40
    assert model.valid_ndcg_[model.best_epoch_ - 1] == max(model.valid_ndcg_)
    assert next_item_accuracy(model) > 0.8


def test_bce_loss_and_item_features_also_learn(torch) -> None:  # noqa: ANN001
    model = SASRecModel(**{**TINY, "loss": "bce", "n_negatives": 4, "use_item_features": True, "epochs": 25})
    model.fit(planted_dataset(with_features=True))
    assert "feat_emb" in model.weights_
    assert next_item_accuracy(model) > 0.5


def test_without_events_falls_back_and_says_so(torch, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    with caplog.at_level(logging.WARNING, logger="recctl.models.sasrec"):
        SASRecModel(**{**TINY, "epochs": 1}).fit(planted_dataset(with_events=False))
    assert "no per-event timestamps" in caplog.text


def test_similar_items_come_from_item_vectors(fitted: SASRecModel) -> None:
    top = fitted.similar_items(np.array([0, 5]), 3)
    assert top.items.shape == (2, 3)
    assert 0 not in top.items[0] and 5 not in top.items[1]
    assert np.all(np.diff(top.scores, axis=1) <= 0)


# -- through the CLI, on the shipped sample shop -----------------------------------------------------
SEQ_MODEL = {
    "kind": "sasrec",
    "max_len": 10,
    "hidden_size": 16,
    "n_heads": 2,
    "n_blocks": 1,
    "epochs": 2,
    "batch_size": 64,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def sample_config(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The quickstart shop ingested and preprocessed, with a sasrec model as the recommend model."""
    from typer.testing import CliRunner

    from recctl.cli.main import app
    from tests.conftest import REPO_ROOT, write_config

    raw = __import__("yaml").safe_load((REPO_ROOT / "configs" / "quickstart.yaml").read_text())
    recommend = {**raw["recommend"], "model": "seq", "fallback": ["popular"]}
    config = write_config(
        tmp_path_factory.mktemp("sasrec_cli"),
        tune=None,
        recommend=recommend,
        models={"popular": {"kind": "popularity"}, "seq": SEQ_MODEL},
    )
    runner = CliRunner()
    for command in ("ingest", "preprocess"):
        result = runner.invoke(app, [command, str(config)])
        assert result.exit_code == 0, result.stderr
    return config


def test_cli_train_without_torch_exits_6_naming_the_command(sample_config, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from recctl.cli.main import app

    monkeypatch.setitem(sys.modules, "torch", None)
    result = CliRunner().invoke(app, ["train", str(sample_config)])
    assert result.exit_code == 6
    assert "pip install 'recctl[neural]'" in result.stderr


def test_cli_trains_with_torch_and_recommends_without_it(
    torch,
    sample_config,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from recctl.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", str(sample_config)])
    assert result.exit_code == 0, result.stderr
    monkeypatch.setitem(sys.modules, "torch", None)  # serving needs numpy only
    result = runner.invoke(app, ["recommend", str(sample_config), "--json"])
    assert result.exit_code == 0, result.stderr
    recs = pl.read_parquet(sample_config.parent / "work" / "recommend" / "recommendations.parquet")
    assert recs.height > 0 and "seq" in recs[Columns.Model].unique().to_list()
