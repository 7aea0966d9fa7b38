"""Compare one date's outputs of a run sequence with a single run of that date.

A backfill D1..Dn must give, for each date, the tables and files of a single run of that date on
a fresh warehouse. A few outputs are *relative to the previous run by design* (docs/contracts.md,
"Run-relative outputs"); a fresh warehouse has none, so for those the two sides cannot agree.
They are checked differently:

- against the reference, everything else must be equal: values exactly, segment ids as the same
  cut of users into groups (ids carry over from the previous run), parent groups as the same
  cut of segments;
- against the sequence's own previous date, the run-relative outputs must be what that
  previous date implies: names of kept segments carried over, migrations and
  ``share_users_kept_segment`` recounted from both dates' assignments, publish deltas recomputed
  from both dates' published files.

The first date of a sequence has no previous run either, so it must equal its reference in
everything but the run id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from marketing.warehouse import connect

# Every column that names a run (the reference is a manual run, the sequence a backfill).
RUN_ID = {"run_id"}
# Tables whose every row describes the change since the previous run.
RUN_RELATIVE_TABLES = {"ml.segment_changes", "marts.segment_migrations"}
# Columns inherited from the previous run (names stay with a kept segment).
RUN_RELATIVE_COLUMNS = {
    "ml.segments": {"segment_name"},
    "ml.user_segments": {"segment_name"},
    "marts.segment_profiles": {"segment_name"},
    "ml.publish_log": {"adds", "removes"},
}
RUN_RELATIVE_METRICS = {"share_users_kept_segment"}
DELTA_FILES = {"adds", "removes"}  # adds.csv, removes_0001.csv, ...
MANIFEST_RUN_RELATIVE = {"previous_as_of_date", "adds", "removes", "removes_withheld"}


@dataclass
class DateState:
    as_of: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def snapshot(data_dir: Path, as_of: str, *, read_only: bool = True) -> DateState:
    """Every ml/marts table's rows of ``as_of`` and every file written for that date."""
    state = DateState(as_of)
    with connect(data_dir / "warehouse.duckdb", read_only=read_only) as con:
        tables = con.execute(
            "select table_schema || '.' || table_name from information_schema.columns "
            "where column_name = 'as_of_date' and table_schema in ('ml', 'marts') "
            "and table_name in (select table_name from information_schema.tables "
            "                   where table_type = 'BASE TABLE') order by 1"
        ).fetchall()
        for (table,) in tables:
            state.tables[table] = con.execute(
                f"select * from {table} where as_of_date = ?", [date.fromisoformat(as_of)]
            ).df()
    for folder in ("outbox", "models"):
        for path in sorted((data_dir / folder).rglob("*")):
            if path.is_file() and as_of in path.parts:
                state.files[str(path.relative_to(data_dir))] = path.read_bytes()
    return state


def _canonical(frame: pd.DataFrame, drop: set[str]) -> pd.DataFrame:
    frame = frame.drop(columns=[c for c in frame.columns if c in drop])
    frame = frame[sorted(frame.columns)]
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def _groups(frame: pd.DataFrame, key: str, member: str) -> dict[frozenset, object]:
    return {frozenset(m): k for k, m in frame.groupby(key)[member].apply(list).items()}


def segment_mapping(live: pd.DataFrame, reference: pd.DataFrame) -> dict[int, int]:
    """Sequence segment id -> reference id, requiring both to cut users into the same groups."""
    reference_groups = _groups(reference, "segment_id", "user_id")
    live_groups = _groups(live, "segment_id", "user_id")
    mapping = {sid: reference_groups.get(members) for members, sid in live_groups.items()}
    unmatched = sorted(sid for sid, ref in mapping.items() if ref is None)
    assert not unmatched and len(reference_groups) == len(live_groups), (
        f"segments {unmatched} have no reference segment with the same users"
    )
    return mapping


def _parent_cut(segments: pd.DataFrame) -> pd.Series:
    """Each segment's parent group as the set of its members' ids (ids are run-relative)."""
    members = segments.groupby("parent_segment_id")["segment_id"].apply(frozenset)
    return segments["parent_segment_id"].map(members).map(lambda s: tuple(sorted(s)))


