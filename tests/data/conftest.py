"""Fixtures for the data-layer tests: tiny raw files and configs pointing at them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from recctl.config import Config, config_from_dict
from recctl.data.sample import interactions_source

EVENTS_HEADER = "customer_id,product_id,event_type,event_time,quantity\n"


def _raw_config(tmp_path: Path, interactions: dict[str, Any], **sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "workdir": str(tmp_path / "work"),
        "seed": 7,
        "data": {"interactions": interactions},
        "models": {"popular": {"kind": "popularity"}},
    }
    for key, value in sections.items():
        if key in ("items", "users"):
            raw["data"][key] = value
        else:
            raw[key] = value
    return raw


def make_config(tmp_path: Path, interactions: dict[str, Any], **sections: Any) -> Config:
    """A validated config with a popularity model, its workdir inside ``tmp_path``."""
    raw = _raw_config(tmp_path, interactions, **sections)
    return config_from_dict(raw, base_dir=tmp_path, source=str(tmp_path / "config.yaml"))


def write_yaml(tmp_path: Path, interactions: dict[str, Any], **sections: Any) -> Path:
    """Write a config file (for CLI tests) and return its path."""
    make_config(tmp_path, interactions, **sections)  # validate first
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_raw_config(tmp_path, interactions, **sections)), encoding="utf-8")
    return path


def shop_source(path: str = "events.csv", **extra: Any) -> dict[str, Any]:
    """The interaction source of the sample shop's column layout."""
    return interactions_source(path, **extra)


@pytest.fixture
def events_csv(tmp_path: Path) -> Path:
    """12 raw rows: 8 good (one an exact duplicate), 4 bad in different ways."""
    rows = [
        "u1,i1,view,2026-01-01 10:00:00,1",
        "u1,i2,purchase,2026-01-02 10:00:00,2",
        "u2,i1,view,2026-01-03 10:00:00,1",
        ",i1,view,2026-01-03 11:00:00,1",  # missing user
        "u2,i3,add_to_cart,2026-01-04 10:00:00,1",
        "u2,i3,add_to_cart,2026-01-04 10:00:00,1",  # exact duplicate
        "u3,i2,view,not a time,1",  # bad timestamp
        "u3,i2,wishlist,2026-01-05 10:00:00,1",  # unknown event
        "u3,i4,view,2026-01-05 11:00:00,lots",  # non-numeric value
        "u3,i1,purchase,2026-01-06 10:00:00,1",
        "u4,i2,view,2026-01-07 10:00:00,1",
        "u4,i9,view,2026-01-07 11:00:00,1",  # item not in catalogue
    ]
    path = tmp_path / "events.csv"
    path.write_text(EVENTS_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def products_csv(tmp_path: Path) -> Path:
    """A catalogue of 5 items; i5 has no interactions, i9 (interacted) is missing."""
    path = tmp_path / "products.csv"
    path.write_text(
        "product_id,title,category,price\n"
        "i1,Red mug,kitchen,5.5\n"
        "i2,Blue mug,kitchen,6.0\n"
        "i3,Garden hose,garden,20\n"
        "i4,Tent,outdoor,99.9\n"
        "i5,Kite,toys,12\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated shop (150 customers, 80 products) in the sample's layout."""
    from recctl.data.sample import SampleSizes, generate_sample

    out = tmp_path_factory.mktemp("shop")
    generate_sample(out, seed=1, sizes=SampleSizes(n_users=150, n_items=80, n_brands=10))
    return out
