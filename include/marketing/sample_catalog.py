"""The sample shop's item catalogue: categories, co-purchase groups, prices, and item picking.

Items of a category are split into co-purchase groups of ~10-20 items (a product line: one
brand, one kind of product). Shoppers pick a group per session and mostly look at items of
that group, so items of a group are bought together. Prices are lognormal per category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketing.sample_personas import CATEGORIES, PRICE_TILTS

CATEGORY_WEIGHTS: tuple[float, ...] = (0.12, 0.16, 0.18, 0.12, 0.10, 0.12, 0.10, 0.10)
"""Share of the catalogue in each category (order of :data:`CATEGORIES`)."""

CATEGORY_PRICES: tuple[tuple[float, float], ...] = (
    (180.0, 0.70),  # electronics: median, lognormal sigma
    (45.0, 0.60),  # home
    (40.0, 0.50),  # fashion
    (22.0, 0.45),  # beauty
    (50.0, 0.60),  # sports
    (14.0, 0.35),  # books
    (25.0, 0.50),  # toys
    (6.0, 0.45),  # grocery
)

TARGET_GROUP_SIZE = 15
"""Items per co-purchase group (groups are 10-20 items once a category has 10+ items)."""

_PRODUCTS: tuple[tuple[str, ...], ...] = (
    ("Headphones", "Smartphone", "Laptop", "Tablet", "Smartwatch", "Speaker", "Camera",
     "Monitor", "Keyboard", "Router"),
    ("Table Lamp", "Cushion", "Blender", "Kettle", "Rug", "Vase", "Cookware Set", "Bedding Set",
     "Planter", "Bookshelf"),
    ("T-Shirt", "Jeans", "Sneakers", "Jacket", "Dress", "Scarf", "Hoodie", "Boots", "Cap",
     "Handbag"),
    ("Moisturiser", "Serum", "Lipstick", "Shampoo", "Perfume", "Face Mask", "Sunscreen",
     "Conditioner", "Nail Polish", "Cleanser"),
    ("Yoga Mat", "Dumbbells", "Running Shoes", "Tent", "Water Bottle", "Bike Helmet",
     "Backpack", "Tennis Racket", "Football", "Jump Rope"),
    ("Novel", "Cookbook", "Biography", "Comic", "Travel Guide", "Vinyl Record", "Blu-ray",
     "Poetry Collection", "Atlas", "Puzzle Book"),
    ("Building Blocks", "Jigsaw Puzzle", "Doll", "Board Game", "Plush Bear", "Toy Car", "Kite",
     "Train Set", "Science Kit", "Card Game"),
    ("Coffee Beans", "Green Tea", "Olive Oil", "Pasta", "Chocolate Bar", "Granola", "Honey",
     "Basmati Rice", "Spice Mix", "Peanut Butter"),
)
_BRANDS = ("Acme", "Aster", "Juniper", "Lumen", "Mosaic", "Nova", "Orion", "Pico", "Terra",
           "Vela", "Zephyr", "Kestrel", "Maple", "Solstice", "Halcyon", "Birch")
_VARIANTS = ("Classic", "Pro", "Mini", "Eco", "Deluxe", "Essential", "Compact", "Premium",
             "Everyday", "Sport", "Plus", "Lite")
_COLOURS = ("Black", "White", "Blue", "Red", "Green", "Grey", "Sand", "Olive")


@dataclass(frozen=True)
class Catalog:
    """The generated catalogue plus lookup tables for fast vectorised item picking.

    Item index ``i`` has ``item_id = i + 1``. Groups are numbered ``0..n_groups-1`` in
    category order, so the groups of category ``c`` are a contiguous range.

    Attributes
    ----------
    item_id, name, category, price : numpy.ndarray
        One entry per item (category as an index into :data:`CATEGORIES`).
    group : numpy.ndarray
        Co-purchase group of each item.
    group_category : numpy.ndarray
        Category of each group.
    """

    item_id: np.ndarray
    name: np.ndarray
    category: np.ndarray
    price: np.ndarray
    group: np.ndarray
    group_category: np.ndarray
    _group_items: np.ndarray
    _group_end: np.ndarray
    _item_keys: tuple[np.ndarray, ...]
    _group_keys: np.ndarray
    _category_end: np.ndarray
    _global_cdf: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.item_id.size)

    @property
    def n_groups(self) -> int:
        return int(self.group_category.size)

    def pick_groups(self, category: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Pick a group of each given category, weighted by group popularity.

        Parameters
        ----------
        category : numpy.ndarray of int
            Category index per draw.
        u : numpy.ndarray of float
            Uniform [0, 1) numbers, one per draw.

        Returns
        -------
        numpy.ndarray of int64
            Group per draw.
        """
        pos = np.searchsorted(self._group_keys, category + u, side="right")
        return np.minimum(pos, self._category_end[category] - 1)

    def pick_items_in_groups(self, group: np.ndarray, u: np.ndarray, tilt: int) -> np.ndarray:
        """Pick an item index from each given group (popularity x price tilt weights)."""
        pos = np.searchsorted(self._item_keys[tilt], group + u, side="right")
        pos = np.minimum(pos, self._group_end[group] - 1)
        return self._group_items[pos]

    def pick_any_items(self, u: np.ndarray) -> np.ndarray:
        """Pick item indexes from the whole catalogue, weighted by popularity."""
        pos = np.searchsorted(self._global_cdf, u, side="right")
        return np.minimum(pos, self.n_items - 1)


