"""Export formats, validation before publishing, the latest pointer, formula neutralisation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recctl.columns import Columns
from recctl.config.recommend import ExportConfig
from recctl.errors import ExportValidationError
from recctl.export import (
    ExportExpectations,
    long_rows,
    neutralise_formulas,
    prune_old,
    publish,
    read_export,
    sort_rows,
    validate_export,
    write_export,
)

K = 3
USERS = ["u1", "=cmd|' /C calc'!A0", "u3"]
ITEMS = ["p0", "p1", "+p2", "@p3", "-p4", "\tp5"]


def recs(users: list[str] = USERS, *, variant: bool = False) -> pl.DataFrame:
    rows = []
    for ui, u in enumerate(users):
        for r in range(K):
            rows.append(
                {
                    Columns.User: u,
                    Columns.Rank: r + 1,
                    Columns.Item: ITEMS[(ui + r) % len(ITEMS)],
                    Columns.Score: np.float32(1.0 - r * 0.25 - ui / 10),
                    Columns.Model: "m",
                    Columns.Source: "m",
                }
            )
    frame = pl.DataFrame(rows).with_columns(pl.col(Columns.Rank).cast(pl.Int32), pl.col(Columns.Score).cast(pl.Float32))
    if variant:
        frame = frame.with_columns(pl.lit("a").alias(Columns.Variant))
    return frame


def expect(**kw: object) -> ExportExpectations:
    base = {
        "k": K,
        "users": np.array(USERS, dtype=object),
        "user_ids": np.array(USERS + ["\tu4"], dtype=object),
        "item_ids": np.array(ITEMS, dtype=object),
    }
    base.update(kw)
    return ExportExpectations(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["csv", "csv_wide", "jsonl", "parquet"])
@pytest.mark.parametrize("variant", [False, True])
def test_formats_round_trip_and_validate(tmp_path: Path, fmt: str, variant: bool) -> None:
    cfg = ExportConfig(format=fmt)
    path = tmp_path / f"out.{fmt}"
    n = write_export(recs(variant=variant), path, cfg, k=K, generated_at="2026-01-02T03:04:05Z")
    assert n == (9 if fmt in ("csv", "parquet") else 3)
    report = validate_export(path, fmt, expect(with_variant=variant))
    assert report.ok, report.problems
    if fmt in ("csv", "parquet"):  # what publish does: the rows it wrote, and the file by bytes
        written = long_rows(recs(variant=variant), cfg, "2026-01-02T03:04:05Z")
        same = validate_export(path, fmt, expect(with_variant=variant), written=written)
        assert same == report
        rows = long_rows(recs(variant=variant), cfg)  # as publish does: no generated_at column
        assert Columns.GeneratedAt not in rows.columns
        stamp = "2026-01-02T03:04:05Z"
        assert validate_export(path, fmt, expect(with_variant=variant), written=rows, generated_at=stamp) == report
    back = read_export(path, fmt).with_columns(
        pl.col(Columns.Rank).cast(pl.Int32), pl.col(Columns.Score).cast(pl.Float64)
    )
    got = back.sort(Columns.User, Columns.Rank).select(Columns.User, Columns.Rank, Columns.Item).rows()
    want = recs().sort(Columns.User, Columns.Rank).select(Columns.User, Columns.Rank, Columns.Item).rows()
    assert got == want  # ids come back unchanged, including the formula-looking ones
    assert np.allclose(
        back.sort(Columns.User, Columns.Rank)[Columns.Score].to_numpy(),
        recs().sort(Columns.User, Columns.Rank)[Columns.Score].to_numpy(),
        atol=1e-6,
    )


def test_long_csv_contract_header_order_and_neutralised_cells(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    users = USERS + ["\tu4"]
    write_export(recs(users), path, ExportConfig(), k=K, generated_at="2026-01-02T03:04:05Z")
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id,rank,item_id,score,model,generated_at,source"
    cells = [line.split(",") for line in lines[1:]]
    for row in cells:
        for cell in row[:3] + row[4:]:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    # sorted by user id (byte order of the real ids), then rank
    assert [(c[0], c[1]) for c in cells][:4] == [
        ("'\tu4", "1"),
        ("'\tu4", "2"),
        ("'\tu4", "3"),
        ("'=cmd|' /C calc'!A0", "1"),
    ]
    assert {c[2] for c in cells} >= {"'+p2", "'@p3", "'-p4"}
    assert cells[0][3] == "0.700000" and cells[0][5] == "2026-01-02T03:04:05Z"


def test_neutralise_formulas_leaves_plain_text() -> None:
    frame = pl.DataFrame({Columns.Item: ["=1", "a=1", "ok", "\rx", None]})
    assert neutralise_formulas(frame)[Columns.Item].to_list() == ["'=1", "a=1", "ok", "'\rx", None]


@pytest.mark.parametrize(
    ("frame", "exp", "message"),
    [
        (recs().filter(pl.col(Columns.User) != "u3"), {}, "1 expected user(s) are missing"),
        (recs().filter(pl.col(Columns.Rank) != 3), {}, "do not have exactly 3 unique items"),
        (recs().with_columns(pl.lit("p0").alias(Columns.Item)), {}, "do not have exactly 3 unique items"),
        (recs(USERS + ["intruder"]), {}, "should not be in the file"),
        (recs().with_columns(pl.lit("GHOST").alias(Columns.Item)), {}, "not in the catalogue"),
        (recs(), {"item_mask": np.array([False, True, True, True, True, True])}, "recommend an item the rules exclude"),
        (recs(), {"exclusions": sp.csr_matrix(([1], ([0], [0])), shape=(3, 6))}, "already had"),
        (recs().with_columns(pl.lit(float("nan")).alias(Columns.Score)), {}, "non-finite score"),
    ],
)
@pytest.mark.parametrize("from_written", [False, True], ids=["read-back", "written-rows"])
def test_validation_catches_broken_files(
    tmp_path: Path, frame: pl.DataFrame, exp: dict, message: str, from_written: bool
) -> None:
    path = tmp_path / "out.csv"
    write_export(frame, path, ExportConfig(), k=K, generated_at="2026-01-02T03:04:05Z")
    written = long_rows(frame, ExportConfig(), "2026-01-02T03:04:05Z") if from_written else None
    report = validate_export(path, "csv", expect(**exp), written=written)
    assert not report.ok
    assert any(message in p for p in report.problems), report.problems


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_that_does_not_hold_the_written_rows_is_refused(tmp_path: Path, fmt: str) -> None:
    """Validating the rows just written still checks the file: cut short, it is refused."""
    cfg = ExportConfig(format=fmt)
    path = tmp_path / f"out.{fmt}"
    write_export(recs(), path, cfg, k=K, generated_at="2026-01-02T03:04:05Z")
    written = long_rows(recs(), cfg, "2026-01-02T03:04:05Z")
    assert validate_export(path, fmt, expect(), written=written).ok
    data = path.read_bytes()
    if fmt == "csv":  # one row and the last line end lost
        path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1])
        assert validate_export(path, fmt, expect(), written=written).problems == [
            "the written file holds 8 rows, 9 were written"
        ]
        path.write_bytes(data[:-3])
        assert "does not end with a line end" in validate_export(path, fmt, expect(), written=written).problems[0]
    else:  # rows of another frame under the same footer shape
        write_export(recs()[:6], path, cfg, k=K, generated_at="2026-01-02T03:04:05Z")
        assert validate_export(path, fmt, expect(), written=written).problems == [
            "the written file holds 6 rows, 9 were written"
        ]


def test_the_byte_check_reads_the_file_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash, line count and the final line end are the same across chunk boundaries (7-byte chunks)."""
    import hashlib

    import recctl.export as export

    monkeypatch.setattr(export, "_READ_CHUNK", 7)
    path = tmp_path / "out.csv"
    write_export(recs(), path, ExportConfig(), k=K, generated_at="2026-01-02T03:04:05Z")
    written = long_rows(recs(), ExportConfig(), "2026-01-02T03:04:05Z")
    report = validate_export(path, "csv", expect(), written=written)
    assert report.ok and report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    assert "does not end with a line end" in validate_export(path, "csv", expect(), written=written).problems[0]