def _comparable(table: str, frame: pd.DataFrame, mapping: dict[int, int],
                drop: set[str]) -> pd.DataFrame:
    if "segment_id" in frame.columns and mapping:
        frame = frame.assign(segment_id=frame["segment_id"].map(mapping))
    if table == "ml.segments" and len(frame):
        frame = frame.assign(parent_segment_id=_parent_cut(frame))
    return _canonical(frame, drop)


def _is_delta(name: str) -> bool:
    return Path(name).name.split(".")[0].split("_")[0] in DELTA_FILES


# dbt marts whose post-hook deletes users erased by D from every earlier partition too.
ERASURE_PURGED_MARTS = {"marts.user_profiles", "marts.audience_members", "marts.user_rfm"}


def _purged(table: str, frame: pd.DataFrame) -> bool:
    """Whether erasure reaches back into ``table``'s earlier partitions (every ``ml`` table)."""
    return "user_id" in frame.columns and (
        table.startswith("ml.") or table in ERASURE_PURGED_MARTS
    )


def erased_users(data_dir: Path) -> frozenset[int]:
    """Users erased as of the warehouse's latest run (``marts.dim_users``)."""
    with connect(data_dir / "warehouse.duckdb", read_only=True) as con:
        rows = con.execute("select user_id from marts.dim_users where is_erased").fetchall()
    return frozenset(r[0] for r in rows)


def assert_matches_reference(
    live: DateState, reference: DateState, *, first: bool, skip_tables: set[str] = frozenset(),
    erased: frozenset[int] = frozenset(),
) -> None:
    """``live`` equals ``reference`` (all of it when ``first``, else but run-relative parts).

    ``erased``: users erased by the sequence's last date. Erasure reaches back into every
    earlier partition of the ``ml`` tables and of :data:`ERASURE_PURGED_MARTS`, so they are
    dropped from the reference's rows of those too.
    """
    expected_tables = {
        table: frame[~frame["user_id"].isin(erased)] if _purged(table, frame) and erased
        else frame
        for table, frame in reference.tables.items()
    }
    segments = "ml.user_segments"
    mapping = (
        segment_mapping(live.tables[segments], expected_tables[segments])
        if len(live.tables.get(segments, ())) else {}
    )
    if first:
        assert all(k == v for k, v in mapping.items()), f"first date's ids differ: {mapping}"
    assert set(live.tables) == set(expected_tables)
    for table, frame in live.tables.items():
        if table in skip_tables or (not first and table in RUN_RELATIVE_TABLES):
            continue
        expected = expected_tables[table]
        drop = set(RUN_ID) | (set() if first else RUN_RELATIVE_COLUMNS.get(table, set()))
        if table == "ml.model_runs" and not first:
            frame = frame[~frame["metric"].isin(RUN_RELATIVE_METRICS)]
            expected = expected[~expected["metric"].isin(RUN_RELATIVE_METRICS)]
        pd.testing.assert_frame_equal(
            _comparable(table, frame, mapping, drop), _comparable(table, expected, {}, drop),
            check_dtype=False, obj=table,
        )
    assert live.files.keys() == reference.files.keys()
    for name, data in live.files.items():
        if not first and _is_delta(name):
            continue
        if name.endswith("manifest.json"):
            skip = RUN_ID | (set() if first else MANIFEST_RUN_RELATIVE)
            got, want = (
                {k: v for k, v in json.loads(blob).items() if k not in skip}
                for blob in (data, reference.files[name])
            )
            assert got == want, name
        else:
            assert hashlib.sha256(data).digest() == hashlib.sha256(
                reference.files[name]
            ).digest(), f"{name} differs from the single run of its date"


def _assignments(state: DateState) -> pd.DataFrame:
    return state.tables["ml.user_segments"][["user_id", "segment_id", "segment_name"]]


