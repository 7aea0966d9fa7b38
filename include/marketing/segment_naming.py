"""Human-readable segment names from a centroid's standout features.

A segment is described by the z-scores of its centroid against the whole population
(0 = average user, +1 = one standard deviation above). A feature "stands out" when its
|z| reaches :data:`STANDOUT_Z`. The name is built from a few fixed rules, in a fixed
order, so the same centroid always gets the same name:

1. lifecycle: ``New`` (short tenure), ``Lapsed`` (long since the last order, among
   users who did order; never-ordered users also sit at the recency cap) or ``Lapsing``
   (buyers whose last-30-day sessions are low and well below their 90-day level: activity
   is dropping before recency shows it);
2. value: ``High spend`` / ``Low spend`` (lifetime monetary value);
3. frequency: ``frequent`` (lifetime orders);
4. engagement: ``Browsers, rarely buy`` (many sessions or views, low conversion) or
   ``engaged`` (many sessions);
5. interests: up to two categories whose ``share_<category>`` stands out upwards.

Low-side descriptors ("low spend") are dropped when they are implied by an earlier one
(a new user or a browser has naturally spent little). A centroid with no standout feature
is ``Mainstream``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

STANDOUT_Z = 0.5
"""|z| from which a centroid feature counts as distinctive."""

MAX_INTERESTS = 2
"""At most this many category interests appear in a name."""

DEFAULT_NAME = "Mainstream"
"""Name of a segment with no standout feature."""

SHARE_PREFIX = "share_"


def _z(zscores: pd.Series, feature: str) -> float:
    """Return the z-score of ``feature``, 0 when the feature is absent or NaN."""
    if feature not in zscores.index:
        return 0.0
    value = zscores[feature]
    return 0.0 if pd.isna(value) else float(value)


def _category_label(column: str) -> str:
    """Turn ``share_home_garden`` into ``home garden``."""
    return column[len(SHARE_PREFIX) :].replace("_", " ").strip()


def name_segment(zscores: pd.Series, threshold: float = STANDOUT_Z) -> str:
    """Name a segment from the z-scores of its centroid.

    Parameters
    ----------
    zscores : pandas.Series
        Centroid z-scores indexed by profile feature name (``recency_days``,
        ``monetary_lifetime``, ``share_<category>``, ...). Missing features count as 0.
    threshold : float, default 0.5
        |z| from which a feature is distinctive.

    Returns
    -------
    str
        A short name such as ``"High spend, frequent, electronics"``, ``"Lapsed"``,
        ``"Lapsing, books"``,
        ``"Browsers, rarely buy"``, ``"New"`` or ``"Mainstream"``.

    Raises
    ------
    ValueError
        If ``threshold`` is not positive.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    t = threshold
    parts: list[str] = []

    is_new = _z(zscores, "tenure_days") <= -t
    # never-ordered users also sit at the recency cap: lapsed means "bought, then stopped"
    has_ordered = _z(zscores, "count_orders_lifetime") > -t
    is_lapsed = not is_new and has_ordered and _z(zscores, "recency_days") >= t
    recent_sessions = _z(zscores, "count_sessions_30d")
    is_lapsing = (
        not (is_new or is_lapsed) and has_ordered and recent_sessions <= -t
        and recent_sessions - _z(zscores, "count_sessions_90d") <= -t
    )
    if is_new:
        parts.append("new")
    elif is_lapsed:
        parts.append("lapsed")
    elif is_lapsing:
        parts.append("lapsing")

    activity = max(_z(zscores, "count_sessions_90d"), _z(zscores, "count_views_90d"))
    buys_rarely = (
        _z(zscores, "conversion_rate_90d") <= -t
        or _z(zscores, "count_orders_lifetime") <= -t
    )
    is_browser = activity >= t and buys_rarely

    monetary = _z(zscores, "monetary_lifetime")
    if monetary >= t:
        parts.append("high spend")
    elif monetary <= -t and not (is_new or is_browser):
        parts.append("low spend")

    if _z(zscores, "count_orders_lifetime") >= t:
        parts.append("frequent")

    if is_browser:
        parts.append("browsers, rarely buy")
    elif activity >= t and not parts:
        parts.append("engaged")

    shares = sorted(
        (
            (-_z(zscores, column), column)
            for column in zscores.index
            if isinstance(column, str) and column.startswith(SHARE_PREFIX)
        ),
    )
    interests = [_category_label(column) for neg_z, column in shares if -neg_z >= t]
    parts.extend(interests[:MAX_INTERESTS])

    if not parts:
        return DEFAULT_NAME
    name = ", ".join(parts)
    return name[0].upper() + name[1:]


def make_unique(names: Iterable[str]) -> list[str]:
    """Disambiguate duplicate names by appending `` (2)``, `` (3)``, ... in order.

    Parameters
    ----------
    names : iterable of str
        Names in segment-id order; the first occurrence keeps its name.

    Returns
    -------
    list of str
        Names, unique, same length and order as the input.
    """
    result: list[str] = []
    taken: set[str] = set()
    for name in names:
        candidate, counter = name, 1
        while candidate in taken:
            counter += 1
            candidate = f"{name} ({counter})"
        taken.add(candidate)
        result.append(candidate)
    return result
