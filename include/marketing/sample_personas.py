"""Shopper personas planted by the sample generator, and the catalogue's categories.

Each persona is a small set of behaviour parameters (how often the shopper visits, how much
they browse, cart and buy, which price range and which categories they prefer). The
parameters are chosen so the six personas are far apart in the 90-day profile features
(recency, frequency, spend, views, carts, sessions, conversion, category shares, tenure)
while every user still gets individual noise (activity level, own category mix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CATEGORIES: tuple[str, ...] = (
    "electronics",
    "home",
    "fashion",
    "beauty",
    "sports",
    "books",
    "toys",
    "grocery",
)
"""Catalogue categories, in a fixed order (column order of every category array)."""

PRICE_TILTS: tuple[float, ...] = (0.0, -1.5, 1.5)
"""Exponents on (price / category median) when picking an item: neutral, cheap, expensive."""

SIGNUP_ESTABLISHED = "established"
SIGNUP_RECENT = "recent"

PREFERENCE_CONCENTRATION = 40.0
"""Dirichlet concentration of a user's own category mix around the persona's mix."""

ACTIVITY_SIGMA = 0.25
"""Sigma of the lognormal per-user activity multiplier (mean-one)."""

LAPSED_ACTIVE_FRACTION = 1.0 / 3.0
"""Lapsed shoppers behave normally in this first fraction of the period only."""


@dataclass(frozen=True)
class Persona:
    """Behaviour parameters of one shopper persona.

    Attributes
    ----------
    name : str
        Label written to ``sample_truth/personas.parquet``.
    population_share : float
        Fraction of users with this persona.
    daily_visit_rate : float
        Probability that an (average) user of the persona visits on a given day.
    extra_sessions_mean : float
        Poisson mean of additional sessions on a visiting day (1 + Poisson).
    views_per_session : tuple of float
        Probabilities of 1..6 item views in a session.
    cart_rate : float
        Probability that a viewed item is added to the cart.
    buy_rate : float
        Probability that a session with a cart ends in an order (all carted items bought).
    price_tilt : int
        Index into :data:`PRICE_TILTS`.
    category_mix : tuple of float
        Preference over :data:`CATEGORIES` (sums to 1).
    signup : str
        ``"established"`` (mostly before the period) or ``"recent"`` (last ~3 weeks).
    late_activity_factor : float
        Multiplier on the visit rate after the first third of the period (1 = unchanged).
    signup_session_buy_rate : float or None
        If set, a user who signs up during the period does so at checkout: the sign-up
        session has a cart and converts with this probability (None = ordinary session).
    """

    name: str
    population_share: float
    daily_visit_rate: float
    extra_sessions_mean: float
    views_per_session: tuple[float, ...]
    cart_rate: float
    buy_rate: float
    price_tilt: int
    category_mix: tuple[float, ...]
    signup: str = SIGNUP_ESTABLISHED
    late_activity_factor: float = 1.0
    signup_session_buy_rate: float | None = None


_FEW_VIEWS = (0.30, 0.30, 0.18, 0.10, 0.07, 0.05)
_SOME_VIEWS = (0.15, 0.22, 0.23, 0.18, 0.12, 0.10)
_MANY_VIEWS = (0.04, 0.08, 0.16, 0.24, 0.24, 0.24)

PERSONAS: tuple[Persona, ...] = (
    Persona(
        name="champions",
        population_share=0.12,
        daily_visit_rate=0.18,
        extra_sessions_mean=0.3,
        views_per_session=_FEW_VIEWS,
        cart_rate=0.45,
        buy_rate=0.85,
        price_tilt=0,
        #             elec  home  fash  beau  sport book  toys  groc
        category_mix=(0.04, 0.08, 0.62, 0.12, 0.04, 0.03, 0.03, 0.04),
    ),
    Persona(
        name="bargain_hunters",
        population_share=0.18,
        daily_visit_rate=0.14,
        extra_sessions_mean=0.35,
        views_per_session=_MANY_VIEWS,
        cart_rate=0.28,
        buy_rate=0.6,
        price_tilt=1,
        category_mix=(0.02, 0.04, 0.03, 0.03, 0.03, 0.05, 0.25, 0.55),
    ),
    Persona(
        name="window_shoppers",
        population_share=0.18,
        daily_visit_rate=0.12,
        extra_sessions_mean=0.35,
        views_per_session=_MANY_VIEWS,
        cart_rate=0.35,
        buy_rate=0.01,
        price_tilt=0,
        category_mix=(0.05, 0.62, 0.08, 0.04, 0.15, 0.02, 0.02, 0.02),
    ),
    Persona(
        name="big_ticket",
        population_share=0.12,
        daily_visit_rate=0.09,
        extra_sessions_mean=0.10,
        views_per_session=_SOME_VIEWS,
        cart_rate=0.3,
        buy_rate=0.75,
        price_tilt=2,
        category_mix=(0.60, 0.05, 0.02, 0.02, 0.25, 0.03, 0.02, 0.01),
    ),
    Persona(
        name="lapsed",
        population_share=0.20,
        daily_visit_rate=0.25,
        extra_sessions_mean=0.15,
        views_per_session=_SOME_VIEWS,
        cart_rate=0.35,
        buy_rate=0.75,
        price_tilt=0,
        category_mix=(0.03, 0.05, 0.04, 0.04, 0.03, 0.65, 0.10, 0.06),
        late_activity_factor=0.02,
    ),
    Persona(
        name="newcomers",
        population_share=0.20,
        daily_visit_rate=0.25,
        extra_sessions_mean=0.20,
        views_per_session=_SOME_VIEWS,
        cart_rate=0.45,
        buy_rate=0.8,
        price_tilt=0,
        category_mix=(0.02, 0.05, 0.12, 0.65, 0.03, 0.03, 0.06, 0.04),
        signup=SIGNUP_RECENT,
        signup_session_buy_rate=0.85,
    ),
)
"""The six planted personas, in code order (persona code = index)."""

PERSONA_NAMES: tuple[str, ...] = tuple(p.name for p in PERSONAS)


@dataclass(frozen=True)
class PersonaTable:
    """The persona parameters as arrays indexed by persona code (for vectorised lookups)."""

    share: np.ndarray
    visit_rate: np.ndarray
    extra_sessions: np.ndarray
    views_cdf: np.ndarray
    cart_rate: np.ndarray
    buy_rate: np.ndarray
    price_tilt: np.ndarray
    category_mix: np.ndarray
    is_recent_signup: np.ndarray
    late_activity_factor: np.ndarray
    signup_session_buy_rate: np.ndarray
    """NaN where the persona's sign-up session is ordinary."""


