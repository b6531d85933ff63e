"""A user's new events re-score their list from the bundle's arrays, per model kind (issue 17).

The shop of tests/live_shop.py (sample data, one A/B variant per model kind) is published once.
What must hold, checked against the models themselves and the one list builder:

* for a user the models did not train on, and for the similarity and ALS kinds for everyone,
  ``Bundle.recommend(user, events=...)`` is exactly the list builder's list for a user whose
  history is their history plus the new items (same fill step: rules, cap, exclusions);
* LightFM starts from the trained vector, SASRec from the trained sequence (or the history),
  the new items appended in the order they came (scores checked against the model's own);
* the purchased item leaves the list (``exclude_events: [purchase]``), the viewed one may stay;
* a bundle without the live arrays (written before them) still answers, from neighbours, or
  without neighbours from the nightly list minus the excluded items.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recctl.abtest.assign import assign_variants
from recctl.artifacts import sha256_file
from recctl.config import load_config
from recctl.lists import Request
from recctl.ranking import TopK
from recctl.serving import load
from recctl.stages.recommend import load_audience, load_serving
from tests.live_shop import HAS_TORCH, VARIANTS, K
from tests.ties import assert_same_top_k_up_to_ties

pytestmark = pytest.mark.slow

#: kinds whose re-score equals the builder's basket path for every user
EVERYONE = ["knn", "rp3", "ease", "als", "mix", "popular"]
#: starts from the trained vector for users it knows (equal to the builder for the others)
TRAINED_STATE = ["lfm"]


@pytest.fixture(scope="module")
def world(live_shop: Path) -> dict:
    cfg = load_config(live_shop)
    serving = load_serving(cfg)
    audience = load_audience(cfg, serving)
    bundle = load(cfg.stage_dir("export") / "bundle")
    return {"cfg": cfg, "serving": serving, "audience": audience, "bundle": bundle}


def _users(world: dict, known: bool, n: int = 15) -> list[int]:
    rows = world["audience"].rows
    served = set(world["bundle"].user_ids)
    ids = world["audience"].user_ids.to_list()
    pick = [int(p) for p in np.flatnonzero((rows >= 0) == known) if ids[p] in served]
    return pick[:n]


def _events(world: dict, pos: int, seed: int) -> tuple[list[tuple[str, str]], int, int]:
    """A view and a purchase of two items outside the user's history."""
    rng = np.random.default_rng(seed)
    history = set(world["audience"].history[pos].indices.tolist())
    fresh = [int(i) for i in rng.permutation(world["serving"].n_items) if int(i) not in history][:2]
    ids = world["serving"].item_ids.to_list()
    return [(ids[fresh[0]], "view"), (ids[fresh[1]], "purchase")], fresh[0], fresh[1]


def _as_topk(items: list[int], scores: list[float]) -> TopK:
    return TopK(np.array([0]), np.array([items], np.int64), np.array([scores], np.float32))


def _builder_list(world: dict, model: str, pos: int, viewed: int, bought: int) -> tuple[list[int], list[float], list]:
    audience = world["audience"]
    request = audience.request(pos, pos + 1)
    basket = sorted(set(request.basket.indices.tolist()) | {viewed, bought})
    exclude = sorted(set(request.exclude.indices.tolist()) | {bought})
    lists = (
        world["serving"]
        .builder(main=model)
        .build(Request.for_user(-1, world["serving"].n_items, basket=basket, exclude=exclude))
    )
    keep = lists.items[0] >= 0
    names = [lists.source_names[s] for s in lists.sources[0][keep]]
    return lists.items[0][keep].tolist(), lists.scores[0][keep].tolist(), names


def _bundle_list(world: dict, model: str, pos: int, events: list) -> tuple[list[int], list[float], list]:
    bundle = world["bundle"]
    user = world["audience"].user_ids[pos]
    got = bundle.recommend(user, K, events=events, model=model)
    col = {item: i for i, item in enumerate(bundle.item_ids)}
    return [col[r["item_id"]] for r in got], [r["score"] for r in got], [r["source"] for r in got]


@pytest.mark.parametrize("model", EVERYONE + TRAINED_STATE)
def test_new_events_rescore_exactly_like_the_list_builder(world: dict, model: str) -> None:
    positions = _users(world, known=False)
    if model in EVERYONE:
        positions += _users(world, known=True)
    assert len(positions) >= 10
    for seed, pos in enumerate(positions):
        events, viewed, bought = _events(world, pos, seed)
        got_items, got_scores, got_sources = _bundle_list(world, model, pos, events)
        want_items, want_scores, want_sources = _builder_list(world, model, pos, viewed, bought)
        assert len(got_items) == len(want_items) == K
        assert got_sources == want_sources, pos
        # the same arithmetic by another path (precomputed Y'Y, dense B rows, numpy vs torch):
        # equal up to float ties
        assert_same_top_k_up_to_ties(_as_topk(got_items, got_scores), _as_topk(want_items, want_scores), atol=1e-4)
        assert bought not in got_items


def test_lightfm_folds_the_new_items_into_the_trained_vector(world: dict) -> None:
    model = world["serving"].models["lfm"]
    bundle, audience = world["bundle"], world["audience"]
    scorer = bundle.scorer("lfm")
    assert scorer is not None and bundle.live["lfm"].kind == "lightfm"
    for seed, pos in enumerate(_users(world, known=True, n=5)):
        row = int(audience.rows[pos])
        _, viewed, bought = _events(world, pos, seed)
        fold = model.fold_in(_one_row([viewed, bought], model.n_items))[0]
        weight = float(model.user_counts_[row])
        user = (weight * model.user_repr_[row] + 2 * fold) / (weight + 2)
        want = user @ model.item_repr_.T + model.item_bias_ + model.user_bias_[row]
        b_row = bundle.user_positions.position(audience.user_ids[pos])
        got = scorer.scores(b_row, bundle.history_of(b_row), np.array([viewed, bought]))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # no new item: the trained scores, exactly what the nightly list was selected from
        same = scorer.scores(b_row, bundle.history_of(b_row), np.array([], np.int64))
        np.testing.assert_allclose(same, model.score(np.array([row]))[0], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not HAS_TORCH, reason="sasrec needs torch: pip install 'recctl[neural]'")