def _split_counts(total: int, weights: tuple[float, ...]) -> np.ndarray:
    """Largest-remainder split of ``total`` by ``weights`` with at least one per weight."""
    w = np.asarray(weights, dtype="float64") / np.sum(weights)
    spare = total - len(w)
    raw = w * spare
    counts = np.floor(raw).astype("int64")
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: spare - counts.sum()]] += 1
    return counts + 1


def _keys(owner: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-owner cumulative keys ``owner + cumsum(w)/sum(w)`` (rows sorted by owner)."""
    cum = np.cumsum(weights)
    starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
    ends = np.r_[starts[1:], owner.size]
    before = np.r_[0.0, cum][starts]
    totals = cum[ends - 1] - before
    reps = ends - starts
    within = (cum - np.repeat(before, reps)) / np.repeat(totals, reps)
    within[ends - 1] = 1.0
    return owner + within


def build_catalog(n_items: int, rng: np.random.Generator) -> Catalog:
    """Generate ``n_items`` items in co-purchase groups with lognormal prices per category.

    Parameters
    ----------
    n_items : int
        Catalogue size, at least one item per category.
    rng : numpy.random.Generator
        Source of randomness (the caller seeds it).

    Returns
    -------
    Catalog
    """
    if n_items < len(CATEGORIES):
        raise ValueError(f"n_items must be >= {len(CATEGORIES)} (one per category), got {n_items}")
    per_category = _split_counts(n_items, CATEGORY_WEIGHTS)
    category = np.repeat(np.arange(len(CATEGORIES)), per_category)

    # groups: near-equal chunks of ~TARGET_GROUP_SIZE consecutive items of a category
    group = np.empty(n_items, dtype="int64")
    group_category = []
    start = 0
    for c, count in enumerate(per_category):
        n_groups = max(1, int(round(count / TARGET_GROUP_SIZE)))
        sizes = np.full(n_groups, count // n_groups)
        sizes[: count % n_groups] += 1
        group[start : start + count] = len(group_category) + np.repeat(np.arange(n_groups), sizes)
        group_category.extend([c] * n_groups)
        start += count
    group_category = np.asarray(group_category, dtype="int64")
    n_groups = group_category.size

    # prices: category median x group price level x item noise, ending in .99
    median = np.array([m for m, _ in CATEGORY_PRICES])[category]
    sigma = np.array([s for _, s in CATEGORY_PRICES])[category]
    # log-price variance sigma^2: a quarter from the group's price level, the rest per item
    group_level = rng.standard_normal(n_groups)[group]
    item_level = rng.standard_normal(n_items)
    raw_price = median * np.exp(sigma * (0.5 * group_level + np.sqrt(0.75) * item_level))
    price = np.maximum(np.round(raw_price), 1.0) - 0.01

    popularity = rng.lognormal(0.0, 0.6, n_items)
    group_popularity = rng.lognormal(0.0, 0.4, n_groups)

    # names: one brand and product per group, a variant and colour per item
    brand = rng.integers(0, len(_BRANDS), n_groups)
    product = rng.integers(0, len(_PRODUCTS[0]), n_groups)
    variant = rng.integers(0, len(_VARIANTS), n_items)
    colour = rng.integers(0, len(_COLOURS), n_items)
    name = np.array(
        [
            f"{_BRANDS[brand[g]]} {_VARIANTS[v]} {_PRODUCTS[group_category[g]][product[g]]}"
            f" ({_COLOURS[k]})"
            for g, v, k in zip(group.tolist(), variant.tolist(), colour.tolist(), strict=True)
        ],
        dtype=object,
    )

    # shuffle item ids so they say nothing about category or group
    order = rng.permutation(n_items)  # order[i] = generated item placed at index i
    category, group, price, name = category[order], group[order], price[order], name[order]
    popularity = popularity[order]

    group_items = np.argsort(group, kind="stable")
    sorted_groups = group[group_items]
    median_sorted = np.array([m for m, _ in CATEGORY_PRICES])[category[group_items]]
    relative_price = price[group_items] / median_sorted
    item_keys = tuple(
        _keys(sorted_groups, popularity[group_items] * relative_price**exponent)
        for exponent in PRICE_TILTS
    )
    group_end = np.searchsorted(sorted_groups, np.arange(n_groups), side="right")
    group_keys = _keys(group_category, group_popularity)
    category_end = np.searchsorted(group_category, np.arange(len(CATEGORIES)), side="right")
    global_cdf = np.cumsum(popularity) / popularity.sum()
    global_cdf[-1] = 1.0

    return Catalog(
        item_id=np.arange(1, n_items + 1, dtype="int64"),
        name=name,
        category=category,
        price=price,
        group=group,
        group_category=group_category,
        _group_items=group_items,
        _group_end=group_end,
        _item_keys=item_keys,
        _group_keys=group_keys,
        _category_end=category_end,
        _global_cdf=global_cdf,
    )
