"""Generate a deterministic sample shop: the landing zone plus the truth behind it.

``python -m marketing.sample_data --users 20000 --items 2000 --days 90 --seed 7
--end-date 2026-09-30 [--out DATA_DIR] [--quiet]`` or ``--scale S|M|L`` for a benchmark size
(:data:`SCALES`; explicit ``--users/--items/--days`` override the preset). A progress bar with
an ETA goes to stderr on a terminal; Ctrl-C stops cleanly (exit status 130) and the partial
landing zone is removed on the next run.

Writes ``<out>/landing/<table>/date=YYYY-MM-DD/part-0.parquet`` for every landing table of
``docs/contracts.md``, ``<out>/landing/_sample.json`` and ``<out>/sample_truth/``
(``personas.parquet``, ``item_groups.parquet``, ``campaign_sends_truth.parquet``,
``response_function.json``). The period is the ``n_days`` days ending on ``end_date``.

Planted structure (what the pipeline's tests recover):

- six shopper personas (:mod:`marketing.sample_personas`) that k-means separates on the
  90-day profile features;
- co-purchase groups of ~10-20 items (:mod:`marketing.sample_catalog`): a session stays
  mostly inside one group, so item-item neighbours are mostly in the item's group;
- campaign responses from a known logistic function of point-in-time features
  (:mod:`marketing.sample_campaigns`), with the true probability of every send.

Generation is day by day with vectorised numpy; day ``d`` draws from its own stream
``default_rng([seed, 0, d])`` (campaign sends: ``[seed, 2, d]``; set-up: ``[seed, 1, k]``),
so the same arguments give byte-identical files. Memory is O(users + one day of events).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.stats import rankdata
from tqdm import tqdm

from marketing.sample_activity import (
    EVENT_TYPES,
    IdCounters,
    ShopperState,
    simulate_day,
)
from marketing.sample_campaigns import (
    CAMPAIGN_PLANS,
    RESPONSE_FUNCTION,
    RESPONSE_WINDOW_DAYS,
    campaign_days,
    send_campaign,
)
from marketing.sample_catalog import Catalog, build_catalog
from marketing.sample_io import (
    LANDING_SCHEMAS,
    TRUTH_SCHEMAS,
    LandingWriter,
    codes_to_strings,
    session_ids,
    to_table,
    write_json,
    write_parquet,
)
from marketing.sample_personas import CATEGORIES, PERSONA_NAMES, persona_table
from marketing.sample_population import (
    DAY_US,
    SUPPRESSION_REASONS,
    Population,
    build_population,
)

logger = logging.getLogger(__name__)

DEFAULT_USERS = 20_000
DEFAULT_ITEMS = 2_000
DEFAULT_DAYS = 90
DEFAULT_SEED = 7
DEFAULT_END_DATE = date(2026, 9, 30)
"""A fixed date (never "today"), so the default sample is always the same."""

MIN_DAYS = 7

BENCH_VISIT_SCALE = 0.15
"""Visit-rate multiplier of the presets: ~12 events per user over 90 days at every size."""

SCALES: dict[str, dict[str, int | float]] = {
    "S": {"n_users": 10_000, "n_items": 2_000, "n_days": 90, "visit_scale": BENCH_VISIT_SCALE},
    "M": {"n_users": 100_000, "n_items": 10_000, "n_days": 90, "visit_scale": BENCH_VISIT_SCALE},
    "L": {"n_users": 1_000_000, "n_items": 50_000, "n_days": 90,
          "visit_scale": BENCH_VISIT_SCALE},
}
"""Benchmark presets (``bench/run.py``, ``--scale``): about 0.12 M, 1.2 M and 12 M events."""

_DAY_STREAM, _SETUP_STREAM, _CAMPAIGN_STREAM = 0, 1, 2
_CATALOG, _BEHAVIOUR, _CONTACTS, _LIFECYCLE = 0, 1, 2, 3
_EPOCH = datetime(1970, 1, 1)


def _setup_rng(seed: int, part: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SETUP_STREAM, part])


def _midnight_us(day: date) -> int:
    return int((datetime(day.year, day.month, day.day) - _EPOCH) // timedelta(microseconds=1))


def _validate(n_users: int, n_items: int, n_days: int, seed: int, end_date: date) -> None:
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    if n_items < len(CATEGORIES):
        raise ValueError(f"n_items must be >= {len(CATEGORIES)}, got {n_items}")
    if n_days < MIN_DAYS:
        raise ValueError(f"n_days must be >= {MIN_DAYS}, got {n_days}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not isinstance(end_date, date) or isinstance(end_date, datetime):
        raise ValueError(f"end_date must be a datetime.date, got {end_date!r}")


def _users_columns(pop: Population, rows: np.ndarray) -> dict[str, object]:
    c = pop.contacts
    take = pa.array(rows, type=pa.int64())
    return {
        "user_id": pop.user_id[rows],
        "email": c.email.take(take),
        "phone": c.phone.take(take),
        "first_name": c.first_name.take(take),
        "last_name": c.last_name.take(take),
        "country": c.country.take(take),
        "city": c.city.take(take),
        "postal_code": c.postal_code.take(take),
        "signed_up_at": pop.signed_up_at[rows],
        "email_opt_in": pop.email_opt_in[rows],
        "ads_opt_in": pop.ads_opt_in[rows],
    }


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC by the rank-sum formula (ties averaged); None when one class is absent."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def generate(
    out_dir: Path,
    n_users: int = DEFAULT_USERS,
    n_items: int = DEFAULT_ITEMS,
    n_days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    end_date: date = DEFAULT_END_DATE,
    *,
    visit_scale: float = 1.0,
    progress: bool = False,
) -> dict[str, int]:
    """Generate the sample landing zone and truth files under ``out_dir``.

    ``out_dir/landing`` and ``out_dir/sample_truth`` (only those two) are removed first,
    so re-generating is clean.

    Parameters
    ----------
    out_dir : Path
        Data directory (``Settings.data_dir`` in the pipeline).
    n_users : int, default 20000
        Users (>= 1).
    n_items : int, default 2000
        Catalogue items (>= number of categories, 8).
    n_days : int, default 90
        Length of the period in days (>= 7); it ends on ``end_date`` inclusive.
    seed : int, default 7
        Non-negative seed; the same arguments give byte-identical files.
    end_date : datetime.date, default 2026-09-30
        Last day of the period.
    visit_scale : float, default 1.0
        Multiplier in (0, 1] on every user's daily visit probability (sign-up days stay
        visits): the benchmark presets use it to keep ~10 events per user at any size, as in
        a large shop where most customers are dormant. 1.0 leaves the sample unchanged.
    progress : bool, default False
        Show a tqdm progress bar (with ETA) on stderr.

    Returns
    -------
    dict of str to int
        Rows written per landing table (0 when none), plus ``sessions`` and ``days``.

    Raises
    ------
    ValueError
        If a size, the seed, the end date or ``visit_scale`` is out of range.
    """
    _validate(n_users, n_items, n_days, seed, end_date)
    if not 0.0 < visit_scale <= 1.0:
        raise ValueError(f"visit_scale must be in (0, 1], got {visit_scale}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    landing_dir, truth_dir = out_dir / "landing", out_dir / "sample_truth"
    for folder in (landing_dir, truth_dir):
        if folder.exists():
            shutil.rmtree(folder)
    start_date = end_date - timedelta(days=n_days - 1)
    start_us = _midnight_us(start_date)

    table = persona_table()
    catalog = build_catalog(n_items, _setup_rng(seed, _CATALOG))
    pop = build_population(
        n_users, n_days, start_us, table,
        behaviour_rng=_setup_rng(seed, _BEHAVIOUR),
        contact_rng=_setup_rng(seed, _CONTACTS),
        lifecycle_rng=_setup_rng(seed, _LIFECYCLE),
    )
    if visit_scale != 1.0:
        pop = dataclasses.replace(pop, visit_rate=pop.visit_rate * visit_scale)
    writer = LandingWriter(landing_dir)
    writer.write("items", start_date, {
        "item_id": catalog.item_id,
        "name": catalog.name,
        "category": np.array(CATEGORIES)[catalog.category],
        "price": catalog.price,
    })

    state = ShopperState.empty(n_users)
    ids = IdCounters()
    send_days = dict(zip(campaign_days(n_days), range(len(CAMPAIGN_PLANS)), strict=True))
    pending: dict[int, list[dict[str, np.ndarray]]] = {}
    truth_parts: list[dict[str, np.ndarray]] = []
    send_day_of: list[np.ndarray] = []
    responded_sends: list[np.ndarray] = [np.zeros(0, dtype="int64")]
    n_sessions = 0
    user_partition = np.maximum(pop.signup_day, 0)

    days = tqdm(range(n_days), desc="sample days", unit="day", file=sys.stderr,
                disable=not progress)
    for day in days:
        today = start_date + timedelta(days=day)
        day_us = start_us + day * DAY_US
        writer.write("users", today, _users_columns(pop, np.flatnonzero(user_partition == day)))

        if day in send_days:
            index = send_days[day]
            sent = send_campaign(
                campaign_id=index + 1, plan=CAMPAIGN_PLANS[index], day=day, day_start_us=day_us,
                n_days=n_days, population=pop, state=state, ids=ids,
                rng=np.random.default_rng([seed, _CAMPAIGN_STREAM, day]),
            )
            writer.write("campaigns", today, sent.campaign)
            writer.write("campaign_sends", today, sent.sends)
            truth_parts.append(sent.truth)
            send_day_of.append(np.full(sent.sends["send_id"].size, day))
            for r_day, rows in sent.responses_by_day.items():
                pending.setdefault(r_day, []).append(rows)

        activity = simulate_day(
            day=day, day_start_us=day_us, n_days=n_days, is_weekend=today.weekday() >= 5,
            population=pop, catalog=catalog, table=table, state=state, ids=ids,
            rng=np.random.default_rng([seed, _DAY_STREAM, day]),
        )
        n_sessions += activity.n_sessions
        events = dict(activity.events)
        events["event_type"] = codes_to_strings(events["event_type"], EVENT_TYPES)
        events["session_id"] = session_ids(events["session_id"])
        writer.write("events", today, events)
        writer.write("orders", today, activity.orders)
        writer.write("order_lines", today, activity.order_lines)

        if day in pending:
            responses = _concat(pending.pop(day))
            order = np.lexsort((responses["send_id"], responses["responded_at"]))
            responses = {key: values[order] for key, values in responses.items()}
            size = order.size
            responses["response_id"] = ids.response + np.arange(size, dtype="int64")
            ids.response += size
            writer.write("campaign_responses", today, responses)
            responded_sends.append(responses["send_id"])

        suppressed = np.flatnonzero(pop.suppression_day == day)
        suppressed = suppressed[np.argsort(pop.suppression_at[suppressed], kind="stable")]
        writer.write("suppressions", today, {
            "email": pop.suppressed_email.take(pa.array(suppressed, type=pa.int64())),
            "reason": np.array(SUPPRESSION_REASONS)[pop.suppression_reason[suppressed]],
            "suppressed_at": pop.suppression_at[suppressed],
        })
        erased = np.flatnonzero(pop.erasure_day == day)
        erased = erased[np.argsort(pop.erasure_at[erased], kind="stable")]
        writer.write("erasure_requests", today, {
            "user_id": pop.user_id[erased],
            "requested_at": pop.erasure_at[erased],
        })
        days.set_postfix(events=writer.rows["events"], refresh=False)

    truth = _concat(truth_parts)
    _write_truth(truth_dir, pop, catalog, truth)
    response_summary = _response_summary(
        truth, np.concatenate(send_day_of), np.concatenate(responded_sends), n_days
    )
    write_json(
        {**RESPONSE_FUNCTION.definition(), "sample_summary": response_summary},
        truth_dir / "response_function.json",
    )
    write_json(
        {
            "seed": seed,
            "start_date": start_date.isoformat(),
            "end_date": end_date.isoformat(),
            "n_users": n_users,
            "n_items": n_items,
            "n_days": n_days,
            "categories": list(CATEGORIES),
            "personas": list(PERSONA_NAMES),
            **({"visit_scale": visit_scale} if visit_scale != 1.0 else {}),
        },
        landing_dir / "_sample.json",
    )
    summary = {name: int(writer.rows[name]) for name in LANDING_SCHEMAS}
    summary.update(sessions=n_sessions, days=n_days)
    logger.info("sample generated in %.1f s: %s", time.perf_counter() - started, summary)
    return summary


def _write_truth(truth_dir: Path, pop: Population, catalog: Catalog, sends: dict) -> None:
    write_parquet(
        to_table(TRUTH_SCHEMAS["personas"], {
            "user_id": pop.user_id,
            "persona": np.array(PERSONA_NAMES)[pop.persona],
        }),
        truth_dir / "personas.parquet",
    )
    write_parquet(
        to_table(TRUTH_SCHEMAS["item_groups"], {
            "item_id": catalog.item_id,
            "group_id": catalog.group + 1,
            "category": np.array(CATEGORIES)[catalog.category],
        }),
        truth_dir / "item_groups.parquet",
    )
    write_parquet(
        to_table(TRUTH_SCHEMAS["campaign_sends_truth"], sends),
        truth_dir / "campaign_sends_truth.parquet",
    )


def _response_summary(
    truth: dict, send_day: np.ndarray, responded_send_ids: np.ndarray, n_days: int
) -> dict:
    """Realised response rates and the oracle AUC over sends whose window closed."""
    responded = np.isin(truth["send_id"], responded_send_ids)
    closed = send_day + RESPONSE_WINDOW_DAYS - 1 <= n_days - 1
    treated = closed & ~truth["is_control"]
    control = closed & truth["is_control"]
    auc = _roc_auc(responded[closed], truth["true_probability"][closed])

    def rate(mask: np.ndarray) -> float | None:
        return round(float(responded[mask].mean()), 6) if mask.any() else None

    return {
        "sends": int(truth["send_id"].size),
        "sends_with_closed_window": int(closed.sum()),
        "response_rate_treated": rate(treated),
        "response_rate_control": rate(control),
        "mean_true_probability": round(float(truth["true_probability"].mean()), 6),
        "oracle_auc": None if auc is None else round(auc, 6),
    }


def resolve_sizes(
    scale: str | None,
    *,
    users: int | None = None,
    items: int | None = None,
    days: int | None = None,
    visit_scale: float | None = None,
) -> dict[str, int | float]:
    """Sizes for :func:`generate`: the ``scale`` preset (or the defaults), then overrides.

    Raises
    ------
    ValueError
        If ``scale`` is not a key of :data:`SCALES`.
    """
    if scale is None:
        base = {"n_users": DEFAULT_USERS, "n_items": DEFAULT_ITEMS, "n_days": DEFAULT_DAYS,
                "visit_scale": 1.0}
    elif scale in SCALES:
        base = dict(SCALES[scale])
    else:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    overrides = (("n_users", users), ("n_items", items), ("n_days", days),
                 ("visit_scale", visit_scale))
    for key, value in overrides:
        if value is not None:
            base[key] = value
    return base


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from exc


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints the row counts and wall time as JSON."""
    from marketing.settings import Settings

    parser = argparse.ArgumentParser(
        prog="python -m marketing.sample_data", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default=None,
                        help="benchmark preset for users/items/days (see SCALES)")
    parser.add_argument("--users", type=int, default=None, help=f"default {DEFAULT_USERS}")
    parser.add_argument("--items", type=int, default=None, help=f"default {DEFAULT_ITEMS}")
    parser.add_argument("--days", type=int, default=None, help=f"default {DEFAULT_DAYS}")
    parser.add_argument("--visit-scale", type=float, default=None,
                        help="multiplier in (0, 1] on visit rates (default 1, presets "
                        f"{BENCH_VISIT_SCALE})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--end-date", type=_parse_date, default=DEFAULT_END_DATE)
    parser.add_argument("--out", type=Path, default=None,
                        help="data directory (default: MARKETING_DATA_DIR or <repo>/data)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out_dir = args.out if args.out is not None else Settings.from_env().data_dir
    sizes = resolve_sizes(args.scale, users=args.users, items=args.items, days=args.days,
                          visit_scale=args.visit_scale)
    started = time.perf_counter()
    try:
        summary = generate(
            out_dir, **sizes, seed=args.seed, end_date=args.end_date,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except ValueError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        logger.warning("interrupted: the landing zone under %s is partial", out_dir)
        return 130
    summary["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps({"out_dir": str(out_dir), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
