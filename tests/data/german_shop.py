"""A German shop's export, made up for the tests from the shipped sample shop.

What a German Excel or ERP export looks like: ``;`` as the delimiter, cp1252 text, times as
``dd.mm.yyyy HH:MM``, decimal commas (``29,41``), ``ja``/``nein`` flags, umlauts and ß in the
product titles, and the German column names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
#: a few words with umlauts and ß, so the text features have something to keep whole
_WORDS = ("Größe", "Übergröße", "Strümpfe", "Weiß", "Küche", "Bärenfell", "Süßigkeit", "Fußmatte")


def write_german_shop(directory: Path, n_events: int = 3_000, *, encoding: str = "cp1252") -> dict[str, Path]:
    """Write ``bestellungen.csv`` (events) and ``artikel.csv`` (catalogue) in German layout.

    Parameters
    ----------
    directory
        Where to write.
    n_events
        First events of the sample shop to keep.
    encoding
        Text encoding of both files.

    Returns
    -------
    dict
        ``events`` and ``items`` paths.
    """
    directory.mkdir(parents=True, exist_ok=True)
    events = pl.read_csv(SAMPLE / "events.csv", infer_schema=False).head(n_events)
    times = events["event_time"].str.to_datetime("%Y-%m-%d %H:%M:%S").dt.strftime("%d.%m.%Y %H:%M")
    german = pl.DataFrame(
        {
            "Kundennummer": events["customer_id"],
            "Artikelnummer": events["product_id"],
            "Ereignis": events["event_type"],
            "Zeitpunkt": times,
            # a decimal-comma quantity, as a spreadsheet with a German locale writes it
            "Menge": events["quantity"].str.replace(r"$", ",0"),
        }
    )
    items = pl.read_csv(SAMPLE / "products.csv", infer_schema=False)
    words = pl.Series([_WORDS[i % len(_WORDS)] for i in range(items.height)])
    artikel = pl.DataFrame(
        {
            "Artikelnummer": items["product_id"],
            "Bezeichnung": items["title"] + " " + words,
            "Kategorie": items["category"],
            "Preis": items["price"].str.replace(".", ",", literal=True),
            "Lagernd": items["in_stock"].replace_strict({"true": "ja", "false": "nein"}),
        }
    )
    paths = {"events": directory / "bestellungen.csv", "items": directory / "artikel.csv"}
    for frame, path in ((german, paths["events"]), (artikel, paths["items"])):
        text = frame.write_csv(separator=";")
        path.write_bytes(text.encode(encoding))
    return paths


def german_config(paths: dict[str, Path], **overrides: Any) -> dict[str, Any]:
    """A ``data`` section a German analyst would write for :func:`write_german_shop`'s files."""
    interactions: dict[str, Any] = {
        "path": str(paths["events"]),
        "delimiter": ";",
        "encoding": "cp1252",
        "decimal_comma": True,
        "columns": {
            "user_id": "Kundennummer",
            "item_id": "Artikelnummer",
            "event": "Ereignis",
            "timestamp": "Zeitpunkt",
            "value": "Menge",
        },
        "timezone": "Europe/Berlin",
    }
    items: dict[str, Any] = {
        "path": str(paths["items"]),
        "delimiter": ";",
        "encoding": "cp1252",
        "decimal_comma": True,
        "id_column": "Artikelnummer",
        "columns": {"title": "Bezeichnung", "category": "Kategorie", "price": "Preis", "in_stock": "Lagernd"},
    }
    interactions.update(overrides.pop("interactions", {}))
    items.update(overrides.pop("items", {}))
    return {"interactions": interactions, "items": items, **overrides}
