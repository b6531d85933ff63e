"""A published sample shop whose A/B variants cover every model kind the bundle re-scores live.

Shared by the in-process tests of :mod:`recctl.lists.live` (tests/serving/test_live.py) and the
HTTP tests of the service (tests/service/test_live_http.py) through the session fixture
``live_shop`` (tests/conftest.py), so the pipeline runs once per session. Small models, few
epochs: the point is the scoring paths, not quality.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.conftest import write_config

#: sasrec trains through torch (the ``neural`` extra); without it the shop has no sequence variant
HAS_TORCH = importlib.util.find_spec("torch") is not None

#: A/B variant -> model name; every kind with a live scoring rule, plus popularity
VARIANTS = {
    "knn": "knn",
    "rp3": "rp3",
    "ease": "ease",
    "als": "als",
    "lfm": "lfm",
    "seq": "seq",
    "mix": "mix",
    "pop": "popular",
}

MODELS = {
    "popular": {"kind": "popularity"},
    "knn": {"kind": "item_knn", "neighbors": 50},
    "rp3": {"kind": "rp3beta", "neighbors": 50},
    "ease": {"kind": "ease", "l2": 100.0},
    "als": {"kind": "als", "factors": 16, "iterations": 5, "num_threads": 1},
    "lfm": {"kind": "lightfm", "no_components": 16, "epochs": 3, "num_threads": 1},
    "seq": {
        "kind": "sasrec",
        "epochs": 1,
        "hidden_size": 8,
        "n_heads": 1,
        "n_blocks": 1,
        "max_len": 8,
        "batch_size": 256,
        "windows": "latest",
    },
    "mix": {
        "kind": "blend",
        "components": [
            {"weight": 0.6, "model": {"kind": "item_knn", "neighbors": 20}},
            {
                "weight": 0.4,
                "min_history": 3,
                "model": {"kind": "als", "factors": 8, "iterations": 3, "num_threads": 1},
            },
        ],
    },
}

if not HAS_TORCH:
    del VARIANTS["seq"], MODELS["seq"]

K = 8


def live_shop_config(base: Path, **serve: object) -> Path:
    """The config (workdir ``base/work``): kNN main, popularity fallback, purchases excluded, a cap."""
    return write_config(
        base,
        models=MODELS,
        recommend={
            "model": "knn",
            "k": K,
            "fallback": ["popular"],
            "min_score": 0.0,
            # models fit once, on the training split: users whose events all fall in the test
            # window are then unknown to the models but have a history (the builder's basket path)
            "refit_on_all_data": False,
            "rules": {
                "exclude_events": ["purchase"],
                "in_stock_column": "in_stock",
                "category_cap": {"column": "category", "max_per_list": 4},
            },
        },
        evaluate=None,
        tune=None,
        experiment={
            "name": "live-kinds",
            "salt": "live-salt",
            "control": "knn",
            "variants": {v: {"model": m, "weight": 1} for v, m in VARIANTS.items()},
        },
        serve={"reload_interval_s": 0, **serve},
    )


def build_live_shop(base: Path) -> Path:
    """Run ingest .. serve-export on the sample shop; return the config."""
    from recctl.config import load_config
    from recctl.stages.export import run_serve_export
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from recctl.stages.recommend import run_recommend
    from recctl.stages.train import run_train

    config = live_shop_config(base)
    cfg = load_config(config)
    run_ingest(cfg)
    run_preprocess(cfg)
    run_train(cfg)
    run_recommend(cfg)
    run_serve_export(cfg, date="2026-04-01")
    return config
