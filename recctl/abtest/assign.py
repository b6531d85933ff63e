"""Deterministic, salted assignment of users to experiment variants.

Algorithm (documented in ``docs/architecture.md``, section "A/B testing")
-------------------------------------------------------------------------
For a user id ``u`` (as text, UTF-8) and the experiment's ``salt``:

1. ``d = sha256(salt + "\\x1f" + u)``. Bytes 0-7 of ``d``, read as a big-endian unsigned
   integer, are the user's **bucket** in ``[0, 2**64)``; ``bucket / 2**64`` is a uniform number
   in ``[0, 1)`` with 64 bits of resolution, so any weights (1/3, 0.001, ...) are honoured to
   within sampling error; there is no coarse bucket grid to round them to.
2. Bytes 8-15 of ``d``, divided by ``2**64``, decide the **holdout**: a user is held out when
   that number falls below ``holdout``. The two halves of a sha256 digest are independent, so
   changing the holdout share moves users only in or out of the holdout and never reshuffles the
   variants of the others (one digest per user serves both).
3. Non-held-out users take the first variant (variants sorted by **name**, so reordering the YAML
   does not reassign anyone) whose cumulative normalised weight exceeds ``bucket / 2**64``.

sha256 (never Python's ``hash()``, which is randomised per process) makes the assignment
identical across runs, machines and Python versions; different salts give independent
assignments; a user never seen before is assigned by the same rule, no lookup table is needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from recctl.columns import Columns
from recctl.config.abtest import ABTestConfig
from recctl.errors import ConfigError, DataError

__all__ = [
    "BUCKET_BITS",
    "HOLDOUT",
    "assign_variants",
    "assignment_frame",
    "hash_unit",
    "variant_shares",
]

#: the variant name given to held-out users (they receive no recommendations)
HOLDOUT = "holdout"
#: a bucket is the first 64 bits of a sha256 digest
BUCKET_BITS = 64
_SCALE = float(2**BUCKET_BITS)
_SEP = "\x1f"  # ASCII unit separator: cannot occur in a sane salt, keeps "a"+"bc" != "ab"+"c"


def _as_text(user_ids: Iterable[object] | np.ndarray | pl.Series) -> list[str]:
    if isinstance(user_ids, pl.Series):
        values = user_ids.cast(pl.String).to_list()
    elif isinstance(user_ids, np.ndarray):
        values = user_ids.astype(str).tolist() if user_ids.dtype.kind != "O" else list(user_ids)
    else:
        values = list(user_ids)
    out: list[str] = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise DataError(f"user id at position {i} is missing (null); every user needs an id to be assigned")
        out.append(v if isinstance(v, str) else str(v))
    return out


def _buckets(ids: Sequence[str], salt: str) -> np.ndarray:
    """``(n, 2)`` uint64: the variant bucket and the holdout number of each id."""
    prefix = f"{salt}{_SEP}".encode()
    sha = hashlib.sha256
    # one digest per user; about a microsecond each, so a million users take about a second
    raw = b"".join(sha(prefix + uid.encode("utf-8")).digest()[:16] for uid in ids)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)


def hash_unit(user_ids: Iterable[object] | np.ndarray, salt: str, purpose: str = "variant") -> np.ndarray:
    """Map user ids to uniform numbers in ``[0, 1)`` by a salted sha256.

    Parameters
    ----------
    user_ids
        User ids; non-strings are converted with ``str`` (so ``17850`` and ``"17850"`` agree).
    salt
        The experiment salt.
    purpose
        ``"variant"`` (bytes 0-7 of the digest) or ``"holdout"`` (bytes 8-15): independent.

    Returns
    -------
    np.ndarray
        float64 array, ``64-bit slice of sha256(salt + "\\x1f" + id) / 2**64``.
    """
    if purpose not in ("variant", "holdout"):
        raise ValueError(f"purpose must be 'variant' or 'holdout', got {purpose!r}")
    column = 0 if purpose == "variant" else 1
    return _buckets(_as_text(user_ids), salt)[:, column] / _SCALE


def variant_shares(experiment: ABTestConfig) -> dict[str, float]:
    """Expected share of all users per variant (and ``"holdout"`` when it is positive).

    Parameters
    ----------
    experiment
        The ``experiment:`` config.

    Returns
    -------
    dict[str, float]
        ``{variant: (1 - holdout) * weight / sum(weights)}``, variants sorted by name, plus
        ``{"holdout": holdout}`` when the holdout share is positive. The values sum to 1.
    """
    names = sorted(experiment.variants)
    total = sum(experiment.variants[n].weight for n in names)
    shares = {n: (1.0 - experiment.holdout) * experiment.variants[n].weight / total for n in names}
    if experiment.holdout > 0:
        shares[HOLDOUT] = experiment.holdout
    return shares


def _check_experiment(experiment: ABTestConfig) -> None:
    if HOLDOUT in experiment.variants:
        raise ConfigError(
            f"experiment.variants.{HOLDOUT}: '{HOLDOUT}' is reserved for held-out users; rename the variant"
        )


def _assign(ids: list[str], experiment: ABTestConfig) -> tuple[np.ndarray, np.ndarray]:
    _check_experiment(experiment)
    names = sorted(experiment.variants)
    weights = np.array([experiment.variants[n].weight for n in names], dtype=np.float64)
    cum = np.cumsum(weights / weights.sum())
    cum[-1] = 1.0  # guard against 0.9999999 rounding leaving the top sliver unassigned
    both = _buckets(ids, experiment.salt)
    buckets = both[:, 0]
    u = buckets / _SCALE
    idx = np.minimum(np.searchsorted(cum, u, side="right"), len(names) - 1)
    variants = np.array(names, dtype=object)[idx]
    if experiment.holdout > 0:
        held = both[:, 1] / _SCALE < experiment.holdout
        variants[held] = HOLDOUT
    return variants, buckets


def assign_variants(user_ids: Sequence[str] | np.ndarray | pl.Series, experiment: ABTestConfig) -> np.ndarray:
    """Assign each user to a variant of the experiment (or to ``"holdout"``).

    Parameters
    ----------
    user_ids
        User ids (list, numpy array or polars Series). Duplicates get the same variant.
    experiment
        The ``experiment:`` config (salt, variants with weights, holdout share).

    Returns
    -------
    np.ndarray
        Object array of variant names, aligned with ``user_ids``.

    Raises
    ------
    DataError
        If a user id is missing.
    ConfigError
        If a variant is called ``holdout``.

    Examples
    --------
    >>> from recctl.config.abtest import ABTestConfig
    >>> exp = ABTestConfig.model_validate({"name": "e", "salt": "s1", "control": "a",
    ...     "variants": {"a": {"model": "popular", "weight": 1},
    ...                  "b": {"model": "lfm", "weight": 1}}})
    >>> ids = ["u1", "u2", "u3"]
    >>> list(assign_variants(ids, exp)) == list(assign_variants(ids, exp))
    True
    """
    variants, _ = _assign(_as_text(user_ids), experiment)
    return variants


def assignment_frame(user_ids: Sequence[str] | np.ndarray | pl.Series, experiment: ABTestConfig) -> pl.DataFrame:
    """Assignment table: one row per distinct user id.

    Parameters
    ----------
    user_ids
        User ids; duplicates are dropped (first occurrence order kept).
    experiment
        The ``experiment:`` config.

    Returns
    -------
    pl.DataFrame
        Columns ``user_id`` (String), ``variant`` (String), ``bucket`` (UInt64, bytes 0-7 of
        the salted sha256), ``experiment`` (String) and ``salt`` (String).
    """
    ids = list(dict.fromkeys(_as_text(user_ids)))
    variants, buckets = _assign(ids, experiment)
    n = len(ids)
    return pl.DataFrame(
        {
            Columns.User: pl.Series(ids, dtype=pl.String),
            Columns.Variant: pl.Series(variants.tolist(), dtype=pl.String),
            "bucket": pl.Series(buckets, dtype=pl.UInt64),
            "experiment": pl.Series([experiment.name] * n, dtype=pl.String),
            "salt": pl.Series([experiment.salt] * n, dtype=pl.String),
        }
    )