def test_sasrec_scores_the_trained_sequence_with_the_new_items_appended(world: dict) -> None:
    from recctl.models.sasrec import _pad_rows

    model = world["serving"].models["seq"]
    bundle, audience = world["bundle"], world["audience"]
    scorer = bundle.scorer("seq")
    assert scorer is not None
    for seed, pos in enumerate(_users(world, known=True, n=5) + _users(world, known=False, n=5)):
        row = int(audience.rows[pos])
        _, viewed, bought = _events(world, pos, seed)
        if row >= 0:  # the sequence the model scores this user from
            tail = _pad_rows(model.hist_indptr_, model.hist_items_, np.array([row]), model.config.max_len)[0]
            before = tail[tail > 0] - 1
        else:  # the history, as the list builder hands a basket to the model (index order)
            before = audience.history[pos].indices
        want = model.score_from_items(np.concatenate([before, [viewed, bought]]).astype(np.int64))
        b_row = bundle.user_positions.position(audience.user_ids[pos])
        got = scorer.scores(b_row, bundle.history_of(b_row), np.array([viewed, bought]))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # numpy forward vs torch


def test_views_stay_purchases_leave_and_no_events_is_the_nightly_list(world: dict) -> None:
    bundle, audience = world["bundle"], world["audience"]
    # the nightly list is the user's A/B variant's: take a user the control (knn) serves
    known = [audience.user_ids[p] for p in _users(world, known=True, n=200)]
    user = next(u for u, v in zip(known, assign_variants(known, world["cfg"].experiment), strict=True) if v == "knn")
    nightly = bundle.recommend(user, K, model="knn")
    assert bundle.recommend(user, K, events=[], model="knn") == nightly
    top = nightly[0]["item_id"]
    viewed = bundle.recommend(user, K, events=[(top, "view")], model="knn")
    bought = bundle.recommend(user, K, events=[(top, "purchase")], model="knn")
    assert top in [r["item_id"] for r in viewed]  # a view is no reason to hide it (exclude_events)
    assert top not in [r["item_id"] for r in bought] and len(bought) == K
    # an item the bundle does not know is neither scored nor shown; the list stays whole
    assert len(bundle.recommend(user, K, events=[("NO-SUCH-ITEM", "purchase")], model="knn")) == K
    # the cap holds in re-scored lists as in the file (rules.category_cap: 4 per category)
    codes = bundle.cap_codes
    assert codes is not None
    for variant, model in VARIANTS.items():
        got = bundle.recommend(user, K, events=[(top, "view")], model=model)
        counts = np.bincount([codes[bundle.item_positions.position(r["item_id"])] for r in got])
        assert counts.max() <= 4, variant


def test_a_bundle_without_live_arrays_answers_from_neighbours(world: dict, tmp_path: Path) -> None:
    src = world["cfg"].stage_dir("export") / "bundle"
    old = tmp_path / "bundle"
    shutil.copytree(src, old)
    meta = json.loads((old / "bundle.json").read_text())
    if isinstance(meta.get("neighbors"), dict):  # a version-2 bundle: the table stored, no live arrays
        table = load(src)
        assert table.neighbors is not None and table.neighbor_scores is not None
        for name, array in (
            ("item_neighbors.npy", table.neighbors),
            ("item_neighbor_scores.npy", table.neighbor_scores),
        ):
            np.save(old / name, array)
            meta["files"][name] = sha256_file(old / name)
        meta["version"], meta["neighbors"] = 2, None
    for name in [n for n in meta["files"] if n.startswith(("live", "history_"))]:
        (old / name).unlink()
        del meta["files"][name]
    meta["live"], meta["history"] = {}, None
    (old / "bundle.json").write_text(json.dumps(meta))
    bundle = load(old)
    user = world["audience"].user_ids[_users(world, known=True, n=1)[0]]
    nightly = bundle.recommend(user, K)
    viewed = nightly[0]["item_id"]
    got = bundle.recommend(user, K, events=[(viewed, "purchase")])
    assert len(got) == K and viewed not in [r["item_id"] for r in got]
    assert {r["source"] for r in got} <= {meta["neighbors_from"], "popular"}
    # without neighbours either (no model with item similarity): the nightly list minus the
    # purchase, the gap filled by the fallbacks, as the file would after excluding it
    for name in ("item_neighbors.npy", "item_neighbor_scores.npy"):
        (old / name).unlink()
        del meta["files"][name]
    (old / "bundle.json").write_text(json.dumps(meta))
    bare = load(old)
    assert bare.neighbors is None
    got = bare.recommend(user, K, events=[(viewed, "purchase")])
    rest = [r["item_id"] for r in nightly if r["item_id"] != viewed]
    assert len(got) == K and [r["item_id"] for r in got][: len(rest)] == rest
    assert bare.recommend(user, K, events=[(viewed, "purchase")]) == bare.recommend(user, K, exclude=[viewed])


def _one_row(items: list[int], n_items: int):  # noqa: ANN202 - a scipy matrix
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(len(items), np.float32), (np.zeros(len(items), np.int64), items)), shape=(1, n_items))
