"""Sample marketing campaigns: schedule, sends, and responses from a known logistic function.

Each campaign is sent at midnight (UTC) of its start day to a random share of the users
who signed up before that day, are not erased, and consented to the channel (e-mail also:
not suppressed). A send responds with the probability given by :data:`RESPONSE_FUNCTION`
of features observable at ``sent_at`` -- that is, from data up to the end of the previous
day -- plus a treatment effect for non-control sends. The response lands on a uniformly
drawn day of the 7-day window; responses after the period or on/after the user's erasure
day are not written (the truth file still has the send's probability).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketing.sample_activity import IdCounters, ShopperState
from marketing.sample_population import DAY_US, Population

RESPONSE_WINDOW_DAYS = 7
SEND_RATE = 0.30
"""Share of the eligible users each campaign is sent to."""
CONTROL_RATE = 0.10
"""Share of a campaign's sends held out as control (recorded, not actually contacted)."""
RECENCY_CAP_DAYS = 90
TENURE_CAP_DAYS = 730


@dataclass(frozen=True)
class CampaignPlan:
    """One planned campaign: when (as a fraction of the period), channel and theme."""

    period_fraction: float
    channel: str
    theme: str


CAMPAIGN_PLANS: tuple[CampaignPlan, ...] = (
    CampaignPlan(0.20, "email", "Autumn preview"),
    CampaignPlan(0.40, "meta_ads", "Weekend flash sale"),
    CampaignPlan(0.60, "google_ads", "Back in stock"),
    CampaignPlan(0.80, "email", "Loyalty rewards"),
)


@dataclass(frozen=True)
class ResponseFunction:
    """The true response model: ``logit(p) = intercept + sum(coef * term) + treatment``.

    Terms (features as of ``sent_at``, see :meth:`definition`):

    - ``log1p_orders``   = ln(1 + count_orders_lifetime)
    - ``recency_months`` = min(coalesce(recency_days, 90), 90) / 30
    - ``log1p_views_30d`` = ln(1 + count_views_30d)
    - ``tenure_years``   = min(tenure_days, 730) / 365
    - ``is_treated``     = 1 - is_control
    """

    intercept: float = -4.60
    log1p_orders: float = 0.85
    recency_months: float = -0.50
    log1p_views_30d: float = 0.45
    tenure_years: float = 0.35
    is_treated: float = 0.60

    def probability(
        self,
        count_orders_lifetime: np.ndarray,
        recency_days: np.ndarray,
        count_views_30d: np.ndarray,
        tenure_days: np.ndarray,
        is_control: np.ndarray,
    ) -> np.ndarray:
        """True response probability per send (``recency_days`` NaN = never ordered)."""
        recency = np.minimum(np.nan_to_num(recency_days, nan=RECENCY_CAP_DAYS), RECENCY_CAP_DAYS)
        logit = (
            self.intercept
            + self.log1p_orders * np.log1p(count_orders_lifetime)
            + self.recency_months * recency / 30.0
            + self.log1p_views_30d * np.log1p(count_views_30d)
            + self.tenure_years * np.minimum(tenure_days, TENURE_CAP_DAYS) / 365.0
            + self.is_treated * (~np.asarray(is_control, dtype=bool))
        )
        return 1.0 / (1.0 + np.exp(-logit))

    def definition(self) -> dict:
        """The function and its feature definitions, as written to ``response_function.json``."""
        return {
            "model": "logistic",
            "formula": (
                "p = 1 / (1 + exp(-(intercept + log1p_orders * ln(1 + count_orders_lifetime)"
                " + recency_months * min(coalesce(recency_days, 90), 90) / 30"
                " + log1p_views_30d * ln(1 + count_views_30d)"
                " + tenure_years * min(tenure_days, 730) / 365"
                " + is_treated * (1 - is_control))))"
            ),
            "coefficients": {
                "intercept": self.intercept,
                "log1p_orders": self.log1p_orders,
                "recency_months": self.recency_months,
                "log1p_views_30d": self.log1p_views_30d,
                "tenure_years": self.tenure_years,
                "is_treated": self.is_treated,
            },
            "features": {
                "as_of": (
                    "sent_at, which is midnight UTC at the start of the send day: features use "
                    "only rows with timestamps < sent_at, i.e. data up to the end of the day "
                    "before the send (the same as a user profile with as_of_date = send date "
                    "- 1 day)"
                ),
                "count_orders_lifetime": "number of the user's orders with ordered_at < sent_at",
                "recency_days": (
                    "date_diff('day', cast(max(ordered_at) as date), cast(sent_at as date)) "
                    "over the user's orders with ordered_at < sent_at; NULL when there are none "
                    "(the function then uses 90)"
                ),
                "count_views_30d": (
                    "number of the user's 'view' events with "
                    "sent_at - interval 30 day <= event_at < sent_at"
                ),
                "tenure_days": (
                    "date_diff('day', cast(signed_up_at as date), cast(sent_at as date))"
                ),
                "is_control": "campaign_sends.is_control",
            },
            "eligibility": (
                f"each campaign goes to a random {SEND_RATE:.0%} of users who signed up before "
                "the send day, are not erased by then and consented to the channel "
                "(email: email_opt_in and not suppressed before the send day; ads: ads_opt_in); "
                f"{CONTROL_RATE:.0%} of sends are control"
            ),
            "response_window_days": RESPONSE_WINDOW_DAYS,
            "response_timing": (
                "the response day is the send day plus a uniform 0..6 days, at a uniform time "
                "of that day; responses after the sample's end_date or on/after the user's "
                "erasure day are not written"
            ),
        }


