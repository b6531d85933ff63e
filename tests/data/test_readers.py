from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from recctl.data.readers import ROW, detect_format, expand_paths, prepare_file, require_columns, scan_file
from recctl.errors import DataError


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.CSV.gz", "csv"),
        ("a.tsv", "tsv"),
        ("a.parquet", "parquet"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson.gz", "jsonl"),
    ],
)
def test_detect_format_by_extension(name: str, fmt: str) -> None:
    assert detect_format(Path(name)) == fmt


def test_detect_format_unknown_extension_says_what_to_set() -> None:
    with pytest.raises(DataError, match="set `format:`"):
        detect_format(Path("events.bin"))
    assert detect_format(Path("events.bin"), "tsv") == "tsv"
    assert detect_format(Path("ratings.dat")) == "csv" and detect_format(Path("events.csv.bz2")) == "csv"


def test_expand_paths_glob_sorted_and_deduplicated(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", "c.txt"):
        (tmp_path / name).write_text("x\n1\n")
    files = expand_paths(["*.csv", "a.csv"], lambda p: tmp_path / p, "data.interactions.path")
    assert [f.name for f in files] == ["a.csv", "b.csv"]
    with pytest.raises(DataError, match="no file matches"):
        expand_paths("*.parquet", lambda p: tmp_path / p, "data.interactions.path")


def test_gzip_is_streamed_to_a_plain_copy(tmp_path: Path) -> None:
    path = tmp_path / "e.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("a,b\n1,2\n3,4\n")
    plain = prepare_file(path, "csv", "utf8", tmp_path / "scratch")
    frame = scan_file(plain, fmt="csv").collect()
    assert frame[ROW].to_list() == [1, 2]
    assert frame["b"].to_list() == ["2", "4"]  # text, not inferred


def test_latin1_is_transcoded(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes("name,city\nJos\u00e9,M\u00fcnchen\n".encode("latin1"))
    plain = prepare_file(path, "csv", "latin1", tmp_path / "scratch")
    assert scan_file(plain, fmt="csv").collect()["city"].to_list() == ["M\u00fcnchen"]


def test_missing_column_names_key_and_close_match(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("customer,product\n1,2\n")
    lf = scan_file(path, fmt="csv")
    with pytest.raises(DataError, match=r"'customr' \(mapped by data.x.user_id\).*did you mean 'customer'"):
        require_columns(lf, path, {"data.x.user_id": "customr"}, fmt="csv", delimiter=None)


def test_parquet_row_index(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pl.DataFrame({"a": [5, 6, 7]}).write_parquet(path)
    assert scan_file(path, fmt="parquet").collect()[ROW].to_list() == [1, 2, 3]


def test_spreadsheet_is_excel_and_json_array_gets_a_fix(tmp_path: Path) -> None:
    assert detect_format(Path("export.xlsx")) == detect_format(Path("export.ods")) == "excel"
    path = tmp_path / "e.jsonl"
    path.write_text('[{"a": 1},\n {"a": 2}]\n')
    with pytest.raises(DataError, match="JSON array, not JSON Lines"):
        scan_file(path, fmt="jsonl").collect()