def persona_table(personas: tuple[Persona, ...] = PERSONAS) -> PersonaTable:
    """Stack persona parameters into arrays and check they are consistent.

    Parameters
    ----------
    personas : tuple of Persona
        The personas, in code order.

    Returns
    -------
    PersonaTable
        One array per parameter, first axis = persona code.
    """
    share = np.array([p.population_share for p in personas], dtype="float64")
    if not np.isclose(share.sum(), 1.0):
        raise ValueError(f"persona population shares must sum to 1, got {share.sum():.4f}")
    mix = np.array([p.category_mix for p in personas], dtype="float64")
    if mix.shape[1] != len(CATEGORIES) or not np.allclose(mix.sum(axis=1), 1.0):
        raise ValueError(f"each category_mix needs {len(CATEGORIES)} shares summing to 1")
    views = np.array([p.views_per_session for p in personas], dtype="float64")
    if not np.allclose(views.sum(axis=1), 1.0):
        raise ValueError("each views_per_session must sum to 1")
    views_cdf = np.cumsum(views, axis=1)
    views_cdf[:, -1] = 1.0
    return PersonaTable(
        share=share,
        visit_rate=np.array([p.daily_visit_rate for p in personas]),
        extra_sessions=np.array([p.extra_sessions_mean for p in personas]),
        views_cdf=views_cdf,
        cart_rate=np.array([p.cart_rate for p in personas]),
        buy_rate=np.array([p.buy_rate for p in personas]),
        price_tilt=np.array([p.price_tilt for p in personas], dtype="int8"),
        category_mix=mix,
        is_recent_signup=np.array([p.signup == SIGNUP_RECENT for p in personas]),
        late_activity_factor=np.array([p.late_activity_factor for p in personas]),
        signup_session_buy_rate=np.array([
            np.nan if p.signup_session_buy_rate is None else p.signup_session_buy_rate
            for p in personas
        ]),
    )