def test_rows_in_file_order_are_not_copied_and_others_are_sorted(tmp_path: Path) -> None:
    """sort_rows returns the frame itself when in (user, rank) order; any order writes the same bytes."""
    ordered = recs().sort(Columns.User, Columns.Rank)
    assert sort_rows(ordered) is ordered
    assert sort_rows(recs()) is not recs()  # USERS are not in byte order
    within = ordered.with_columns(pl.col(Columns.Rank).reverse().over(Columns.User))  # ranks fall inside a user
    assert sort_rows(within)[Columns.Rank].to_list() == ordered[Columns.Rank].to_list()
    shuffled = ordered.sample(fraction=1.0, shuffle=True, seed=3)
    for fmt in ("csv", "parquet", "jsonl", "csv_wide"):
        cfg = ExportConfig(format=fmt)
        a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
        write_export(ordered, a, cfg, k=K, generated_at="2026-01-02T03:04:05Z")
        write_export(shuffled, b, cfg, k=K, generated_at="2026-01-02T03:04:05Z")
        assert a.read_bytes() == b.read_bytes(), fmt


def test_csv_written_in_chunks_holds_the_bytes_of_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CSV is written a few rows at a time, generated_at added per chunk: the bytes of one write of all rows."""
    import recctl.export as export

    users = USERS + ["\tu4", "u5"]
    frame = recs(users)
    cfg = ExportConfig()
    one_write = tmp_path / "one.csv"
    neutralise_formulas(long_rows(frame, cfg, "2026-01-02T03:04:05Z")).write_csv(
        one_write, float_precision=cfg.float_precision
    )
    monkeypatch.setattr(export, "_WRITE_CHUNK_ROWS", 4)
    path = tmp_path / "out.csv"
    assert write_export(frame, path, cfg, k=K, generated_at="2026-01-02T03:04:05Z") == 15
    assert path.read_bytes() == one_write.read_bytes()
    empty = tmp_path / "empty.csv"
    write_export(frame.clear(), empty, cfg, k=K, generated_at="2026-01-02T03:04:05Z")
    assert empty.read_text().splitlines() == ["user_id,rank,item_id,score,model,generated_at,source"]


@pytest.mark.parametrize(
    ("frame", "exp"),
    [
        (recs(), {}),
        (recs().filter(pl.col(Columns.User) != "u3"), {}),
        (recs().filter(pl.col(Columns.Rank) != 3), {}),
        (recs(USERS + ["intruder"]).with_columns(pl.lit("GHOST").alias(Columns.Item)), {}),
        (
            recs(),
            {
                "item_mask": np.array([False, True, True, True, True, True]),
                "exclusions": sp.csr_matrix(np.ones((4, 6))),
            },
        ),
    ],
)
def test_validation_in_chunks_reports_what_one_pass_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frame: pl.DataFrame, exp: dict
) -> None:
    """Rows grouped per user and ids looked up a few rows at a time: the same report, word for word."""
    import recctl.export as export

    path = tmp_path / "out.csv"
    write_export(frame, path, ExportConfig(), k=K, generated_at="2026-01-02T03:04:05Z")
    written = long_rows(frame, ExportConfig())
    whole = validate_export(path, "csv", expect(**exp), written=written, generated_at="2026-01-02T03:04:05Z")
    monkeypatch.setattr(export, "_GROUP_CHUNK_ROWS", 2)
    monkeypatch.setattr(export, "_PAIR_CHUNK", 2)
    chunked = validate_export(path, "csv", expect(**exp), written=written, generated_at="2026-01-02T03:04:05Z")
    assert chunked == whole
    assert chunked == validate_export(path, "csv", expect(**exp))  # and what reading the file back finds


def test_a_generated_at_with_a_line_end_is_checked_by_parsing_the_file(tmp_path: Path) -> None:
    """Rows written without their generated_at column: its value still decides how the file is checked."""
    stamp = "2026-01-02\n03:04:05Z"
    path = tmp_path / "out.csv"
    write_export(recs(), path, ExportConfig(), k=K, generated_at=stamp)
    written = long_rows(recs(), ExportConfig())
    assert validate_export(path, "csv", expect(), written=written, generated_at=stamp).ok
    assert not validate_export(path, "csv", expect(), written=written).ok  # line ends counted: 9 rows, 18 lines


def test_ids_with_line_ends_are_checked_by_parsing_the_file(tmp_path: Path) -> None:
    """A quoted cell may span lines: the file is then parsed back, not counted by line ends."""
    users = ["u1", 'say "hi"\nthere', "u3"]
    frame = recs(users)
    path = tmp_path / "out.csv"
    write_export(frame, path, ExportConfig(), k=K, generated_at="2026-01-02T03:04:05Z")
    written = long_rows(frame, ExportConfig(), "2026-01-02T03:04:05Z")
    exp = expect(users=np.array(users, dtype=object), user_ids=np.array(users, dtype=object))
    assert validate_export(path, "csv", exp, written=written).ok


def test_validation_rejects_wrong_schema(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_export(recs(), path, ExportConfig(include_source=False), k=K, generated_at="2026-01-02T03:04:05Z")
    report = validate_export(path, "csv", expect())
    assert report.problems == [
        "columns are ['user_id', 'rank', 'item_id', 'score', 'model', 'generated_at'], the contract says "
        "['user_id', 'rank', 'item_id', 'score', 'model', 'generated_at', 'source']"
    ]


def test_publish_is_atomic_and_keeps_yesterday_on_failure(tmp_path: Path) -> None:
    cfg = ExportConfig(format="csv")
    out = tmp_path / "exports"
    main, report, _ = publish(recs(), cfg, out, expect(), date="2026-01-01", generated_at="2026-01-01T00:00:00Z")
    yesterday = out / "recommendations_2026-01-01.csv"
    before = yesterday.read_bytes()
    pointer = json.loads((out / "recommendations_latest.json").read_text())
    assert pointer["file"] == yesterday.name and pointer["rows"] == 9 and pointer["users"] == 3 and pointer["k"] == K
    # the hash taken while validating is the published file's (pointer, ledger, result alike)
    digest = __import__("hashlib").sha256(before).hexdigest()
    ledger = json.loads((out / ".recctl" / "ledger.json").read_text())
    assert pointer["sha256"] == main.sha256 == ledger["files"][yesterday.name]["sha256"] == digest
    assert os.readlink(out / "recommendations_latest.csv") == yesterday.name
    assert oct(yesterday.stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    with pytest.raises(ExportValidationError, match=r"nothing was published \(recommendations_2026-01-01.csv is still"):
        publish(recs()[:-1], cfg, out, expect(), date="2026-01-02", generated_at="2026-01-02T00:00:00Z")
    assert sorted(p.name for p in out.iterdir() if p.name != ".recctl") == [
        "recommendations_2026-01-01.csv",
        "recommendations_latest.csv",
        "recommendations_latest.json",
    ]
    assert yesterday.read_bytes() == before
    assert json.loads((out / "recommendations_latest.json").read_text()) == pointer


def test_same_day_failure_keeps_the_earlier_file_of_that_day(tmp_path: Path) -> None:
    cfg = ExportConfig(format="parquet")
    out = tmp_path / "exports"
    publish(recs(), cfg, out, expect(), date="2026-01-01", generated_at="2026-01-01T00:00:00Z")
    before = (out / "recommendations_2026-01-01.parquet").read_bytes()
    with pytest.raises(ExportValidationError):
        publish(
            recs([u for u in USERS if u != "u1"]),
            cfg,
            out,
            expect(),
            date="2026-01-01",
            generated_at="2026-01-01T01:00:00Z",
        )
    assert (out / "recommendations_2026-01-01.parquet").read_bytes() == before


def test_format_switch_drops_stale_pointer_and_prune_keeps_newest(tmp_path: Path) -> None:
    out = tmp_path / "exports"
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        publish(recs(), ExportConfig(format="csv"), out, expect(), date=day, generated_at=f"{day}T00:00:00Z")
    publish(recs(), ExportConfig(format="jsonl"), out, expect(), date="2026-01-04", generated_at="2026-01-04T00:00:00Z")
    assert not (out / "recommendations_latest.csv").exists()
    assert os.readlink(out / "recommendations_latest.jsonl") == "recommendations_2026-01-04.jsonl"
    removed = prune_old(out, ExportConfig(format="jsonl"), keep=2)
    assert sorted(removed) == ["recommendations_2026-01-01.csv", "recommendations_2026-01-02.csv"]
    assert (out / "recommendations_2026-01-03.csv").exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
