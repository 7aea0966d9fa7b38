"""One day of shop activity: sessions, views, carts, orders and purchase events (vectorised).

Per day: each live user visits with a persona- and user-specific probability; a visit has
1 + Poisson sessions; a session picks a co-purchase group (by the user's category
preferences) and views 1-6 items, mostly (:data:`IN_GROUP_RATE`) from that group; viewed
items are carted with the persona's cart rate; a session with a cart ends in an order with
the persona's buy rate, and every distinct carted item becomes an order line with one
``purchase`` event. The running per-user state needed for point-in-time campaign features
(orders so far, spend, last order day, views per day of the last 30 days) is updated in
place, so memory stays O(users).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketing.sample_catalog import Catalog
from marketing.sample_personas import LAPSED_ACTIVE_FRACTION, PersonaTable
from marketing.sample_population import Population

IN_GROUP_RATE = 0.85
"""Share of a session's views drawn from the session's co-purchase group."""

WEEKEND_UPLIFT = 1.2
VIEW_WINDOW_DAYS = 30

_SECOND = 1_000_000
LAST_SESSION_START = 23 * 3600 * _SECOND
"""Sessions start before 23:00 and last well under an hour, so they end inside the day."""

QUANTITY_PMF: tuple[float, ...] = (0.78, 0.15, 0.05, 0.015, 0.005)
"""Probabilities of quantity 1..5 on an order line."""
_QUANTITY_CDF = np.cumsum(QUANTITY_PMF) / np.sum(QUANTITY_PMF)

EVENT_VIEW, EVENT_CART, EVENT_PURCHASE = 0, 1, 2
EVENT_TYPES: tuple[str, ...] = ("view", "cart", "purchase")


@dataclass
class ShopperState:
    """Running per-user state (mutable; arrays indexed by user index).

    Attributes
    ----------
    orders : numpy.ndarray of int64
        Orders placed so far.
    spend : numpy.ndarray of float64
        Money spent so far.
    last_order_day : numpy.ndarray of int32
        Day index of the latest order, -1 if none.
    views_by_day : numpy.ndarray of uint16, shape (30, n_users)
        Ring buffer: row ``day % 30`` holds that day's views.
    """

    orders: np.ndarray
    spend: np.ndarray
    last_order_day: np.ndarray
    views_by_day: np.ndarray

    @classmethod
    def empty(cls, n_users: int) -> ShopperState:
        return cls(
            orders=np.zeros(n_users, dtype="int64"),
            spend=np.zeros(n_users, dtype="float64"),
            last_order_day=np.full(n_users, -1, dtype="int32"),
            views_by_day=np.zeros((VIEW_WINDOW_DAYS, n_users), dtype="uint16"),
        )

    def views_last_30_days(self, users: np.ndarray) -> np.ndarray:
        """Views of ``users`` in the 30 days before the day being simulated next."""
        return self.views_by_day[:, users].sum(axis=0, dtype="int64")


@dataclass
class IdCounters:
    """Next free ids; advanced as rows are generated so ids are unique and time-ordered."""

    event: int = 1
    order: int = 1
    session: int = 1
    send: int = 1
    response: int = 1


@dataclass(frozen=True)
class DayActivity:
    """Rows generated for one day (column name -> array), ready for writing."""

    events: dict[str, np.ndarray]
    orders: dict[str, np.ndarray]
    order_lines: dict[str, np.ndarray]
    n_sessions: int


def _draw_from_cdf(cdf_rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn from each row's CDF (rows of ``cdf_rows``, one uniform each)."""
    return np.minimum((cdf_rows < u[:, None]).sum(axis=1), cdf_rows.shape[1] - 1)


