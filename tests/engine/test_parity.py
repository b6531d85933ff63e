"""The same config on the local engine and on Spark (local mode) gives the same outputs, row for row.

One run of the whole pipeline per engine (the session fixture ``runs``); each test compares one stage. This is
the drift guard of the shared definitions: row accounting and reject reasons (ingest), filters,
id maps and splits (preprocess), lists built by the list builder on executors (recommend) and
the metrics of users ranked on executors (evaluate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.engine.conftest import LOCAL_ENGINE, needs_spark

pytestmark = [needs_spark, pytest.mark.slow]


def _manifest(workdir: Path, stage: str) -> dict[str, Any]:
    return json.loads((workdir / stage / "manifest.json").read_text())


def _same_parquet(local: Path, spark: Path) -> None:
    a, b = pl.read_parquet(local), pl.read_parquet(spark)
    assert a.schema == b.schema, local.name
    assert a.height == b.height, local.name
    assert a.equals(b), f"{local.name} differs between the engines"


def test_ingest_same_rows_rejects_and_accounting(runs: dict[str, Path]) -> None:
    for name in ("interactions.parquet", "rejected.parquet", "items.parquet", "users.parquet"):
        _same_parquet(runs["local"] / "ingest" / name, runs["spark"] / "ingest" / name)
    local, spark = _manifest(runs["local"], "ingest"), _manifest(runs["spark"], "ingest")
    for key in ("files", "totals", "rejected_by_reason", "events", "catalogue", "tables"):
        assert local["summary"][key] == spark["summary"][key], key
    totals = spark["summary"]["totals"]
    assert totals["read"] == totals["accepted"] + totals["rejected"]
    assert totals["rejected"] > 0 and totals["duplicates"] > 0  # the sample exercises both
    assert spark["summary"]["engine"]["kind"] == "spark"
    assert spark["summary"]["deduplication"]["method"] == "spark_window"


def test_preprocess_same_filters_id_maps_and_splits(runs: dict[str, Path]) -> None:
    names = sorted(p.name for p in (runs["local"] / "preprocess").glob("*.parquet"))
    assert {"events.parquet", "users.parquet", "items.parquet", "train.parquet", "test.parquet"} <= set(names)
    for name in names:
        _same_parquet(runs["local"] / "preprocess" / name, runs["spark"] / "preprocess" / name)
    local, spark = _manifest(runs["local"], "preprocess"), _manifest(runs["spark"], "preprocess")
    for key in ("filter", "split", "weights", "n_users", "n_items", "split_rows"):
        assert local["summary"][key] == spark["summary"][key], key


def test_recommend_on_executors_same_lists(runs: dict[str, Path]) -> None:
    local = pl.read_parquet(runs["local"] / "recommend" / "recommendations.parquet")
    spark = pl.read_parquet(runs["spark"] / "recommend" / "recommendations.parquet")
    assert local.schema == spark.schema
    # same users, ranks and items; scores from separately trained (seeded) models agree closely
    assert local.select("user_id", "rank", "item_id", "source").equals(
        spark.select("user_id", "rank", "item_id", "source")
    )
    assert (local["score"] - spark["score"]).abs().max() < 1e-4
    per_user = spark.group_by("user_id").len()
    assert per_user["len"].min() == per_user["len"].max() == 10  # exactly K
    summary = _manifest(runs["spark"], "recommend")["summary"]
    assert summary["n_short_lists"] == 0
    assert summary["rows_by_source"] == _manifest(runs["local"], "recommend")["summary"]["rows_by_source"]


def test_evaluate_on_executors_same_metrics(runs: dict[str, Path]) -> None:
    local = json.loads((runs["local"] / "evaluate" / "metrics.json").read_text())
    spark = json.loads((runs["spark"] / "evaluate" / "metrics.json").read_text())
    assert local.keys() == spark.keys()
    for model, means in local["models"].items() if "models" in local else []:
        for metric, value in means.items() if isinstance(means, dict) else []:
            other = spark["models"][model][metric]
            if isinstance(value, float):
                assert other == pytest.approx(value, rel=1e-6, abs=1e-9), (model, metric)
    _same_parquet(runs["local"] / "evaluate" / "per_user.parquet", runs["spark"] / "evaluate" / "per_user.parquet")


def test_export_published_and_identical(runs: dict[str, Path]) -> None:
    def rows(workdir: Path) -> pl.DataFrame:
        pointer = json.loads(next((workdir.parent / "exports").glob("recs_latest.json")).read_text())
        return pl.read_csv(workdir.parent / "exports" / pointer["file"], infer_schema=False)

    local, spark = rows(runs["local"]), rows(runs["spark"])
    assert local.drop("generated_at", "score").equals(spark.drop("generated_at", "score"))
    diff = local["score"].cast(pl.Float64) - spark["score"].cast(pl.Float64)
    assert diff.abs().max() < 1e-4


def test_dirty_rows_same_reasons_rows_and_raw_values(spark: object, tmp_path: Path) -> None:
    # empty ids, a bad time, an unknown event, a non-numeric value, a duplicate; rows numbered in the file
    lines = [
        "customer_id,product_id,event_type,event_time,quantity",
        "C1,P1,view,2026-01-01 10:00:00,1",
        ",P2,view,2026-01-01 10:00:01,1",
        "C2,,purchase,2026-01-01 10:00:02,2",
        "C3,P3,view,not a time,1",
        "C4,P4,teleport,2026-01-01 10:00:04,1",
        "C5,P5,view,2026-01-01 10:00:05,lots",
        "C1,P1,view,2026-01-01 10:00:00,1",
        '" C6 ",P6,add_to_cart,2026-01-01 10:00:06,',
    ]
    csv = tmp_path / "dirty.csv"
    csv.write_text("\n".join(lines) + "\n")
    outputs = _ingest_on_both_engines(tmp_path, str(csv))
    assert pl.read_parquet(outputs["spark"] / "rejected.parquet").height == 5


def _ingest_on_both_engines(tmp_path: Path, path: str, **source: Any) -> dict[str, Path]:
    """Ingest ``path`` (the sample's layout) on each engine; the summaries must agree; the ingest folders."""
    from recctl.config import config_from_dict
    from recctl.data.sample import interactions_source
    from recctl.stages.ingest import run_ingest

    outputs, summaries = {}, {}
    for name, engine in (("local", None), ("spark", LOCAL_ENGINE)):
        raw: dict = {
            "workdir": str(tmp_path / name),
            "data": {"interactions": {**interactions_source(path, max_reject_rate=None), **source}},
            "models": {"popular": {"kind": "popularity"}},
        }
        if engine is not None:
            raw["engine"] = engine
        manifest = run_ingest(config_from_dict(raw, base_dir=tmp_path))
        summaries[name], outputs[name] = manifest.summary["files"], tmp_path / name / "ingest"
    assert summaries["local"] == summaries["spark"]
    for file in ("interactions.parquet", "rejected.parquet"):
        _same_parquet(outputs["local"] / file, outputs["spark"] / file)
    return outputs


def test_utf16_file_read_as_the_local_engine_reads_it(spark: object, tmp_path: Path) -> None:
    # Excel's "Unicode text": UTF-16 with a byte-order mark, CRLF; a blank line, quoting, ids
    # beyond ASCII, a bad row; Spark's own reader would cut lines inside characters (a quoted
    # line break in a CRLF file differs as in UTF-8: docs/spark.md)
    lines = [
        "customer_id,product_id,event_type,event_time,quantity",
        "Crème,Pü1,view,2026-01-01 10:00:00,1",
        "",
        "C2,P2,purchase,not a time,1",
        '"C3 ""Zoë""","P3, big",view,2026-01-01 10:00:02,2',
        "客户4,P4,add_to_cart,2026-01-01 10:00:03,1",
    ]
    path = tmp_path / "unicode.csv"
    path.write_bytes("\r\n".join(lines + [""]).encode("utf-16"))
    outputs = _ingest_on_both_engines(tmp_path, str(path), encoding="utf16")
    users = pl.read_parquet(outputs["spark"] / "interactions.parquet")["user_id"].to_list()
    assert users == ["Crème", 'C3 "Zoë"', "客户4"]
    rejected = pl.read_parquet(outputs["spark"] / "rejected.parquet")
    assert rejected.select("row", "reason").rows() == [(2, "empty_row"), (3, "bad_timestamp")]

    # the same file under `encoding: utf8`, as a URI (no local preflight): refused naming the file and the fix
    from recctl.config import config_from_dict
    from recctl.data.sample import interactions_source
    from recctl.errors import DataError
    from recctl.stages.ingest import run_ingest

    raw = {
        "workdir": str(tmp_path / "utf8"),
        "engine": LOCAL_ENGINE,
        "data": {"interactions": interactions_source(path.as_uri())},
        "models": {"popular": {"kind": "popularity"}},
    }
    with pytest.raises(DataError, match=r"UTF-16.*data\.interactions\.encoding: utf16") as err:
        run_ingest(config_from_dict(raw, base_dir=tmp_path))
    assert err.value.exit_code == 4 and path.as_uri() in str(err.value)


def test_blank_lines_and_quoted_line_breaks_read_as_the_local_engine_reads_them(spark: object, tmp_path: Path) -> None:
    # Spark's CSV reader drops blank lines and cuts quoted line breaks; the local engine reads a
    # blank line as a row (empty_row, or its one whitespace field) and a quoted break as text
    head = "customer_id,product_id,event_type,event_time,quantity"
    # file 1 (CRLF): over 1 MB (a long unmapped column), so Spark reads it as two splits, with
    # blank and whitespace lines in both
    note = "n" * 250
    rows = [
        f"C{i % 97},P{i % 89},view,2026-01-01 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},1,{note}"
        for i in range(5_000)
    ]
    for at, blank in ((5, ""), (6, ""), (1_000, "   "), (2_500, ""), (4_500, " \t "), (4_990, ",,,,,")):
        rows.insert(at, blank)
    big = tmp_path / "gaps-1.csv"
    big.write_text("\r\n".join([f"{head},note", *rows, "", ""]), newline="")
    assert big.stat().st_size > 1.2 * 2**20  # LOCAL_ENGINE reads 1 MB splits
    # file 2: quoted fields holding line breaks (one over a blank line): read with multiLine
    quoted = [
        head,
        "C1,P1,view,2026-01-01 10:00:00,1",
        "   ",
        '"C2","P2',
        "",
        'Y",view,2026-01-01 10:00:01,1',
        "",
        '"C3","P3 ""big""",view,2026-01-01 10:00:02,"1"',
        '"C4 line',
        'two",P4,purchase,2026-01-01 10:00:03,1',
        "C1,P1,view,2026-01-01 10:00:00,1",
    ]
    (tmp_path / "gaps-2.csv").write_text("\n".join(quoted) + "\n")
    outputs = _ingest_on_both_engines(tmp_path, str(tmp_path / "gaps-*.csv"))
    rejected = pl.read_parquet(outputs["spark"] / "rejected.parquet")
    first = rejected.filter(pl.col("source").str.ends_with("gaps-1.csv"))
    # the blank rows keep their place (the trailing blank line too): later rows keep the file's numbers
    assert first.filter(pl.col("reason") == "empty_row")["row"].to_list() == [6, 7, 2_501, 4_991, 5_007]
    assert first.filter(pl.col("reason") == "missing_user_id")["row"].to_list() == [1_001, 4_501]
    second = rejected.filter(pl.col("source").str.ends_with("gaps-2.csv"))
    assert second.select("row", "reason").rows() == [
        (2, "missing_user_id"),
        (3, "bad_item_id"),
        (4, "empty_row"),
        (6, "bad_user_id"),
    ]
    assert "P2\n\nY" in second["value"].to_list()  # one field over three lines
    assert "C3" in pl.read_parquet(outputs["spark"] / "interactions.parquet")["user_id"].to_list()
