"""Related products for every catalogue item, checked by an independent reader of the files.

The shipped sample shop goes through ingest / preprocess / train; serve-export publishes the
related-products files in both layouts with Excel options (semicolon delimiter, BOM). The check
below reads them with Python's ``csv`` module and the raw ``products.csv`` only: every product
has exactly one row, K related products (never itself, never out of stock, at most the cap per
category, no repeats), the files are in the pointer, and a broken file is refused (exit 7).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recctl.cli.main import app
from tests.conftest import write_config

pytestmark = pytest.mark.slow
runner = CliRunner()
K = 8
CAP = 3


def ok(*args: object) -> dict:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return {}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    tmp = tmp_path_factory.mktemp("related")
    config = write_config(
        tmp,
        models={"popular": {"kind": "popularity"}, "knn": {"kind": "item_knn", "neighbors": 30}},
        recommend={
            "model": "knn",
            "k": 10,
            "fallback": ["popular"],
            "rules": {"in_stock_column": "in_stock", "category_cap": {"column": "category", "max_per_list": CAP}},
        },
        export={
            "format": "csv",
            "related": {
                "model": "knn",
                "k": K,
                "fallback": ["popular"],
                "delimiter": ";",
                "bom": True,
                "separator": ",",
                "list_column": "crosssell_skus",
            },
        },
        evaluate=None,
        tune=None,
    )
    for command in ("ingest", "preprocess", "train", "recommend"):
        ok(command, config, "-q")
    ok("serve-export", config, "--date", "2026-07-01", "-q")
    with (repo_root / "sample_data" / "products.csv").open(encoding="utf-8") as handle:
        products = list(csv.DictReader(handle))
    return {"config": config, "exports": tmp / "work" / "exports", "products": products}


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs
    rows = list(csv.reader(io.StringIO(raw[3:].decode("utf-8")), delimiter=";"))
    return rows[0], rows[1:]


def test_sku_list_file_every_product_k_related_allowed_products(shop: dict) -> None:
    header, rows = _read(shop["exports"] / "recommendations_related_skus_2026-07-01.csv")
    assert header == ["sku", "crosssell_skus"]
    products = {p["product_id"]: p for p in shop["products"]}
    in_stock = {sku for sku, p in products.items() if p["in_stock"].strip().lower() == "true"}
    assert len(in_stock) >= K
    skus = [r[0] for r in rows]
    assert len(skus) == len(set(skus)) and set(skus) >= set(products)  # every catalogue product, once
    for sku, cell in rows:
        related = cell.split(",")
        assert len(related) == K, sku
        assert len(set(related)) == K and sku not in related
        assert set(related) <= in_stock, sku  # never out of stock
        per_category: dict[str, int] = {}
        for r in related:
            per_category[products[r]["category"]] = per_category.get(products[r]["category"], 0) + 1
        assert max(per_category.values()) <= CAP


def test_long_file_matches_the_sku_list_and_the_pointer_names_both(shop: dict) -> None:
    header, long_rows = _read(shop["exports"] / "recommendations_related_2026-07-01.csv")
    assert header == ["sku", "rank", "related_sku", "score", "source"]
    _, list_rows = _read(shop["exports"] / "recommendations_related_skus_2026-07-01.csv")
    from_long: dict[str, list[str]] = {}
    for sku, rank, related, score, source in long_rows:
        from_long.setdefault(sku, []).append(related)
        assert int(rank) == len(from_long[sku]) and float(score) == float(score) and source in ("knn", "popular")
    assert from_long == {sku: cell.split(",") for sku, cell in list_rows}
    pointer = json.loads((shop["exports"] / "recommendations_latest.json").read_text())
    assert {"recommendations_related_2026-07-01.csv", "recommendations_related_skus_2026-07-01.csv"} <= set(
        pointer["side_files"]
    )


def test_a_related_model_without_similarity_is_refused_before_training(shop: dict, tmp_path: Path) -> None:
    import yaml

    raw = yaml.safe_load(shop["config"].read_text())
    raw["export"]["related"]["model"] = "popular"
    raw["export"]["related"]["fallback"] = []
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["train", str(bad)])
    assert result.exit_code == 3, result.output
    assert "export.related.model: model 'popular' (kind popularity) has no item similarity" in " ".join(
        result.stderr.split()
    )


def test_a_broken_related_file_publishes_nothing(shop: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import recctl.related as related

    before = {p.name: p.read_bytes() for p in shop["exports"].iterdir() if not p.is_symlink() and p.name != ".recctl"}
    original = related.write_related

    def with_a_loop(frame, item_ids, path, layout, cfg, *, parquet=False):  # noqa: ANN001, ANN202
        rows = original(frame, item_ids, path, layout, cfg, parquet=parquet)
        text = path.read_bytes().decode("utf-8")
        head, first, rest = text.split("\n", 2)
        sku = first.split(";")[0]
        path.write_bytes("\n".join([head, first.replace(first.split(";")[-1], f"{sku}", 1), rest]).encode("utf-8"))
        return rows

    monkeypatch.setattr(related, "write_related", with_a_loop)
    result = runner.invoke(app, ["serve-export", str(shop["config"]), "--date", "2026-07-02"])
    assert result.exit_code == 7, result.output
    assert "the related-products file failed validation, nothing was published" in " ".join(result.stderr.split())
    after = {p.name: p.read_bytes() for p in shop["exports"].iterdir() if not p.is_symlink() and p.name != ".recctl"}
    assert after == before
