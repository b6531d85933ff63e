"""Raw file layouts read through a config alone: MovieLens-1M `.dat` files (no header, `::`,
latin-1), archives (zip, bz2, xz), a preamble before the header, and the errors around them."""

from __future__ import annotations

import bz2
import json
import lzma
import zipfile
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.columns import Columns
from recctl.data.readers import _replace_delimiter, prepare_file
from recctl.errors import DataError
from recctl.stages.ingest import run_ingest
from tests.data.conftest import EVENTS_HEADER, make_config, shop_source, write_yaml

runner = CliRunner()

RATINGS_DAT = [
    "1::1193::5::978300760",
    "1::661::3::978302109",
    "2::1193::4::978298413",
    "2::3408::2::978300275",
    "3::1193::5::978300760",
    "3::xx::5::978300760",  # a broken movie id is still an id; the bad timestamp below is not
    "4::661::4::not-a-time",
]
MOVIES_DAT = [
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama",
    "661::James and the Giant Peach (1996)::Animation|Children's|Musical",
    "3408::Erin Brockovich (2000)::Drama",
    "9999::Am\u00e9lie (2001)::Comedy|Romance",  # latin-1 on disk, like the real movies.dat
]


@pytest.fixture
def movielens_1m(tmp_path: Path) -> Path:
    (tmp_path / "ratings.dat").write_text("\n".join(RATINGS_DAT) + "\n", encoding="utf-8")
    (tmp_path / "movies.dat").write_bytes(("\n".join(MOVIES_DAT) + "\n").encode("latin-1"))
    return tmp_path


def _ml1m_config(root: Path) -> dict:
    return {
        "workdir": str(root / "work"),
        "data": {
            "interactions": {
                "path": "ratings.dat",
                "delimiter": "::",
                "has_header": False,
                "column_names": ["UserID", "MovieID", "Rating", "Timestamp"],
                "columns": {"user_id": "UserID", "item_id": "MovieID", "timestamp": "Timestamp", "value": "Rating"},
                "timestamp_format": "epoch_s",
                "value_rule": {"min_value": 4, "event": "liked", "below": "rated"},
            },
            "items": {
                "path": "movies.dat",
                "delimiter": "::",
                "has_header": False,
                "encoding": "latin1",
                "column_names": ["MovieID", "Title", "Genres"],
                "id_column": "MovieID",
            },
        },
        "models": {"pop": {"kind": "popularity"}},
    }


