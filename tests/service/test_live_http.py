"""Events reflected at once over HTTP, for every model kind the bundle re-scores (issue 17).

The shop of tests/live_shop.py has one A/B variant per model kind. For a user of each variant
(and a new id), a view and a purchase are posted to the running service; the next list must be
exactly what the bundle's one list path gives in-process for those events and that variant's
model (tests/serving/test_live.py pins that path to the list builder and the models), with the
purchased item gone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from recctl.abtest.assign import assign_variants
from recctl.config import load_config
from recctl.serving import load
from tests.live_shop import VARIANTS, K, live_shop_config
from tests.service.conftest import Service

pytestmark = pytest.mark.slow


@pytest.fixture
def shop(live_shop: Path, tmp_path: Path) -> Path:
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'recctl[serve]'")
    shutil.copytree(live_shop.parent / "work", tmp_path / "work", symlinks=True)
    return live_shop_config(tmp_path)


def test_every_model_kind_reflects_a_view_and_a_purchase_at_once(shop: Path) -> None:
    cfg = load_config(shop)
    bundle = load(cfg.stage_dir("export") / "bundle")
    users = bundle.user_ids
    variants = dict(zip(users, assign_variants(users, cfg.experiment), strict=True))
    new_ids = [f"NEW-{i}" for i in range(200)]
    new_variants = dict(zip(new_ids, assign_variants(new_ids, cfg.experiment), strict=True))
    service = Service(shop).start()
    try:
        for variant, model in VARIANTS.items():
            user = next(u for u in users if variants[u] == variant and len(bundle.recommend(u, K)) == K)
            newcomer = next(u for u in new_ids if new_variants[u] == variant)
            for who in (user, newcomer):
                before = [r["item_id"] for r in service.get(f"/v1/recommendations?user_id={quote(who)}")["items"]]
                row = bundle.user_positions.position(who)
                seen = set(bundle.history_of(row).tolist()) if row >= 0 else set()
                viewed = next(
                    i for i in bundle.item_ids if bundle.item_positions.position(i) not in seen and i not in before
                )
                events = [
                    {"user_id": who, "item_id": viewed, "event": "view", "timestamp": "2026-12-04T10:00:00Z"},
                    {"user_id": who, "item_id": before[0], "event": "purchase", "timestamp": "2026-12-04T10:01:00Z"},
                ]
                assert service.post_events(events)["accepted"] == 2
                after = service.get(f"/v1/recommendations?user_id={quote(who)}")
                assert after["variant"] == variant and after["events_since_bundle"] == 2
                items = [r["item_id"] for r in after["items"]]
                assert len(items) == K and before[0] not in items, (variant, who)
                expected = bundle.recommend(who, K, events=[(viewed, "view"), (before[0], "purchase")], model=model)
                assert items == [r["item_id"] for r in expected], (variant, who)
                assert [r["source"] for r in after["items"]] == [r["source"] for r in expected]
    finally:
        service.stop()
