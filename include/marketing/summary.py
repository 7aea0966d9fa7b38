"""Print what a run built: segments, an item's neighbours, model quality, audiences and files.

``python -m marketing.summary YYYY-MM-DD`` (the demo's last step). Reads the warehouse
read-only, so it never competes with a writer.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from marketing import warehouse
from marketing.settings import Settings


def _section(title: str) -> str:
    return f"\n== {title} " + "=" * max(0, 70 - len(title))


def render(as_of: date, settings: Settings) -> str:
    """The summary text for run date ``as_of``."""
    lines = [f"segment_refresh for {as_of.isoformat()}: warehouse {settings.warehouse_path}"]
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        landed = con.execute(
            "select count(*) from raw.events where _partition_date <= ?", [as_of]
        ).fetchone()[0]
        rejected = con.execute(
            "select rule, count(*) from raw.rejected_rows where partition_date <= ? "
            "group by rule order by 2 desc, 1",
            [as_of],
        ).fetchall()
        lines.append(_section("Landing"))
        lines.append(f"events landed: {landed:,}; rejected rows by rule: "
                     + (", ".join(f"{r}={n}" for r, n in rejected) or "none"))

        lines.append(_section("Segments (ml.segments)"))
        for segment_id, name, size in con.execute(
            "select segment_id, segment_name, size from ml.segments where as_of_date = ? "
            "order by segment_id",
            [as_of],
        ).fetchall():
            lines.append(f"  {segment_id:>2}  {name:<45} {size:>8,} users")
        for metric, value in con.execute(
            "select metric, value from ml.model_runs where model = 'segments' and as_of_date = ? "
            "order by metric",
            [as_of],
        ).fetchall():
            lines.append(f"  {metric}: {value:.3f}")

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

        lines.append(_section("Campaign response model (ml.model_runs)"))
        metrics = con.execute(
            "select metric, value from ml.model_runs where model = 'response' and as_of_date = ? "
            "order by metric",
            [as_of],
        ).fetchall()
        lines.append("  " + (", ".join(f"{m}={v:.3f}" for m, v in metrics) or "no model trained"))

        lines.append(_section("Audiences (ml.publish_log)"))
        for channel, audience, rows, path, status in con.execute(
            "select channel, audience_name, rows, path, status from ml.publish_log "
            "where as_of_date = ? order by audience_name, channel",
            [as_of],
        ).fetchall():
            lines.append(f"  {audience:<28} {channel:<11} {rows:>7,} rows  {status:<9} "
                         f"{settings.data_dir / path}")

    lines.append(_section("Query the tables"))
    lines.append(f"  read-only analysts' copy: {settings.analytics_path}")
    lines.append("  make query   (or: python -m marketing.query data/analytics.duckdb "
                 "\"select * from ml.segments\")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("as_of_date", type=date.fromisoformat)
    args = parser.parse_args(argv)
    print(render(args.as_of_date, Settings.from_env()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