def test_movielens_1m_dat_files_from_config_alone(movielens_1m: Path) -> None:
    config = movielens_1m / "config.yaml"
    config.write_text(yaml.safe_dump(_ml1m_config(movielens_1m)))
    result = runner.invoke(app, ["ingest", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["totals"] == {**summary["totals"], "read": 7, "accepted": 6, "rejected": 1}
    assert summary["rejected_by_reason"] == {"bad_timestamp": 1}
    out = movielens_1m / "work" / "ingest"
    events = pl.read_parquet(out / "interactions.parquet")
    assert events.row(0, named=True) == {
        Columns.User: "1",
        Columns.Item: "1193",
        Columns.Event: "liked",
        Columns.Timestamp: events[Columns.Timestamp][0],
        Columns.Value: 5.0,
    }
    assert events[Columns.Timestamp][0].timestamp() == 978300760
    assert events[Columns.Event].to_list() == ["liked", "rated", "liked", "rated", "liked", "liked"]
    items = pl.read_parquet(out / "items.parquet")
    amelie = items.filter(pl.col(Columns.Item) == "9999").row(0, named=True)
    assert amelie["Title"] == "Am\u00e9lie (2001)" and amelie["Genres"] == "Comedy|Romance"
    rejected = pl.read_parquet(out / "rejected.parquet")
    assert rejected.select("row", "column", "value").row(0) == (7, "Timestamp", "not-a-time")


def test_several_character_delimiter_split_across_chunks() -> None:
    text = b"a::b:::c::::d::e:"
    for cut in range(1, len(text)):
        chunks = [text[:cut], text[cut:]]
        assert b"".join(_replace_delimiter(chunks, b"::", b"|")) == text.replace(b"::", b"|"), cut
    three = [text[i : i + 1] for i in range(len(text))]  # one byte at a time
    assert b"".join(_replace_delimiter(three, b":::", b"|")) == text.replace(b":::", b"|")


def test_wrong_number_of_column_names(movielens_1m: Path) -> None:
    raw = _ml1m_config(movielens_1m)
    raw["data"]["interactions"]["column_names"] = ["UserID", "MovieID", "Rating"]
    raw["data"].pop("items")
    cfg = make_config(movielens_1m, raw["data"]["interactions"])
    with pytest.raises(DataError, match=r"ratings.dat: column_names gives 3 names but the file has 4 columns"):
        run_ingest(cfg)


def test_forgotten_double_colon_delimiter_is_named(movielens_1m: Path) -> None:
    source = {"path": "ratings.dat", "columns": {"user_id": "a", "item_id": "b", "timestamp": "c"}}
    with pytest.raises(DataError, match=r"set `data.interactions.delimiter: \"::\"`"):
        run_ingest(make_config(movielens_1m, source))


def _write_archive(kind: str, target: Path, name: str, data: bytes) -> Path:
    if kind == "zip":
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, data)
    else:
        target.write_bytes((bz2.compress if kind == "bz2" else lzma.compress)(data))
    return target


@pytest.mark.parametrize("kind", ["zip", "bz2", "xz"])
def test_archives_read_like_the_plain_file(tmp_path: Path, events_csv: Path, kind: str) -> None:
    plain = run_ingest(make_config(tmp_path / "plain", shop_source(str(events_csv))))
    archive = _write_archive(kind, tmp_path / f"events.csv.{kind}", "events.csv", events_csv.read_bytes())
    packed = run_ingest(make_config(tmp_path / kind, shop_source(str(archive))))
    assert packed.summary["totals"] == plain.summary["totals"]
    read = [pl.read_parquet(tmp_path / d / "work" / "ingest" / "interactions.parquet") for d in ("plain", kind)]
    assert read[0].equals(read[1])


def test_zip_with_several_files_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as archive:
        archive.writestr("events.csv", EVENTS_HEADER)
        archive.writestr("readme.txt", "hello")
    with pytest.raises(
        DataError, match=r"export.zip: a zip archive must hold exactly one file.*events.csv, readme.txt"
    ):
        prepare_file(tmp_path / "export.zip", "csv", "utf8", tmp_path / "scratch")


def test_corrupt_archive_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "events.csv.bz2").write_bytes(b"BZh9 this is not bzip2 data at all")
    config = tmp_path / "config.yaml"
    raw = {
        "workdir": "work",
        "data": {"interactions": shop_source("events.csv.bz2")},
        "models": {"p": {"kind": "popularity"}},
    }
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["ingest", str(config)])
    assert result.exit_code == 4
    assert "events.csv.bz2: not a readable bz2 file" in result.stderr


def test_preamble_lines_before_the_header(tmp_path: Path, events_csv: Path) -> None:
    with_title = tmp_path / "report.csv"
    with_title.write_text("Sales report, exported 2026-11-29\n\n" + events_csv.read_text())
    plain = run_ingest(make_config(tmp_path / "plain", shop_source(str(events_csv))))
    titled = run_ingest(make_config(tmp_path / "titled", shop_source(str(with_title), skip_lines=2)))
    assert titled.summary["totals"] == plain.summary["totals"]
    rows = [
        pl.read_parquet(tmp_path / d / "work" / "ingest" / "rejected.parquet")["row"].sort().to_list()
        for d in ("plain", "titled")
    ]
    assert rows[0] == rows[1]  # row numbers count data rows, whatever came before the header


def test_bad_delimiter_and_quote_are_config_errors(tmp_path: Path) -> None:
    for extra, message in (({"delimiter": "\n"}, "cannot separate columns"), ({"quote_char": "''"}, "quote_char")):
        with pytest.raises(Exception, match=message):
            make_config(tmp_path, shop_source(**extra))


def _book_crossing(root: Path, n_users: int = 40, n_books: int = 25) -> Path:
    """A Book-Crossing-style export: quoted, ';'-separated, latin-1, and no time column at all."""
    lines = ['"User-ID";"ISBN";"Book-Rating"']
    for u in range(n_users):
        for b in range(n_books):
            if (u * 7 + b * 3) % 5 < 2:
                lines.append(f'"{u + 1}";"03{b:07d}";"{(u + b) % 11}"')
    lines.append('"999";"";"5"')  # a row without a book
    path = root / "BX-Book-Ratings.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