RESPONSE_FUNCTION = ResponseFunction()


@dataclass(frozen=True)
class CampaignDay:
    """Rows produced by sending one campaign (send-day rows plus responses due later)."""

    campaign: dict[str, np.ndarray]
    sends: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    responses_by_day: dict[int, dict[str, np.ndarray]]


def campaign_days(n_days: int) -> list[int]:
    """Send day of each planned campaign (strictly increasing, inside the period)."""
    days: list[int] = []
    for plan in CAMPAIGN_PLANS:
        day = int(round(plan.period_fraction * (n_days - 1)))
        days.append(max(day, days[-1] + 1) if days else day)
    if days[-1] >= n_days:
        raise ValueError(f"n_days too short for {len(CAMPAIGN_PLANS)} campaigns, got {n_days}")
    return days


def send_campaign(
    campaign_id: int,
    plan: CampaignPlan,
    day: int,
    day_start_us: int,
    n_days: int,
    population: Population,
    state: ShopperState,
    ids: IdCounters,
    rng: np.random.Generator,
    response_function: ResponseFunction = RESPONSE_FUNCTION,
) -> CampaignDay:
    """Send one campaign at midnight of ``day``; must run before the day's activity.

    Parameters
    ----------
    campaign_id : int
        Id of the campaign.
    plan : CampaignPlan
        Channel and theme.
    day : int
        Send day index; ``state`` must hold data up to the end of ``day - 1``.
    day_start_us : int
        Midnight of the send day (= ``sent_at``), microseconds since the epoch.
    n_days : int
        Length of the period (later responses are dropped).
    population : Population
    state : ShopperState
    ids : IdCounters
        ``send`` is advanced; response ids are assigned when responses are written.
    rng : numpy.random.Generator
        The send day's random stream.
    response_function : ResponseFunction
        The true response model.

    Returns
    -------
    CampaignDay
    """
    pop = population
    eligible = (pop.signup_day < day) & (pop.erasure_day > day)
    if plan.channel == "email":
        eligible &= pop.email_opt_in & (pop.suppression_day >= day)
    else:
        eligible &= pop.ads_opt_in
    users = np.flatnonzero(eligible & (rng.random(pop.n_users) < SEND_RATE))
    n = users.size
    is_control = rng.random(n) < CONTROL_RATE
    send_id = ids.send + np.arange(n, dtype="int64")
    ids.send += n

    orders = state.orders[users]
    last = state.last_order_day[users]
    recency = np.where(last >= 0, day - last, np.nan)
    views_30d = state.views_last_30_days(users)
    tenure = (day - pop.signup_day[users]).astype("int64")
    probability = response_function.probability(orders, recency, views_30d, tenure, is_control)
    responds = rng.random(n) < probability
    response_day = day + rng.integers(0, RESPONSE_WINDOW_DAYS, n)
    response_time = rng.integers(0, DAY_US, n)
    written = responds & (response_day < n_days) & (response_day < pop.erasure_day[users])

    responses_by_day: dict[int, dict[str, np.ndarray]] = {}
    for r_day in np.unique(response_day[written]).tolist():
        pick = np.flatnonzero(written & (response_day == r_day))
        pick = pick[np.argsort(response_time[pick], kind="stable")]
        responses_by_day[r_day] = {
            "send_id": send_id[pick],
            "campaign_id": np.full(pick.size, campaign_id, dtype="int64"),
            "user_id": pop.user_id[users[pick]],
            "responded_at": day_start_us + (r_day - day) * DAY_US + response_time[pick],
        }
    campaign = {
        "campaign_id": np.array([campaign_id], dtype="int64"),
        "campaign_name": np.array([f"{plan.theme} ({plan.channel})"]),
        "channel": np.array([plan.channel]),
        "starts_at": np.array([day_start_us], dtype="int64"),
        "response_window_days": np.array([RESPONSE_WINDOW_DAYS], dtype="int32"),
    }
    sends = {
        "send_id": send_id,
        "campaign_id": np.full(n, campaign_id, dtype="int64"),
        "user_id": pop.user_id[users],
        "sent_at": np.full(n, day_start_us, dtype="int64"),
        "is_control": is_control,
    }
    truth = {
        "send_id": send_id,
        "true_probability": probability,
        "is_control": is_control,
        "count_orders_lifetime": orders,
        "recency_days": recency,
        "count_views_30d": views_30d,
        "tenure_days": tenure,
    }
    return CampaignDay(campaign=campaign, sends=sends, truth=truth,
                       responses_by_day=responses_by_day)
