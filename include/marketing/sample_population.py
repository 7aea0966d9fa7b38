"""The sample's users: persona, sign-up time, behaviour knobs, consent, erasure, suppression.

Days are indexed from the first day of the period (day 0). A user who signed up before the
period has a negative ``signup_day``. ``NEVER`` marks "no erasure" / "no suppression".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketing.sample_contacts import Contacts, build_contacts
from marketing.sample_personas import (
    ACTIVITY_SIGMA,
    PREFERENCE_CONCENTRATION,
    PersonaTable,
)

DAY_US = 86_400_000_000
"""Microseconds per day (timestamps are int64 microseconds since the Unix epoch, UTC)."""

NEVER = np.iinfo("int32").max
"""Day index meaning "never" (no erasure, no suppression)."""

PRE_PERIOD_DAYS = 730
"""Users signed up before the period did so up to this many days earlier."""

ESTABLISHED_IN_PERIOD_RATE = 0.125
"""Share of non-newcomer users who sign up early in the period rather than before it."""

EARLY_SIGNUP_FRACTION = 0.15
"""Non-newcomers who sign up in the period do so in this first fraction of it."""

RECENT_SIGNUP_DAYS = 21
"""Newcomers sign up in the last this-many days (at most a third of the period)."""

LATEST_SIGNUP_SECOND = 22 * 3600
"""Sign-ups happen before 22:00 so the user can still shop on the day."""

EMAIL_OPT_IN_RATE = 0.60
ADS_OPT_IN_RATE = 0.70
ERASURE_RATE = 0.005
SUPPRESSION_RATE = 0.03
SUPPRESSION_REASONS: tuple[str, ...] = ("unsubscribe", "bounce", "complaint")
SUPPRESSION_REASON_WEIGHTS: tuple[float, ...] = (0.70, 0.20, 0.10)


@dataclass(frozen=True)
class Population:
    """All users of the sample, ordered by sign-up time (``user_id = index + 1``).

    Attributes
    ----------
    user_id : numpy.ndarray of int64
    persona : numpy.ndarray of int8
        Persona code (index into :data:`marketing.sample_personas.PERSONAS`).
    signed_up_at : numpy.ndarray of int64
        Microseconds since the epoch (UTC).
    signup_day : numpy.ndarray of int32
        Day index of the sign-up date (negative before the period).
    signup_time_of_day : numpy.ndarray of int64
        Microseconds after midnight of the sign-up.
    visit_rate : numpy.ndarray of float64
        Daily visit probability before day / persona phase factors.
    category_cdf : numpy.ndarray of float32, shape (n_users, n_categories)
        Cumulative own category preferences.
    email_opt_in, ads_opt_in : numpy.ndarray of bool
    erasure_day : numpy.ndarray of int32
        Day of the erasure request, ``NEVER`` if none; no activity from that day on.
    erasure_at : numpy.ndarray of int64
        Timestamp of the request (undefined where ``erasure_day == NEVER``).
    suppression_day : numpy.ndarray of int32
        Day the e-mail was suppressed, ``NEVER`` if never.
    suppression_at : numpy.ndarray of int64
    suppression_reason : numpy.ndarray of int8
        Index into :data:`SUPPRESSION_REASONS`.
    suppressed_email : pyarrow.Array of str
        The e-mail as the suppression list writes it (trimmed, maybe re-cased); NULL for
        users never suppressed.
    contacts : Contacts
    """

    user_id: np.ndarray
    persona: np.ndarray
    signed_up_at: np.ndarray
    signup_day: np.ndarray
    signup_time_of_day: np.ndarray
    visit_rate: np.ndarray
    category_cdf: np.ndarray
    email_opt_in: np.ndarray
    ads_opt_in: np.ndarray
    erasure_day: np.ndarray
    erasure_at: np.ndarray
    suppression_day: np.ndarray
    suppression_at: np.ndarray
    suppression_reason: np.ndarray
    suppressed_email: pa.Array
    contacts: Contacts

    @property
    def n_users(self) -> int:
        return int(self.user_id.size)


def _uniform_int(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """One integer in ``[low, high)`` per element (``high > low``)."""
    span = (high - low).astype("float64")
    return low + np.minimum((rng.random(span.size) * span).astype("int64"), high - low - 1)


def _signups(
    persona: np.ndarray, table: PersonaTable, n_days: int, start_us: int, rng: np.random.Generator
) -> np.ndarray:
    n = persona.size
    recent = table.is_recent_signup[persona]
    in_period = ~recent & (rng.random(n) < ESTABLISHED_IN_PERIOD_RATE)
    early_days = max(1, round(EARLY_SIGNUP_FRACTION * n_days))
    recent_days = min(RECENT_SIGNUP_DAYS, max(1, n_days // 3))
    day = np.where(
        recent,
        n_days - recent_days + rng.integers(0, recent_days, n),
        rng.integers(0, early_days, n),
    )
    time_of_day = rng.integers(0, LATEST_SIGNUP_SECOND * 1_000_000, n)
    in_period_at = start_us + day * DAY_US + time_of_day
    before_at = start_us - 1 - rng.integers(0, PRE_PERIOD_DAYS * DAY_US, n)
    return np.where(recent | in_period, in_period_at, before_at)


def build_population(
    n_users: int,
    n_days: int,
    start_us: int,
    table: PersonaTable,
    behaviour_rng: np.random.Generator,
    contact_rng: np.random.Generator,
    lifecycle_rng: np.random.Generator,
) -> Population:
    """Draw personas, sign-ups, behaviour knobs, consent, contacts, erasures and suppressions.

    Parameters
    ----------
    n_users, n_days : int
        Sample size and length of the period in days.
    start_us : int
        Midnight of day 0 in microseconds since the epoch.
    table : PersonaTable
        Persona parameters.
    behaviour_rng, contact_rng, lifecycle_rng : numpy.random.Generator
        Independent streams, so changing contact details never changes behaviour.

    Returns
    -------
    Population
    """
    rng = behaviour_rng
    persona = rng.choice(table.share.size, size=n_users, p=table.share).astype("int8")
    signed_up_at = _signups(persona, table, n_days, start_us, rng)
    activity = rng.lognormal(-0.5 * ACTIVITY_SIGMA**2, ACTIVITY_SIGMA, n_users)
    alpha = PREFERENCE_CONCENTRATION * table.category_mix[persona]
    prefs = rng.gamma(alpha)
    prefs /= prefs.sum(axis=1, keepdims=True)
    email_opt_in = rng.random(n_users) < EMAIL_OPT_IN_RATE
    ads_opt_in = rng.random(n_users) < ADS_OPT_IN_RATE

    # user ids follow sign-up order, like an auto-increment key
    order = np.argsort(signed_up_at, kind="stable")
    persona, signed_up_at, activity = persona[order], signed_up_at[order], activity[order]
    prefs, email_opt_in, ads_opt_in = prefs[order], email_opt_in[order], ads_opt_in[order]

    signup_day = np.floor_divide(signed_up_at - start_us, DAY_US).astype("int32")
    signup_time_of_day = signed_up_at - (start_us + signup_day.astype("int64") * DAY_US)
    category_cdf = np.cumsum(prefs, axis=1).astype("float32")
    category_cdf[:, -1] = 1.0
    visit_rate = np.minimum(table.visit_rate[persona] * activity, 0.9)

    contacts = build_contacts(n_users, contact_rng)
    lifecycle = _lifecycle(signup_day, signup_time_of_day, n_days, start_us, contacts.email,
                           lifecycle_rng)
    return Population(
        user_id=np.arange(1, n_users + 1, dtype="int64"),
        persona=persona,
        signed_up_at=signed_up_at,
        signup_day=signup_day,
        signup_time_of_day=signup_time_of_day,
        visit_rate=visit_rate,
        category_cdf=category_cdf,
        email_opt_in=email_opt_in,
        ads_opt_in=ads_opt_in,
        contacts=contacts,
        **lifecycle,
    )


def _lifecycle(
    signup_day: np.ndarray,
    signup_time_of_day: np.ndarray,
    n_days: int,
    start_us: int,
    email: pa.Array,
    rng: np.random.Generator,
) -> dict[str, np.ndarray | pa.Array]:
    """Erasure requests (~0.5%) and e-mail suppressions (~3%) on random days."""
    n = signup_day.size
    erasure_day = np.full(n, NEVER, dtype="int32")
    erasure_at = np.zeros(n, dtype="int64")
    candidates = np.flatnonzero(signup_day < n_days - 1)
    n_erased = min(int(round(ERASURE_RATE * n)), candidates.size)
    erased = np.sort(rng.choice(candidates, size=n_erased, replace=False))
    first = np.maximum(signup_day[erased] + 1, 1)
    erasure_day[erased] = _uniform_int(rng, first, np.full(erased.size, n_days))
    erasure_at[erased] = (
        start_us + erasure_day[erased].astype("int64") * DAY_US
        + rng.integers(0, DAY_US, erased.size)
    )

    suppression_day = np.full(n, NEVER, dtype="int32")
    suppression_at = np.zeros(n, dtype="int64")
    reason = np.zeros(n, dtype="int8")
    first_day = np.maximum(signup_day, 0)
    last_day = np.minimum(erasure_day, n_days)  # exclusive
    candidates = np.flatnonzero(first_day < last_day)
    n_suppressed = min(int(round(SUPPRESSION_RATE * n)), candidates.size)
    chosen = np.sort(rng.choice(candidates, size=n_suppressed, replace=False))
    day = _uniform_int(rng, first_day[chosen], last_day[chosen])
    earliest = np.where(day == signup_day[chosen], signup_time_of_day[chosen], 0)
    suppression_day[chosen] = day
    suppression_at[chosen] = (
        start_us + day.astype("int64") * DAY_US
        + _uniform_int(rng, earliest, np.full(chosen.size, DAY_US))
    )
    reason[chosen] = rng.choice(
        len(SUPPRESSION_REASONS), size=chosen.size, p=np.asarray(SUPPRESSION_REASON_WEIGHTS)
    )
    # the suppression list holds the address trimmed, as written or re-cased
    written = pc.utf8_trim_whitespace(email.take(pa.array(chosen, type=pa.int64())))
    case = pa.array(rng.random(chosen.size))
    written = pc.if_else(pc.less(case, 0.35), pc.utf8_lower(written), written)
    written = pc.if_else(pc.greater(case, 0.85), pc.utf8_upper(written), written)
    slot = np.full(n, -1, dtype="int64")
    slot[chosen] = np.arange(chosen.size)
    written = written.take(pa.array(slot, mask=slot < 0))
    return {
        "erasure_day": erasure_day,
        "erasure_at": erasure_at,
        "suppression_day": suppression_day,
        "suppression_at": suppression_at,
        "suppression_reason": reason,
        "suppressed_email": written,
    }