def test_export_without_time_column_gets_file_order(tmp_path: Path) -> None:
    path = _book_crossing(tmp_path)
    source = {
        "path": str(path),
        "delimiter": ";",
        "encoding": "latin1",
        "columns": {"user_id": "User-ID", "item_id": "ISBN", "value": "Book-Rating"},
        "value_rule": {"min_value": 6, "event": "liked", "below": "rated"},
    }
    manifest = run_ingest(make_config(tmp_path, source))
    totals = manifest.summary["totals"]
    assert totals["rejected"] == 1 and totals["read"] == totals["accepted"] + 1
    events = pl.read_parquet(tmp_path / "work" / "ingest" / "interactions.parquet")
    times = events[Columns.Timestamp]
    # one microsecond apart in file order (row numbers start at 1)
    assert times.is_sorted() and times.diff().drop_nulls().dt.total_microseconds().unique().to_list() == [1]
    assert times[0].timestamp() == 1e-6
    assert events[Columns.Item][0] == "030000000"  # leading zeros kept: ids are text


def test_appended_batch_without_time_column_comes_later(tmp_path: Path) -> None:
    path = _book_crossing(tmp_path)
    source = {"path": str(path), "delimiter": ";", "columns": {"user_id": "User-ID", "item_id": "ISBN"}}
    cfg = make_config(tmp_path, source)
    run_ingest(cfg)
    day2 = tmp_path / "day2.csv"
    day2.write_text('"User-ID";"ISBN"\n"1";"0399999999"\n')
    run_ingest(cfg, append=[day2])
    events = pl.read_parquet(tmp_path / "work" / "ingest" / "interactions.parquet")
    assert events.row(-1, named=True)[Columns.Item] == "0399999999"
    assert events[Columns.Timestamp].is_sorted()  # the new batch is the latest


