"""Data problems are loud: reject-rate limit with fixes, warnings, locale-aware reading, config preflight.

Most cases use a German shop's export made up from the sample shop (tests/data/german_shop.py):
``;``-separated cp1252 text, ``dd.mm.yyyy HH:MM`` times, decimal commas, ``ja``/``nein``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from recctl.config import config_from_dict
from recctl.data.features import build_features, item_feature_spec
from recctl.errors import ConfigError, DataError
from recctl.stages.ingest import run_ingest

from .conftest import EVENTS_HEADER, make_config, shop_source
from .german_shop import german_config, write_german_shop


def _german(tmp_path: Path, n_events: int = 2_000, **sections) -> tuple[dict, dict]:
    paths = write_german_shop(tmp_path / "export", n_events)
    data = german_config(paths, **sections.pop("data", {}))
    raw = {
        "workdir": str(tmp_path / "work"),
        "data": data,
        "preprocess": {"features": {"item_numeric_buckets": {"price": 4}, "item_text": ["title"]}},
        "models": {"popular": {"kind": "popularity"}},
        "recommend": {"model": "popular", "rules": {"in_stock_column": "in_stock", "require_price": True}},
        **sections,
    }
    return raw, paths


def _cfg(tmp_path: Path, raw: dict):
    return config_from_dict(raw, base_dir=tmp_path, source=str(tmp_path / "config.yaml"))


def test_german_export_reads_with_its_locale(tmp_path: Path) -> None:
    raw, _ = _german(tmp_path)
    manifest = run_ingest(_cfg(tmp_path, raw))
    files = manifest.summary["files"][0]
    # dd.mm.yyyy times parse under `auto`
    assert files["rejected_by_reason"] == {} and files["accepted"] == 2_000
    assert manifest.summary["warnings"] == []
    events = pl.read_parquet(tmp_path / "work" / "ingest" / "interactions.parquet")
    assert events["value"].min() == 1.0  # "1,0" with decimal_comma
    items = pl.read_parquet(tmp_path / "work" / "ingest" / "items.parquet")
    assert items.schema["price"] == pl.Float64 and items["price"].max() > 1
    assert items.schema["in_stock"] == pl.Boolean  # ja / nein
    assert 0 < (~items["in_stock"]).sum() < items.height
    assert items.filter(pl.col("title").str.contains("Größe")).height > 0  # cp1252 umlauts and ß kept


def test_text_features_keep_unicode_words(tmp_path: Path) -> None:
    items = pl.DataFrame({"title": ["Größe M Socken", "Größe L Socken", "Платье красное", "Платье синее"]})
    spec = item_feature_spec(config_from_dict(_german(tmp_path)[0], base_dir=tmp_path).preprocess.features)
    matrix, names = build_features(items, [s for s in spec if s[0] == "text"], key="preprocess.features", min_df=2)
    assert {"title:größe", "title:socken", "title:платье"} <= set(names["feature"].to_list())
    assert matrix.shape[0] == 4 and (matrix.getnnz(axis=1) > 0).all()  # the Russian rows get features too


def test_reject_rate_limit_fails_with_reasons_samples_and_fix(tmp_path: Path) -> None:
    # 5,000 rows include the sample shop's row without a customer, so not every row fails the same way
    raw, paths = _german(tmp_path, n_events=5_000)
    # the same shop exporting month-first US times with AM/PM: nothing parses under auto
    events = pl.read_csv(paths["events"], separator=";", encoding="cp1252", infer_schema=False)
    us = events.with_columns(
        pl.col("Zeitpunkt").str.to_datetime("%d.%m.%Y %H:%M").dt.strftime("%m/%d/%Y %I:%M %p")
    ).write_csv(separator=";")
    paths["events"].write_bytes(us.encode("cp1252"))
    with pytest.raises(DataError) as info:
        run_ingest(_cfg(tmp_path, raw))
    message = str(info.value)
    assert info.value.exit_code == 4
    assert "bestellungen.csv: 5,000 of 5,000 rows (100%) could not be read" in message
    assert "data.interactions.max_reject_rate (50%)" in message
    assert "bad_timestamp: 4,999 rows (first: row 1), column 'Zeitpunkt', e.g. '01/01/2026 12:02 AM'" in message
    assert "missing_user_id: 1 row (first: row 4825), column 'Kundennummer'" in message
    assert 'set `data.interactions.timestamp_format: "%m/%d/%Y %I:%M %p"`' in message
    assert not (tmp_path / "work" / "ingest").exists()  # nothing written
    raw["data"]["interactions"]["timestamp_format"] = "%m/%d/%Y %I:%M %p"
    assert run_ingest(_cfg(tmp_path, raw)).summary["totals"]["accepted"] == 4_999


def test_reject_rate_counts_parse_failures_only_and_can_be_turned_off(tmp_path: Path) -> None:
    rows = [f"u{i},i{i % 3},view,2026-01-0{1 + i % 9} 10:00:00,{-1 if i % 4 else 1}" for i in range(40)]
    rows += [f"u{i},i1,view,yesterday,1" for i in range(40, 50)]  # 10 of 50 unreadable (20%)
    (tmp_path / "events.csv").write_text(EVENTS_HEADER + "\n".join(rows) + "\n")
    cancel = {"cancellations": {"negative_value": True}}
    # 30 cancelled rows (60%) are the config doing its job: they do not count
    manifest = run_ingest(make_config(tmp_path, shop_source(**cancel)))
    assert manifest.summary["files"][0]["rejected_by_reason"] == {"bad_timestamp": 10, "cancelled": 30}
    expected = r"10 of 50 rows \(20%\) could not be read, more than .*max_reject_rate \(10%\)"
    with pytest.raises(DataError, match=expected):
        run_ingest(make_config(tmp_path, shop_source(max_reject_rate=0.1, **cancel)))
    unlimited = run_ingest(make_config(tmp_path, shop_source(max_reject_rate=None, **cancel)))
    assert unlimited.summary["totals"]["read"] == 50


def test_negative_values_without_a_cancellation_rule_are_warned_about(tmp_path: Path, caplog) -> None:
    rows = ["u1,i1,purchase,2026-01-01 10:00:00,3", "u1,i2,purchase,2026-01-02 10:00:00,-3"]
    (tmp_path / "events.csv").write_text(EVENTS_HEADER + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="recctl"):
        warned = run_ingest(make_config(tmp_path, shop_source())).summary["warnings"]
    assert len(warned) == 1 and "1 accepted rows have a negative value ('quantity')" in warned[0]
    assert "data.interactions.cancellations: {negative_value: true}" in warned[0]
    assert warned[0] in caplog.text
    ruled = run_ingest(make_config(tmp_path, shop_source(cancellations={"negative_value": True})))
    assert ruled.summary["warnings"] == []


def test_decimal_comma_prices_without_the_setting_are_warned_about(tmp_path: Path, caplog) -> None:
    raw, _ = _german(tmp_path, data={"items": {"decimal_comma": False}})
    warned = run_ingest(_cfg(tmp_path, raw)).summary["warnings"]
    assert any("data.items: column 'price' holds decimal-comma numbers" in w for w in warned)
    assert any("`data.items.decimal_comma: true`" in w for w in warned)
    items = pl.read_parquet(tmp_path / "work" / "ingest" / "items.parquet")
    with caplog.at_level(logging.WARNING, logger="recctl"):
        build_features(items, [("numeric", "price", 4)], key="preprocess.features")
    assert "preprocess.features.item_numeric_buckets.price: 1,000 of 1,000 values are not numbers" in caplog.text
    assert "decimal comma" in caplog.text


def test_unknown_flag_words_are_warned_about_and_shop_words_configurable(tmp_path: Path, caplog) -> None:
    from recctl.rules import _truthy

    values = pl.Series(["ja", "nein", "vorrätig", "ausverkauft", "bald", None, "NEIN"])
    with caplog.at_level(logging.WARNING, logger="recctl"):
        in_stock = _truthy(values)
    assert in_stock.tolist() == [True, False, True, False, True, True, False]
    assert "'bald'" in caplog.text and "data.items.true_values" in caplog.text
    raw, paths = _german(tmp_path)
    artikel = paths["items"].read_bytes().decode("cp1252").replace(";ja\n", ";lieferbar ab Lager\n")
    paths["items"].write_bytes(artikel.encode("cp1252"))
    run_ingest(_cfg(tmp_path, raw))
    assert pl.read_parquet(tmp_path / "work" / "ingest" / "items.parquet").schema["in_stock"] == pl.String
    raw["data"]["items"]["true_values"] = ["lieferbar ab Lager"]
    run_ingest(_cfg(tmp_path, raw))
    assert pl.read_parquet(tmp_path / "work" / "ingest" / "items.parquet").schema["in_stock"] == pl.Boolean


def test_encoding_and_quote_char_errors_name_the_setting(tmp_path: Path) -> None:
    raw, _ = _german(tmp_path, data={"items": {"encoding": "utf8"}})
    with pytest.raises(DataError, match=r"artikel.csv: not valid UTF-8 at line 2 .*`data.items.encoding: cp1252`"):
        run_ingest(_cfg(tmp_path, raw))
    (tmp_path / "events.csv").write_text(
        'user,item,time,artist\nu1,i1,2026-01-01,"Weird Al" Yankovic\nu2,i2,2026-01-02,Queen\n'
    )
    source = {"path": "events.csv", "columns": {"user_id": "user", "item_id": "artist", "timestamp": "time"}}
    with pytest.raises(DataError) as info:
        run_ingest(make_config(tmp_path, source))
    assert "events.csv at line 2: column 'artist' holds '\"Weird Al\" Yankovic'" in str(info.value)
    assert "`data.interactions.quote_char: null`" in str(info.value)


def test_config_is_checked_against_headers_before_any_work(tmp_path: Path) -> None:
    raw, _ = _german(tmp_path)
    raw["recommend"]["rules"]["in_stock_column"] = "in_stok"
    raw["preprocess"]["features"]["item_categorical"] = ["kategorie"]
    with pytest.raises(ConfigError) as info:
        run_ingest(_cfg(tmp_path, raw))
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and info.value.exit_code == 3
    assert "config.yaml: recommend.rules.in_stock_column: column 'in_stok' is not in the ingested catalogue" in lines[1]
    assert "(did you mean 'in_stock'?)" in lines[1]
    assert "preprocess.features.item_categorical.0: column 'kategorie'" in lines[0]
    assert not (tmp_path / "work" / "ingest").exists()
    # a raw column missing from the catalogue file is a data error (exit 4), listed with the rest
    raw, _ = _german(tmp_path)
    raw["data"]["items"]["columns"]["price"] = "Preis_EUR"
    with pytest.raises(DataError, match=r"artikel.csv: column 'Preis_EUR' \(mapped by data.items.columns.price\)"):
        run_ingest(_cfg(tmp_path, raw))


def test_run_checks_the_config_even_when_ingest_is_up_to_date(tmp_path: Path) -> None:
    from recctl.pipeline import run_all

    raw, _ = _german(tmp_path)
    run_ingest(_cfg(tmp_path, raw))
    raw["models"]["by_category"] = {"kind": "popularity", "mode": "category", "category_column": "categry"}
    with pytest.raises(ConfigError, match=r"models.by_category.category_column: column 'categry'"):
        run_all(_cfg(tmp_path, raw))