def _within_offsets(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For runs of lengths ``counts``: owner of each element, run starts, position in run."""
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    position = np.arange(owner.size) - starts[owner]
    return owner, starts, position


def simulate_day(
    day: int,
    day_start_us: int,
    n_days: int,
    is_weekend: bool,
    population: Population,
    catalog: Catalog,
    table: PersonaTable,
    state: ShopperState,
    ids: IdCounters,
    rng: np.random.Generator,
) -> DayActivity:
    """Generate one day of sessions, events and orders and update ``state`` and ``ids``.

    Parameters
    ----------
    day : int
        Day index (0 = first day of the period).
    day_start_us : int
        Midnight of the day in microseconds since the epoch (UTC).
    n_days : int
        Length of the period (lapsed shoppers fade after its first third).
    is_weekend : bool
        Saturdays and Sundays get :data:`WEEKEND_UPLIFT` more visits.
    population, catalog, table :
        The users, the items and the persona parameters.
    state : ShopperState
        Updated in place with the day's orders, spend and views.
    ids : IdCounters
        Advanced past the ids used.
    rng : numpy.random.Generator
        The day's own random stream.

    Returns
    -------
    DayActivity
    """
    pop = population
    # who visits today
    alive = np.flatnonzero((pop.signup_day <= day) & (pop.erasure_day > day))
    phase = np.where(day < LAPSED_ACTIVE_FRACTION * n_days, 1.0, table.late_activity_factor)
    rate = pop.visit_rate[alive] * phase[pop.persona[alive]]
    if is_weekend:
        rate = rate * WEEKEND_UPLIFT
    rate = np.where(pop.signup_day[alive] == day, 1.0, rate)  # sign-up is itself a visit
    visitors = alive[rng.random(alive.size) < rate]
    n_sessions = 1 + rng.poisson(table.extra_sessions[pop.persona[visitors]])

    # sessions (a visitor's sessions are consecutive; the first one opens a new sign-up's day)
    s_user = np.repeat(visitors, n_sessions)
    s_signup = np.zeros(s_user.size, dtype=bool)
    checkout_signup = (pop.signup_day[visitors] == day) & ~np.isnan(
        table.signup_session_buy_rate[pop.persona[visitors]]
    )
    s_signup[(np.cumsum(n_sessions) - n_sessions)[checkout_signup]] = True
    n_s = s_user.size
    s_persona = pop.persona[s_user]
    earliest = np.where(pop.signup_day[s_user] == day, pop.signup_time_of_day[s_user], 0)
    s_start = earliest + (rng.random(n_s) * (LAST_SESSION_START - earliest)).astype("int64")
    s_category = _draw_from_cdf(pop.category_cdf[s_user], rng.random(n_s).astype("float32"))
    s_group = catalog.pick_groups(s_category, rng.random(n_s))
    n_views = 1 + _draw_from_cdf(table.views_cdf[s_persona], rng.random(n_s))

    # views: spaced 10 s .. 400 s apart inside the session
    v_session, s_first, v_position = _within_offsets(n_views)
    n_v = v_session.size
    gap = np.minimum(10 + rng.exponential(60.0, n_v), 400.0) * _SECOND
    gap = np.where(v_position == 0, 0.0, gap).astype("int64")
    elapsed = np.cumsum(gap)
    v_time = s_start[v_session] + elapsed - elapsed[s_first[v_session]]
    v_persona = s_persona[v_session]
    v_item = np.empty(n_v, dtype="int64")
    u = rng.random(n_v)
    in_group = rng.random(n_v) < IN_GROUP_RATE
    v_tilt = table.price_tilt[v_persona]
    for tilt in np.unique(v_tilt):
        mask = in_group & (v_tilt == tilt)
        v_item[mask] = catalog.pick_items_in_groups(s_group[v_session[mask]], u[mask], int(tilt))
    v_item[~in_group] = catalog.pick_any_items(u[~in_group])

    # carts: 5 s .. 50 s after the view
    carted = rng.random(n_v) < table.cart_rate[v_persona]
    carted |= s_signup[v_session] & (v_position == 0)
    c_view = np.flatnonzero(carted)
    c_time = v_time[c_view] + rng.integers(5 * _SECOND, 50 * _SECOND, c_view.size)

    # orders: sessions with a cart that convert; lines = distinct carted items, in cart order
    has_cart = np.bincount(v_session[c_view], minlength=n_s) > 0
    buy_rate = np.where(s_signup, table.signup_session_buy_rate[s_persona],
                        table.buy_rate[s_persona])
    buys = has_cart & (rng.random(n_s) < buy_rate)
    candidates = c_view[buys[v_session[c_view]]]
    _, first_seen = np.unique(
        v_session[candidates] * catalog.n_items + v_item[candidates], return_index=True
    )
    line_view = candidates[np.sort(first_seen)]
    o_session = np.flatnonzero(buys)
    last_view = s_first[o_session] + n_views[o_session] - 1
    o_time = v_time[last_view] + rng.integers(60 * _SECOND, 240 * _SECOND, o_session.size)
    # order ids follow order time
    o_rank = np.lexsort((o_session, o_time))
    o_session, o_time = o_session[o_rank], o_time[o_rank]
    order_id = ids.order + np.arange(o_session.size, dtype="int64")
    session_order = np.full(n_s, -1, dtype="int64")
    session_order[o_session] = np.arange(o_session.size)

    l_session = v_session[line_view]
    l_order = session_order[l_session]
    l_sorted = np.lexsort((line_view, l_order))
    line_view, l_session, l_order = line_view[l_sorted], l_session[l_sorted], l_order[l_sorted]
    _, _, l_number = _within_offsets(np.bincount(l_order, minlength=o_session.size))
    l_item = v_item[line_view]
    l_quantity = 1 + np.searchsorted(_QUANTITY_CDF, rng.random(line_view.size), side="right")
    l_quantity = np.minimum(l_quantity, len(QUANTITY_PMF))
    l_price = catalog.price[l_item]
    l_time = o_time[l_order]

    # events, in time order
    e_session = np.concatenate([v_session, v_session[c_view], l_session])
    e_user = s_user[e_session]
    e_item = np.concatenate([v_item, v_item[c_view], l_item])
    e_type = np.concatenate([
        np.full(n_v, EVENT_VIEW, dtype="int8"),
        np.full(c_view.size, EVENT_CART, dtype="int8"),
        np.full(line_view.size, EVENT_PURCHASE, dtype="int8"),
    ])
    e_time = np.concatenate([v_time, c_time, l_time])
    e_seq = np.concatenate([np.arange(n_v), c_view, line_view])
    e_order = np.lexsort((e_seq, e_type, e_session, e_time))
    n_e = e_order.size
    events = {
        "event_id": ids.event + np.arange(n_e, dtype="int64"),
        "user_id": pop.user_id[e_user[e_order]],
        "item_id": catalog.item_id[e_item[e_order]],
        "event_type": e_type[e_order],
        "event_at": day_start_us + e_time[e_order],
        "session_id": ids.session + e_session[e_order].astype("int64"),
    }
    o_user = s_user[o_session]
    orders = {
        "order_id": order_id,
        "user_id": pop.user_id[o_user],
        "ordered_at": day_start_us + o_time,
    }
    order_lines = {
        "order_id": order_id[l_order],
        "line_number": (l_number + 1).astype("int32"),
        "item_id": catalog.item_id[l_item],
        "quantity": l_quantity.astype("int32"),
        "unit_price": l_price,
    }

    # running state for point-in-time features
    n_users = pop.n_users
    state.orders += np.bincount(o_user, minlength=n_users)
    state.spend += np.bincount(
        s_user[l_session], weights=l_quantity * l_price, minlength=n_users
    )
    state.last_order_day[o_user] = day
    day_views = np.bincount(s_user[v_session], minlength=n_users)
    state.views_by_day[day % VIEW_WINDOW_DAYS] = np.minimum(day_views, 65_535)

    ids.event += n_e
    ids.order += o_session.size
    ids.session += n_s
    return DayActivity(events=events, orders=orders, order_lines=order_lines, n_sessions=n_s)