def test_export_without_time_column_runs_the_pipeline(tmp_path: Path) -> None:
    """Through the CLI: ingest, preprocess (time split on file order), train, evaluate, recommend, export."""
    path = _book_crossing(tmp_path, n_users=60, n_books=30)
    raw = {
        "workdir": str(tmp_path / "work"),
        "data": {
            "interactions": {
                "path": str(path),
                "delimiter": ";",
                "encoding": "latin1",
                "columns": {"user_id": "User-ID", "item_id": "ISBN", "value": "Book-Rating"},
            }
        },
        # 720 events of 12 per user: a cut at 21% (151 events) leaves one user in both parts; at 20%
        # (144 = 12 whole users) every test user would be cold and dropped
        "preprocess": {"min_user_interactions": 1, "min_item_interactions": 1, "split": {"test_fraction": 0.21}},
        "models": {"pop": {"kind": "popularity"}},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", str(config), "--skip", "tune", "--json"])
    assert result.exit_code == 0, result.output
    stages = {s["stage"]: s["status"] for s in json.loads(result.stdout)["stages"]}
    assert {stages[name] for name in ("ingest", "preprocess", "train", "evaluate")} == {"ran"}
    metrics = json.loads((tmp_path / "work" / "evaluate" / "metrics.json").read_text())
    assert metrics  # evaluated on a split made from file order


def test_excel_unicode_text_export_utf16_tabs(tmp_path: Path, events_csv: Path) -> None:
    """Excel's 'Unicode Text' export: UTF-16 with a byte-order mark, tab-separated, CRLF lines."""
    text = events_csv.read_text().replace(",", "\t").replace("\n", "\r\n").replace("u1", "J\u00fcrgen")
    (tmp_path / "export.txt").write_bytes(text.encode("utf-16"))
    plain = run_ingest(make_config(tmp_path / "plain", shop_source(str(events_csv))))
    utf16 = run_ingest(make_config(tmp_path, shop_source("export.txt", delimiter="\t", encoding="utf16")))
    assert utf16.summary["totals"] == plain.summary["totals"]
    users = pl.read_parquet(tmp_path / "work" / "ingest" / "interactions.parquet")[Columns.User]
    assert "J\u00fcrgen" in users.to_list()


def test_utf16_file_under_the_default_encoding_names_the_setting(tmp_path: Path, events_csv: Path) -> None:
    """Read as UTF-8 a UTF-16 header looks like spaced-out names; the error names the encoding instead."""
    (tmp_path / "export.csv").write_bytes(events_csv.read_text().encode("utf-16"))
    config = write_yaml(tmp_path, shop_source("export.csv"))
    result = CliRunner().invoke(app, ["ingest", str(config)])
    assert result.exit_code == 4, result.output
    message = " ".join(result.output.split())
    assert "export.csv: the file is UTF-16" in message
    assert "set `data.interactions.encoding: utf16`" in message
    assert "is not in the file" not in message


@pytest.mark.parametrize("compressed", [False, True])
def test_json_array_file(tmp_path: Path, events_csv: Path, compressed: bool) -> None:
    records = pl.read_csv(events_csv, infer_schema=False).to_dicts()
    data = json.dumps(records, indent=2).encode()
    name = "events.json.bz2" if compressed else "events.json"
    (tmp_path / name).write_bytes(bz2.compress(data) if compressed else data)
    plain = run_ingest(make_config(tmp_path / "plain", shop_source(str(events_csv))))
    from_json = run_ingest(make_config(tmp_path, shop_source(name)))
    assert from_json.summary["totals"] == plain.summary["totals"]
    rows = pl.read_parquet(tmp_path / "work" / "ingest" / "rejected.parquet")["row"].sort().to_list()
    assert rows == [4, 7, 8, 9]  # the array's element numbers, like a CSV's data rows


def test_broken_json_array_is_named(tmp_path: Path) -> None:
    (tmp_path / "events.json").write_text('[{"customer_id": "u1"}, {"customer_id": ')
    with pytest.raises(DataError, match=r"events.json: not valid JSON"):
        run_ingest(make_config(tmp_path, shop_source("events.json")))


def test_auto_timestamps_that_change_layout_after_the_sample(tmp_path: Path) -> None:
    """The first 1,000 times fix a fast layout; later rows in another layout are still parsed (a second read)."""
    lines = [EVENTS_HEADER.strip()]
    lines += [f"u{i % 50},i{i % 40},view,2026-01-01 10:{i % 60:02d}:00,1" for i in range(1_200)]
    lines += ["u1,i1,view,2026-02-01T10:00:00Z,1", "u2,i2,view,1769940000,1", "u3,i3,view,soon,1"]
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    source = shop_source(timestamp_format="auto")
    s = run_ingest(make_config(tmp_path, source)).summary
    assert s["totals"]["rejected"] == 1 and s["rejected_by_reason"] == {"bad_timestamp": 1}
    events = pl.read_parquet(tmp_path / "work" / "ingest" / "interactions.parquet")
    assert [str(t) for t in events[Columns.Timestamp][-2:]] == [
        "2026-02-01 10:00:00+00:00",
        "2026-02-01 10:00:00+00:00",
    ]


def test_auto_timestamps_in_one_layout_take_the_fast_path(tmp_path: Path, events_csv: Path) -> None:
    from recctl.data.ingest import annotate_file

    src = make_config(tmp_path, shop_source(timestamp_format="auto")).data.interaction_sources()[0]
    ann = annotate_file(events_csv, src, key="k", file_idx=0, tmp_dir=tmp_path)
    assert ann.time_plan == "iso_seconds"
    explicit = run_ingest(make_config(tmp_path / "explicit", shop_source(str(events_csv))))
    auto = run_ingest(make_config(tmp_path / "auto", shop_source(str(events_csv), timestamp_format="auto")))
    assert auto.summary["totals"] == explicit.summary["totals"]


def test_blank_lines_are_rejected_as_empty_rows(tmp_path: Path, events_csv: Path) -> None:
    lines = events_csv.read_text().splitlines()
    (tmp_path / "events.csv").write_text("\r\n".join([*lines[:3], "", *lines[3:], ",,,,"]) + "\r\n")
    s = run_ingest(make_config(tmp_path, shop_source())).summary
    assert s["rejected_by_reason"]["empty_row"] == 2 and s["totals"]["read"] == 12 + 2
    rejected = pl.read_parquet(tmp_path / "work" / "ingest" / "rejected.parquet").filter(
        pl.col("reason") == "empty_row"
    )
    assert rejected["row"].to_list() == [3, 14] and rejected["column"].to_list() == [None, None]
