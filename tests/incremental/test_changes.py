"""The cheap new-item scores used by --changed-since match the models' full scores."""

from __future__ import annotations

import numpy as np
import pytest

from recctl.errors import DataError
from recctl.incremental.changes import _parse_since, new_item_scores
from recctl.models.item_knn import ItemKNNModel
from recctl.models.lightfm_model import LightFMModel
from recctl.models.popularity import PopularityModel


@pytest.mark.parametrize(
    "model",
    [
        LightFMModel(no_components=8, epochs=3, random_state=0),
        ItemKNNModel(neighbors=10),
        PopularityModel(),
    ],
)
def test_new_item_scores_match_full_scoring(shop, make_dataset, model) -> None:
    model.fit(make_dataset(shop["x"], shop["item_features"]))
    users, new = np.arange(0, 400, 7), np.array([3, 50, 119])
    np.testing.assert_allclose(new_item_scores(model, users, new), model.score(users)[:, new], rtol=1e-5, atol=1e-6)


def test_changed_since_accepts_iso_times_and_refuses_the_rest() -> None:
    assert _parse_since("2026-05-01").tzinfo is not None
    assert _parse_since("2026-05-01T06:00:00Z").hour == 6
    with pytest.raises(DataError, match="ISO date"):
        _parse_since("yesterday")