def assert_follows_previous(today: DateState, previous: DateState) -> None:
    """The run-relative outputs of ``today`` are what ``previous`` (its run before) implies."""
    segments, before = today.tables["ml.segments"], previous.tables["ml.segments"]
    names_before = dict(zip(before["segment_id"], before["segment_name"], strict=True))
    names = dict(zip(segments["segment_id"], segments["segment_name"], strict=True))
    changes = today.tables["ml.segment_changes"]
    status = dict(zip(changes["segment_id"], changes["status"], strict=False))
    # Kept segments keep id and name; new ones get ids above every earlier id; the rest vanished.
    for sid, name in names.items():
        if status[sid] == "kept":
            assert name == names_before[sid], (sid, name, names_before[sid])
        else:
            assert status[sid] == "new" and sid > max(names_before), (sid, status[sid])
    vanished = set(changes.loc[changes["status"] == "vanished", "segment_id"])
    assert vanished == set(names_before) - {s for s in names if status[s] == "kept"}
    assert changes["previous_as_of_date"].astype(str).eq(previous.as_of).all()
    for table in ("ml.user_segments", "marts.segment_profiles"):
        frame = today.tables[table]
        assert frame["segment_name"].tolist() == frame["segment_id"].map(names).tolist(), table

    # Migrations and the kept share, recounted from both days' assignments.
    moves = _assignments(previous).merge(
        _assignments(today), on="user_id", how="outer", suffixes=("_from", "_to")
    )
    expected = (
        moves.groupby(["segment_id_from", "segment_id_to"], dropna=False)
        .size().rename("users").reset_index()
    )
    got = today.tables["marts.segment_migrations"].rename(
        columns={"from_segment_id": "segment_id_from", "to_segment_id": "segment_id_to"}
    )[["segment_id_from", "segment_id_to", "users"]]
    # Users who left the population were erased, and erasure has since removed them from the
    # previous date's partition too: only moves into a segment can be recounted.
    got = got[got["segment_id_to"].notna()]
    expected = expected[expected["segment_id_to"].notna()]
    key = ["segment_id_from", "segment_id_to", "users"]
    pd.testing.assert_frame_equal(
        got.astype("Float64").sort_values(key).reset_index(drop=True),
        expected.astype("Float64").sort_values(key).reset_index(drop=True),
        check_dtype=False, obj="marts.segment_migrations",
    )
    both = moves.dropna(subset=["segment_id_from", "segment_id_to"])
    metrics = today.tables["ml.model_runs"].set_index("metric")["value"]
    assert abs(
        metrics["share_users_kept_segment"]
        - (both["segment_id_from"] == both["segment_id_to"]).mean()
    ) < 1e-9

    # Publish deltas, recomputed from both days' published files.
    for name, blob in today.files.items():
        if not name.endswith("manifest.json"):
            continue
        manifest = json.loads(blob)
        if manifest["status"] != "published":
            continue
        folder = str(Path(name).parent)
        earlier = folder.replace(today.as_of, previous.as_of) + "/manifest.json"
        if earlier not in previous.files or json.loads(previous.files[earlier])["status"] != (
            "published"
        ):
            continue
        assert manifest["previous_as_of_date"] == previous.as_of, name
        current = _published_lines(today.files, folder, manifest)
        before_lines = _published_lines(
            previous.files, str(Path(earlier).parent), json.loads(previous.files[earlier])
        )
        key = (lambda line: line.split(b",", 1)[0]) if manifest["channel"] == "email" else (
            lambda line: line
        )
        current_keys = {key(line) for line in current}
        before_keys = {key(line) for line in before_lines}
        added = sorted(line for line in current if key(line) not in before_keys)
        assert manifest["adds"] == len(added), name
        assert _delta_lines(today.files, folder, "adds") == added, name
        assert manifest["removes"] == len(before_keys - current_keys), name


def _published_lines(files: dict[str, bytes], folder: str, manifest: dict) -> list[bytes]:
    names = [f["file"] for f in manifest["files"]]
    return [line for n in names for line in files[f"{folder}/{n}"].splitlines()[1:]]


def _delta_lines(files: dict[str, bytes], folder: str, kind: str) -> list[bytes]:
    names = sorted(
        n for n in files if str(Path(n).parent) == folder and Path(n).name.startswith(kind)
    )
    return sorted(line for n in names for line in files[n].splitlines()[1:])
