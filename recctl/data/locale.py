"""Reading exports written in other languages and locales: flag words, decimal commas, text tokens.

One place for what a German, French or Brazilian export spells differently from an English
one, so ingest (catalogue types), the business rules (``in_stock_column``) and the text
features agree:

* **flag words**: ``ja``/``nein``, ``oui``/``non``, ``sí``/``no``, ... (:data:`FLAG_WORDS`,
  one pair of word sets per language, English and the neutral ``1/0``, ``y/n``, ``x`` included);
  a source's ``true_values`` / ``false_values`` add the shop's own words;
* **decimal commas**: ``29,41`` and ``1.234,5`` (:func:`decimal_comma_number`), and a test of
  whether text that does not parse as a number would parse that way (:func:`looks_decimal_comma`),
  which the warnings use to say which setting fixes it;
* **text tokens**: runs of Unicode letters and digits (:data:`TOKEN_PATTERN`), so ``Größe``
  is one token and Cyrillic, Greek or Arabic catalogues get text features (scripts written
  without spaces, such as Chinese, give one token per run of characters).
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

__all__ = [
    "FLAG_WORDS",
    "TOKEN_PATTERN",
    "decimal_comma_number",
    "false_words",
    "flag_language",
    "looks_decimal_comma",
    "true_words",
]

#: language -> (words meaning true, words meaning false), lower case; a column is read as a
#: flag when all its values belong to one language's pair (plus the shop's own words)
FLAG_WORDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "en": (
        frozenset({"true", "yes", "y", "t", "in", "in_stock", "available"}),
        frozenset({"false", "no", "n", "f", "out", "out_of_stock", "unavailable"}),
    ),
    "de": (
        frozenset({"ja", "j", "wahr", "vorrätig", "verfügbar", "lieferbar"}),
        frozenset({"nein", "falsch", "ausverkauft", "nicht vorrätig", "nicht verfügbar", "nicht lieferbar"}),
    ),
    "fr": (
        frozenset({"oui", "o", "vrai", "disponible", "en stock"}),
        frozenset({"non", "faux", "indisponible", "épuisé", "rupture"}),
    ),
    "es": (frozenset({"sí", "si", "s", "verdadero", "disponible"}), frozenset({"no", "falso", "agotado"})),
    "it": (frozenset({"sì", "si", "vero", "disponibile"}), frozenset({"no", "falso", "esaurito"})),
    "pt": (frozenset({"sim", "s", "verdadeiro", "disponível"}), frozenset({"não", "nao", "falso", "esgotado"})),
    "nl": (frozenset({"ja", "j", "waar", "op voorraad"}), frozenset({"nee", "onwaar", "uitverkocht"})),
    "sv": (frozenset({"ja", "j", "sant", "i lager"}), frozenset({"nej", "falskt", "slut i lager"})),
    "da": (frozenset({"ja", "j", "sand", "på lager"}), frozenset({"nej", "falsk", "udsolgt"})),
    "no": (frozenset({"ja", "j", "sann", "på lager"}), frozenset({"nei", "usann", "utsolgt"})),
    "fi": (frozenset({"kyllä", "k", "tosi"}), frozenset({"ei", "epätosi"})),
    "pl": (frozenset({"tak", "t", "prawda", "dostępny"}), frozenset({"nie", "fałsz", "niedostępny"})),
    "cs": (frozenset({"ano", "a", "pravda", "skladem"}), frozenset({"ne", "nepravda", "vyprodáno"})),
    "tr": (frozenset({"evet", "e", "doğru"}), frozenset({"hayır", "h", "yanlış"})),
    "ru": (frozenset({"да", "д", "истина", "в наличии"}), frozenset({"нет", "н", "ложь", "нет в наличии"})),
    "neutral": (frozenset({"1", "x", "✓", "+"}), frozenset({"0", "-", "✗"})),
}

#: a text token: a run of Unicode letters and digits (``[a-z0-9]+`` cut ``Größe`` to ``gr``)
TOKEN_PATTERN = r"[\p{L}\p{N}]+"


def true_words(extra: Iterable[str] = ()) -> frozenset[str]:
    """Every built-in word meaning true, in any language, plus ``extra`` (lower-cased)."""
    words = {w for yes, _ in FLAG_WORDS.values() for w in yes}
    return frozenset(words | {w.strip().lower() for w in extra})


def false_words(extra: Iterable[str] = ()) -> frozenset[str]:
    """Every built-in word meaning false, in any language, plus ``extra`` (lower-cased)."""
    words = {w for _, no in FLAG_WORDS.values() for w in no}
    return frozenset(words | {w.strip().lower() for w in extra})


def flag_language(
    values: Iterable[str], extra_true: Iterable[str] = (), extra_false: Iterable[str] = ()
) -> tuple[str, frozenset[str]] | None:
    """The language whose true/false words cover every distinct value, and its true words; else None.

    ``values`` are the distinct non-empty values of a column (any case). A column counts as a
    flag only when it uses both a true and a false word, so a column of country codes that
    happens to hold only ``NO`` stays text. The shop's own words (``extra_*``) join every
    language.

    Examples
    --------
    >>> flag_language(["Ja", "nein"])[0]
    'de'
    >>> flag_language(["yes", "nein"]) is None
    True
    """
    seen = {v.strip().lower() for v in values if v is not None and v.strip()}
    if not seen:
        return None
    add_true = {w.strip().lower() for w in extra_true}
    add_false = {w.strip().lower() for w in extra_false}
    for language, (yes, no) in FLAG_WORDS.items():
        yes, no = yes | add_true, no | add_false
        if seen <= (yes | no) and seen & yes and seen & no:
            return language, frozenset(yes)
    return None


def decimal_comma_number(text: pl.Expr) -> pl.Expr:
    """Parse ``1.234,5`` / ``29,41`` text as a number (``.`` groups thousands, ``,`` is the decimal point)."""
    return (
        text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
    )


def looks_decimal_comma(values: pl.Series) -> bool:
    """Whether text values that do not parse as numbers would all parse with a decimal comma.

    Used to turn "this numeric column has no numbers" into "set ``decimal_comma: true``".
    """
    text = values.cast(pl.String).drop_nulls().str.strip_chars()
    text = text.filter(text.str.len_bytes() > 0)
    if text.is_empty():
        return False
    failed = text.filter(text.cast(pl.Float64, strict=False).is_null())
    if failed.is_empty() or not failed.str.contains(",").any():
        return False
    frame = failed.to_frame("t")
    return bool(frame.select(decimal_comma_number(pl.col("t")).is_not_null().all()).item())
