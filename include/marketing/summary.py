"""Print what a run built: segments, an item's neighbours, model quality, audiences and files.

``python -m marketing.summary YYYY-MM-DD`` (the demo's last step). Reads the warehouse
read-only, so it never competes with a writer.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from marketing import warehouse
from marketing.settings import Settings


def _section(title: str) -> str:
    return f"\n== {title} " + "=" * max(0, 70 - len(title))


def _segment_lines(con, as_of: date, settings: Settings) -> list[str]:
    """Named segments with sizes and parent groups, quality, stability and the picture."""
    lines = []
    columns = {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'ml' and table_name = 'segments'"
        ).fetchall()
    }
    parent = "parent_name" if "parent_name" in columns else "null"
    total = 0
    for segment_id, name, size, parent_name in con.execute(
        f"select segment_id, segment_name, size, {parent} from ml.segments "
        "where as_of_date = ? order by segment_id",
        [as_of],
    ).fetchall():
        total += size
        group = f"  [group: {parent_name}]" if parent_name else ""
        lines.append(f"  {segment_id:>2}  {name:<45} {size:>8,} users{group}")
    if total:
        lines.append(f"      {'total':<45} {total:>8,} users")
    metrics = dict(con.execute(
        "select metric, value from ml.model_runs where model = 'segments' and as_of_date = ? "
        "order by metric",
        [as_of],
    ).fetchall())
    if metrics:
        text = f"  k={metrics.get('k', float('nan')):.0f}, silhouette={metrics.get('silhouette', float('nan')):.3f}"
        if "share_users_kept_segment" in metrics:
            text += f", users keeping their segment since the last run: " \
                    f"{metrics['share_users_kept_segment']:.1%}"
        lines.append(text)
    if warehouse.table_exists(con, "ml.segment_changes"):
        changes = con.execute(
            "select status, count(*) from ml.segment_changes where as_of_date = ? "
            "group by status order by status",
            [as_of],
        ).fetchall()
        if changes:
            lines.append("  vs last run: " + ", ".join(f"{n} {status}" for status, n in changes))
    picture = settings.reports_dir / as_of.isoformat() / "segments.png"
    lines.append(f"  picture: {picture}" + ("" if picture.exists() else " (missing)"))
    return lines


def _audience_lines(con, as_of: date, settings: Settings) -> list[str]:
    """One line per audience x channel: rows, adds, removes, holdout, status and where."""
    columns = {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'ml' and table_name = 'publish_log'"
        ).fetchall()
    }
    extra = {"adds", "removes", "holdout", "reason"} <= columns
    select = "adds, removes, holdout, reason" if extra else "0, 0, 0, ''"
    lines = [f"  {'audience':<30} {'channel':<11} {'rows':>7} {'adds':>6} {'removes':>7} "
             f"{'holdout':>7}  status"]
    for channel, audience, rows, path, status, adds, removes, holdout, reason in con.execute(
        f"select channel, audience_name, rows, path, status, {select} from ml.publish_log "
        "where as_of_date = ? order by audience_name, channel",
        [as_of],
    ).fetchall():
        lines.append(
            f"  {audience:<30} {channel:<11} {rows:>7,} {adds or 0:>6,} {removes or 0:>7,} "
            f"{holdout or 0:>7,}  {status}"
        )
        where = f"({reason})" if reason else str(settings.data_dir / path)
        lines.append(f"  {'':<30} {where}")
    return lines


def render(as_of: date, settings: Settings) -> str:
    """The summary text for run date ``as_of``."""
    lines = [f"segment_refresh for {as_of.isoformat()}: warehouse {settings.warehouse_path}"]
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        lines.append(_section("Landing (raw.*, raw.rejected_rows)"))
        lines.extend(_landing_lines(con, as_of))

        lines.append(_section("Segments (ml.segments)"))
        lines.extend(_segment_lines(con, as_of, settings))

        lines.append(_section("Item neighbours (ml.item_neighbours)"))
        example = con.execute(
            "select n.item_id, i.name, i.category from ml.item_neighbours as n "
            "join staging.stg_shop__items as i using (item_id) where n.as_of_date = ? "
            "group by all order by count(*) desc, n.item_id limit 1",
            [as_of],
        ).fetchone()
        if example:
            lines.append(f"  item {example[0]} '{example[1]}' ({example[2]}) is bought with:")
            for rank, item_id, name, category, similarity in con.execute(
                "select n.rank, n.neighbour_item_id, i.name, i.category, n.similarity "
                "from ml.item_neighbours as n join staging.stg_shop__items as i "
                "on i.item_id = n.neighbour_item_id where n.as_of_date = ? and n.item_id = ? "
                "and n.rank <= 5 order by n.rank",
                [as_of, example[0]],
            ).fetchall():
                lines.append(f"    {rank}. {item_id} '{name}' ({category}) cosine {similarity:.3f}")

        lines.extend(_response_section(con, as_of, settings))

        lines.append(_section("Audiences (ml.publish_log)"))
        lines.extend(_audience_lines(con, as_of, settings))

    lines.append(_section("Query the tables"))
    lines.append(f"  read-only analysts' copy: {settings.analytics_path}")
    lines.append("  make query   (or: python -m marketing.query data/analytics.duckdb "
                 "\"select * from ml.segments\")")
    return "\n".join(lines)



_HEADLINE_METRICS = ("auc", "pr_auc", "brier", "ece", "lift_decile_1", "base_rate", "c")


def _response_section(con, as_of: date, settings: Settings) -> list[str]:
    """Response model: headline metrics, AUC per campaign, top drivers (issue #5)."""
    lines = [_section("Campaign response model (ml.model_runs, models/response/)")]
    metrics = dict(con.execute(
        "select metric, value from ml.model_runs where model = 'response' and as_of_date = ?",
        [as_of],
    ).fetchall())
    if not metrics:
        lines.append("  no model: scoring skipped (too few labelled sends and no earlier model)")
        return lines
    if metrics.get("is_purchase_fallback"):
        lines.append("  no campaign history: scores are the purchase-in-30-days propensity")
    if metrics.get("is_last_good_model"):
        lines.append("  too few labelled sends today: scored with the last good model")
    lines.append("  test set (latest send days): " + ", ".join(
        f"{m}={metrics[m]:.3f}" for m in _HEADLINE_METRICS if m in metrics))
    lifts = [metrics.get(f"lift_decile_{d}") for d in range(1, 11)]
    if all(v is not None for v in lifts):
        lines.append("  lift by decile: " + " ".join(f"{v:.2f}" for v in lifts))
    card_path = settings.models_dir / "response" / as_of.isoformat() / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    coefficients = card.get("coefficients", {})
    names = dict(con.execute(
        "select campaign_id, campaign_name from staging.stg_shop__campaigns"
    ).fetchall()) if warehouse.table_exists(con, "staging.stg_shop__campaigns") else {}
    for campaign in card.get("campaigns", []):
        campaign_id = campaign["campaign_id"]
        auc = campaign["auc"]
        offset = coefficients.get(f"campaign_id={campaign_id}")
        lines.append(
            f"  campaign {campaign_id:>3} {names.get(campaign_id, ''):<34} "
            f"{campaign['n_sends']:>7,} sends {campaign['n_responders']:>6,} responders  "
            f"walk-forward AUC {'n/a (first campaign)' if auc is None else f'{auc:.3f}'}"
            + ("" if offset is None else f"  campaign effect {offset:+.2f}")
        )
    for label, key in (("raise", "top_positive_drivers"), ("lower", "top_negative_drivers")):
        drivers = card.get(key, [])
        if drivers:
            lines.append(f"  drivers that {label} response: " + ", ".join(
                f"{d['feature']} ({d['coefficient']:+.2f})" for d in drivers[:3]))
    if card:
        lines.append(f"  model card: {card_path}")
        lines.append(f"  picture:    {settings.reports_dir / as_of.isoformat() / 'response.png'}")
    return lines


def _landing_lines(con, as_of: date) -> list[str]:
    """Rows landed per table, rejected rows by table and rule, guest/cancelled orders, absences."""
    lines = []
    tables = ("users", "items", "orders", "order_lines", "events", "campaigns", "campaign_sends")
    counts = {
        table: con.execute(
            f"select count(*) from raw.{table} where _partition_date <= ?", [as_of]
        ).fetchone()[0]
        for table in tables
    }
    lines.append("  landed: " + ", ".join(f"{t}={n:,}" for t, n in counts.items()))
    absent = [t for t, n in counts.items() if n == 0]
    if absent:
        lines.append(f"  absent sources (empty tables): {', '.join(absent)}")
    columns = {r[0] for r in con.execute("describe raw.orders").fetchall()}
    if {"is_guest", "is_cancelled"} <= columns:
        guests, cancelled = con.execute(
            "select count(*) filter (where is_guest), count(*) filter (where is_cancelled) "
            "from raw.orders where _partition_date <= ?",
            [as_of],
        ).fetchone()
        lines.append(f"  guest orders (item statistics only): {guests:,}; "
                     f"cancellations/returns: {cancelled:,}")
    rejected = con.execute(
        "select table_name, rule, count(*) from raw.rejected_rows where partition_date <= ? "
        "group by all order by 3 desc, 1, 2",
        [as_of],
    ).fetchall()
    total = sum(n for _, _, n in rejected)
    lines.append(f"  rejected rows: {total:,}" + (" (by table and rule:)" if rejected else ""))
    for table, rule, n in rejected:
        lines.append(f"    {table:<20} {rule:<40} {n:>8,}")
    if rejected:
        lines.append("  details: select * from raw.rejected_rows  (file, row, rule, record)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("as_of_date", type=date.fromisoformat)
    args = parser.parse_args(argv)
    print(render(args.as_of_date, Settings.from_env()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
