"""Generate the shipped sample shop in ``sample_data/`` (deterministic for a given seed).

The shop is small but shaped like a real one, so that the whole pipeline has something
honest to learn:

* ~1,000 products in 12 categories and 40 brands, with titles, descriptions, prices
  (log-normal per category) and a stock flag;
* a long tail of popularity (Zipf-like base popularity per product);
* a few thousand customers with *latent tastes* that do not change over time: two or three
  favourite categories, a few favourite brands and a small latent-factor vector. Each event
  picks a product with probability proportional to ``popularity x taste``, so a personalised
  model can beat the popularity baseline under a time split, while popularity stays a fair
  baseline;
* the newest 2.5% of products have no events yet (cold items);
* four months of sessions with a view -> add_to_cart -> purchase funnel;
* a handful of realistic dirty rows (an empty customer id, an unknown product, an
  unparseable time, an unknown event type, exact duplicate lines) so ingest's accounting
  has something to show.

Run ``python -m recctl.data.sample --out sample_data --seed 7`` (``make sample``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from pathlib import Path

import numpy as np

__all__ = ["EVENT_COLUMNS", "SampleSizes", "generate_sample", "interactions_source", "main"]

#: canonical name -> column of ``events.csv`` as the generator writes it
EVENT_COLUMNS = {
    "user_id": "customer_id",
    "item_id": "product_id",
    "event": "event_type",
    "timestamp": "event_time",
    "value": "quantity",
}
#: how ``events.csv`` writes its timestamps
EVENT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def interactions_source(path: str, **extra: object) -> dict[str, object]:
    """The ``data.interactions`` config section that reads an ``events.csv`` of this layout.

    ``extra`` adds or overrides keys (``on_error``, ``format``...). ``configs/quickstart.yaml``
    spells out the same mapping for users to copy.
    """
    source: dict[str, object] = {
        "path": path,
        "columns": dict(EVENT_COLUMNS),
        "timestamp_format": EVENT_TIME_FORMAT,
        "event_map": {"view": "view", "add_to_cart": "add_to_cart", "purchase": "purchase"},
    }
    source.update(extra)
    return source


CATEGORIES = {
    "kitchen": ["mug", "teapot", "pan", "knife set", "chopping board", "coffee grinder"],
    "garden": ["planter", "hose", "trowel", "bird feeder", "seed tray", "watering can"],
    "toys": ["puzzle", "plush bear", "building set", "kite", "board game", "toy car"],
    "books": ["cookbook", "novel", "travel guide", "atlas", "notebook", "poetry collection"],
    "electronics": ["headphones", "charger", "speaker", "smart plug", "power bank", "webcam"],
    "fashion": ["scarf", "wool hat", "leather belt", "tote bag", "sunglasses", "gloves"],
    "beauty": ["face cream", "shampoo", "lip balm", "perfume", "hand soap", "bath salts"],
    "sports": ["yoga mat", "water bottle", "dumbbell", "running socks", "jump rope", "tennis balls"],
    "home": ["candle", "cushion", "throw blanket", "vase", "picture frame", "wall clock"],
    "pets": ["dog lead", "cat toy", "pet bed", "food bowl", "chew bone", "grooming brush"],
    "stationery": ["fountain pen", "sketchbook", "washi tape", "desk organiser", "pencil set", "planner"],
    "outdoor": ["tent", "camping stove", "head torch", "sleeping bag", "hiking poles", "cool box"],
}
ADJECTIVES = [
    "classic",
    "deluxe",
    "compact",
    "vintage",
    "eco",
    "premium",
    "mini",
    "rustic",
    "modern",
    "handmade",
    "soft",
    "bright",
    "large",
    "travel",
    "essential",
    "nordic",
]
COLOURS = ["red", "blue", "green", "black", "white", "grey", "yellow", "pink", "natural", "navy"]
BRAND_STEMS = [
    "Acorn",
    "Bramble",
    "Cobalt",
    "Dune",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Maple",
    "Nimbus",
    "Onyx",
    "Pebble",
    "Quill",
    "Rowan",
    "Saffron",
    "Tundra",
]
COUNTRIES = ["United Kingdom"] * 6 + ["Germany", "France", "Netherlands", "Spain", "Ireland", "Belgium"]
SEGMENTS = ["new", "regular", "loyal", "bargain_hunter"]
CATEGORY_PRICE = {
    "kitchen": 25,
    "garden": 20,
    "toys": 18,
    "books": 14,
    "electronics": 45,
    "fashion": 30,
    "beauty": 15,
    "sports": 22,
    "home": 24,
    "pets": 16,
    "stationery": 9,
    "outdoor": 55,
}


class SampleSizes:
    """Sizes of the generated shop (defaults make the shipped sample, < 5 MB on disk).

    Parameters
    ----------
    n_users, n_items, n_brands
        Number of customers, products and brands.
    n_days
        Length of the event history, ending on ``end``.
    mean_sessions
        Average number of sessions per customer.
    """

    def __init__(
        self,
        n_users: int = 3000,
        n_items: int = 1000,
        n_brands: int = 40,
        n_days: int = 120,
        mean_sessions: float = 4.0,
        end: dt.date = dt.date(2026, 5, 1),
    ) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self.n_brands = n_brands
        self.n_days = n_days
        self.mean_sessions = mean_sessions
        self.end = end


def _brands(n: int) -> list[str]:
    suffixes = ["", " Home", " & Co", " Works", " Studio"]
    names = [f"{stem}{suffix}" for suffix in suffixes for stem in BRAND_STEMS]
    return names[:n]


def _products(rng: np.random.Generator, sizes: SampleSizes) -> dict[str, np.ndarray | list]:
    cats = list(CATEGORIES)
    n = sizes.n_items
    # Categories have different sizes, as in a real catalogue.
    cat_share = rng.dirichlet(np.full(len(cats), 4.0))
    category = rng.choice(len(cats), size=n, p=cat_share)
    brands = _brands(sizes.n_brands)
    # Each brand concentrates on two or three categories.
    brand_home = [rng.choice(len(cats), size=3, replace=False) for _ in brands]
    brand = np.empty(n, dtype=np.int64)
    for i in range(n):
        candidates = [b for b, home in enumerate(brand_home) if category[i] in home]
        brand[i] = rng.choice(candidates) if candidates and rng.random() < 0.85 else rng.integers(len(brands))
    list_price = np.array([CATEGORY_PRICE[cats[c]] for c in category]) * rng.lognormal(0.0, 0.45, size=n)
    price = np.round(np.maximum(list_price, 1.0), 2) - 0.01
    titles, descriptions = [], []
    for i in range(n):
        noun = rng.choice(CATEGORIES[cats[category[i]]])
        adj, colour = rng.choice(ADJECTIVES), rng.choice(COLOURS)
        titles.append(f"{brands[brand[i]]} {adj} {colour} {noun}")
        tag = rng.choice(["gift ready", "best seller", "new season", "limited run", "customer favourite"])
        descriptions.append(
            f"A {adj} {noun} in {colour} from {brands[brand[i]]}. Part of our {cats[category[i]]} range; {tag}."
        )
    in_stock = rng.random(n) > 0.08
    return {
        "category": category,
        "brand": brand,
        "price": price,
        "title": titles,
        "description": descriptions,
        "in_stock": in_stock,
        "cats": cats,
        "brands": brands,
    }


def _format_ts(seconds: np.ndarray, start: dt.datetime) -> list[str]:
    base = np.datetime64(start.replace(tzinfo=None), "s")
    stamps = base + seconds.astype("timedelta64[s]")
    return [str(s).replace("T", " ") for s in stamps]


def generate_sample(out: str | Path, seed: int = 7, sizes: SampleSizes | None = None) -> dict[str, int]:
    """Write ``events.csv``, ``products.csv`` and ``customers.csv`` into ``out``.

    Parameters
    ----------
    out
        Output directory (created if missing).
    seed
        Seed of the random generator; the same seed writes byte-identical files.
    sizes
        Shop sizes; the default makes the shipped sample.

    Returns
    -------
    dict
        Row counts per file, plus the number of deliberately dirty event rows.
    """
    sizes = sizes or SampleSizes()
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prod = _products(rng, sizes)
    n_items, n_users = sizes.n_items, sizes.n_users
    n_cats = len(prod["cats"])

    # Long-tail base popularity: a Zipf-like curve over a random order of products.
    rank = rng.permutation(n_items) + 1
    log_pop = -0.9 * np.log(rank)

    # Latent tastes, fixed over time.
    cat_pref = np.zeros((n_users, n_cats))
    for u in range(n_users):
        fav = rng.choice(n_cats, size=rng.integers(2, 4), replace=False)
        cat_pref[u, fav] = rng.uniform(3.0, 4.0, size=len(fav))
    brand_pref = np.zeros((n_users, sizes.n_brands))
    for u in range(n_users):
        fav = rng.choice(sizes.n_brands, size=3, replace=False)
        brand_pref[u, fav] = 1.5
    dim = 6
    user_f = rng.normal(0, 0.6, size=(n_users, dim))
    item_f = rng.normal(0, 0.6, size=(n_items, dim))
    logits = log_pop[None, :] + cat_pref[:, prod["category"]] + brand_pref[:, prod["brand"]] + user_f @ item_f.T
    # The newest products (the last ones in the catalogue) arrive after the history ends:
    # catalogue rows without any event, for cold-start and content models.
    n_new = max(1, n_items // 40)
    logits[:, n_items - n_new :] = -np.inf
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    cdf = np.cumsum(probs, axis=1)

    start = dt.datetime.combine(sizes.end - dt.timedelta(days=sizes.n_days), dt.time())
    horizon = sizes.n_days * 86400
    users = [f"C{u + 10001:05d}" for u in range(n_users)]
    items = [f"P{i + 1:04d}" for i in range(n_items)]
    # Activity level differs a lot between customers (a few heavy users, many light ones).
    activity = rng.lognormal(0.0, 0.7, size=n_users)
    n_sessions = 1 + rng.poisson(sizes.mean_sessions * activity / activity.mean())

    # one (user, item, event, time, quantity) tuple per generated event
    rows: list[tuple[int, int, int, float, int]] = []
    for u in range(n_users):
        # Each customer shops across the whole period, so tastes seen in train carry to test.
        times = np.sort(rng.uniform(0, horizon - 3600, size=n_sessions[u]))
        for t0 in times:
            n_views = 1 + rng.poisson(2.0)
            picks = np.searchsorted(cdf[u], rng.random(n_views) * cdf[u, -1])
            t = t0
            for i in np.minimum(picks, n_items - 1):
                t += rng.integers(5, 240)
                rows.append((u, i, 0, t, 1))
                if rng.random() < 0.3:
                    t += rng.integers(5, 120)
                    rows.append((u, i, 1, t, 1))
                    if rng.random() < 0.55:
                        t += rng.integers(30, 600)
                        qty = 1 + rng.poisson(0.4)
                        rows.append((u, i, 2, t, qty))
    rows_u, rows_i, rows_e, rows_t, rows_q = (np.asarray(column) for column in zip(*rows, strict=True))
    order = np.argsort(rows_t, kind="stable")
    events = ["view", "add_to_cart", "purchase"]
    u_arr, i_arr = rows_u[order], rows_i[order]
    e_arr, q_arr = rows_e[order], rows_q[order]
    ts = _format_ts(rows_t[order], start)
    lines = [
        [users[u], items[i], events[e], t, str(q)] for u, i, e, t, q in zip(u_arr, i_arr, e_arr, ts, q_arr, strict=True)
    ]

    # Dirty rows a real export has: inserted at seeded positions, counted in the return value.
    dirty = []
    for _ in range(4):
        row = list(lines[rng.integers(len(lines))])
        row[0] = ""
        dirty.append(row)  # guest checkout
    for k in range(3):
        row = list(lines[rng.integers(len(lines))])
        row[1] = f"P9{k:03d}X"
        dirty.append(row)  # delisted product
    for _ in range(2):
        row = list(lines[rng.integers(len(lines))])
        row[3] = "31/02/2026 25:61"
        dirty.append(row)  # broken clock
    row = list(lines[rng.integers(len(lines))])
    row[2] = "wishlist"
    dirty.append(row)  # untracked event type
    row = list(lines[rng.integers(len(lines))])
    row[4] = "two"
    dirty.append(row)  # free-text quantity
    n_dupes = 5
    for _ in range(n_dupes):
        dirty.append(list(lines[rng.integers(len(lines))]))  # double-logged event
    for row in dirty:
        lines.insert(int(rng.integers(len(lines))), row)

    with open(out / "events.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(list(EVENT_COLUMNS.values()))
        writer.writerows(lines)
    with open(out / "products.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["product_id", "title", "description", "category", "brand", "price", "in_stock"])
        for i in range(n_items):
            writer.writerow(
                [
                    items[i],
                    prod["title"][i],
                    prod["description"][i],
                    prod["cats"][prod["category"][i]],
                    prod["brands"][prod["brand"][i]],
                    f"{prod['price'][i]:.2f}",
                    "true" if prod["in_stock"][i] else "false",
                ]
            )
    with open(out / "customers.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["customer_id", "country", "segment"])
        for u in range(n_users):
            writer.writerow([users[u], COUNTRIES[rng.integers(len(COUNTRIES))], SEGMENTS[rng.integers(len(SEGMENTS))]])
    return {
        "events": len(lines),
        "products": n_items,
        "customers": n_users,
        "dirty_events": len(dirty) - n_dupes,
        "duplicate_events": n_dupes,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m recctl.data.sample --out sample_data --seed 7``."""
    parser = argparse.ArgumentParser(description="Generate recctl's sample shop (events, products, customers).")
    parser.add_argument("--out", default="sample_data", help="output directory (default: sample_data)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument("--users", type=int, default=3000, help="number of customers")
    parser.add_argument("--items", type=int, default=1000, help="number of products")
    args = parser.parse_args(argv)
    counts = generate_sample(args.out, args.seed, SampleSizes(n_users=args.users, n_items=args.items))
    print(", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
