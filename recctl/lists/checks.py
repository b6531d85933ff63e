"""Settings no list can satisfy, refused before any model is trained or scored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recctl.errors import ConfigError
from recctl.lists.fill import eligible_capacity
from recctl.rules import ItemRules

__all__ = ["check_list_settings"]


def check_list_settings(k: int, rules: ItemRules, n_items: int, chain: Sequence[tuple[str, Any]]) -> None:
    """Refuse a ``recommend`` section that cannot give K items to a customer.

    Parameters
    ----------
    k
        ``recommend.k``.
    rules
        Item rules resolved against the catalogue.
    n_items
        Catalogue size.
    chain
        ``(name, model)`` of ``recommend.model`` then ``recommend.fallback``; the models may be
        unfitted (only their capability flags are read).

    Raises
    ------
    ConfigError
        When K exceeds what the catalogue and the item rules leave (even a user with no
        history could not get K items), or when no model of the chain can serve a customer
        without history (customer-file-only customers, new ids), naming the keys to change.
    """
    capacity = int(eligible_capacity(rules, None, 1, n_items)[0])
    if k > capacity:
        eligible = n_items if rules.item_mask is None else int(np.asarray(rules.item_mask).sum())
        why = f"the catalogue has {n_items} items"
        if eligible < n_items:
            excluded = ", ".join(f"{name}: {n}" for name, n in rules.excluded.items() if n) or "none"
            why += f", {eligible} of them pass the item rules (excluded by {excluded})"
        if rules.cap is not None and capacity < eligible:
            why += f", and recommend.rules.category_cap.max_per_list={rules.cap} allows at most {capacity} in one list"
        raise ConfigError(
            f"recommend.k: {k} items per list cannot be filled: {why}. Lower recommend.k to at most {capacity} "
            "or relax recommend.rules."
        )
    if not any(
        getattr(m, "supports_cold_users", False) and getattr(m, "supports_item_history", False) for _, m in chain
    ):
        names = ", ".join(name for name, _ in chain)
        raise ConfigError(
            f"recommend.fallback: no model of the chain ({names}) can recommend to a customer without history "
            "(customers only in the customer file, new ids); add a popularity model to recommend.fallback, e.g. "
            "`models: {popular: {kind: popularity}}` and `fallback: [popular]`."
        )
