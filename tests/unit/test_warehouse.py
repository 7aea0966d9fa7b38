"""warehouse.replace_partition: one date (and key) replaced, typed, columns added over time."""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd
import pytest

from marketing import warehouse

D1, D2 = date(2026, 1, 1), date(2026, 1, 2)


@pytest.fixture
def con(tmp_path):
    with warehouse.connect(tmp_path / "w.duckdb") as connection:
        yield connection


def _rows(con, sql="select * from ml.t order by all"):
    return con.execute(sql).fetchall()


def test_a_date_is_replaced_and_other_dates_stay(con):
    warehouse.replace_partition(con, "ml.t", pd.DataFrame({"user_id": [1, 2]}), D1)
    warehouse.replace_partition(con, "ml.t", pd.DataFrame({"user_id": [3]}), D2)
    assert warehouse.replace_partition(con, "ml.t", pd.DataFrame({"user_id": [4]}), D1) == 1
    assert _rows(con) == [(3, D2), (4, D1)]
    # a re-run that now yields nothing empties the date
    warehouse.replace_partition(con, "ml.t", pd.DataFrame({"user_id": pd.Series([], dtype="int64")}), D2)
    assert _rows(con) == [(4, D1)]


def test_the_frames_own_as_of_date_is_overridden_and_the_column_is_a_date(con):
    frame = pd.DataFrame({"as_of_date": ["1999-01-01"], "user_id": [1]})
    warehouse.replace_partition(con, "ml.t", frame, "2026-01-01")
    assert _rows(con, "select user_id, as_of_date from ml.t") == [(1, D1)]
    assert _rows(con, "select data_type from duckdb_columns() where column_name = 'as_of_date'") \
        == [("DATE",)]


def test_an_empty_first_frame_creates_typed_columns(con):
    empty = pd.DataFrame({"user_id": pd.Series([], dtype="int64")})
    warehouse.replace_partition(con, "ml.t", empty, D1, {"model": "segments"})
    types = dict(_rows(con, "select column_name, data_type from duckdb_columns() "
                            "where table_name = 't'"))
    assert types == {"user_id": "BIGINT", "as_of_date": "DATE", "model": "VARCHAR"}


def test_keys_narrow_the_replaced_rows(con):
    for model, value in (("segments", 1.0), ("recommendations", 2.0)):
        warehouse.replace_partition(con, "ml.t", pd.DataFrame({"metric": [value]}), D1,
                                    {"model": model})
    warehouse.replace_partition(con, "ml.t", pd.DataFrame({"metric": [3.0], "model": ["x"]}), D1,
                                {"model": "segments"})
    assert _rows(con, "select model, metric from ml.t order by all") == [
        ("recommendations", 2.0), ("segments", 3.0)
    ]


def test_a_new_column_is_added_and_earlier_rows_get_null(con):
    warehouse.replace_partition(con, "ml.t", pd.DataFrame({"user_id": [1]}), D1)
    warehouse.replace_partition(con, "ml.t", pd.DataFrame({"user_id": [2], "share_x": [0.5]}), D2)
    assert _rows(con, "select user_id, share_x from ml.t order by 1") == [(1, None), (2, 0.5)]


def test_a_failed_insert_leaves_the_date_as_it_was(con):
    warehouse.replace_partition(con, "ml.t", pd.DataFrame({"user_id": [1]}), D1)
    with pytest.raises(duckdb.Error):
        warehouse.replace_partition(con, "ml.t", pd.DataFrame({"user_id": ["not a number"]}), D1)
    assert _rows(con) == [(1, D1)]


def test_plain_frames_are_written_through_arrow_with_the_same_types_and_nulls(con):
    """Numbers, booleans and strings go through Arrow (faster to scan); anything else (dates,
    objects) as the DataFrame. Both write the same column types, values and NULLs."""
    import numpy as np
    import pyarrow as pa

    plain = pd.DataFrame({
        "user_id": np.array([3, 1], dtype="int64"),
        "rank": np.array([1, 2], dtype="int32"),
        "score": [np.nan, 0.5],
        "reason": pd.array([None, 7], dtype="Int64"),
        "method": pd.array(["cf", None], dtype="string"),
        "flag": [True, False],
    }, index=[10, 20])
    assert isinstance(warehouse.scannable(plain), pa.Table)
    mixed = plain.assign(sent_at=pd.to_datetime(["2026-01-01", "2026-01-02"]))
    assert warehouse.scannable(mixed) is mixed
    warehouse.replace_partition(con, "ml.plain", plain, D1)
    con.register("as_pandas", plain)  # DuckDB's own scan of the DataFrame, for reference
    assert _rows(con, "describe ml.plain")[:6] == [r[:6] for r in _rows(con, "describe as_pandas")]
    assert _rows(con, "select * exclude (as_of_date) from ml.plain order by user_id") == [
        (1, 2, 0.5, 7, None, False), (3, 1, None, None, "cf", True)]


def test_frames_read_through_arrow_equal_duckdbs_own(con):
    """read_frame goes through Arrow: same values, dtypes and NULLs as DuckDB's own df()
    for strings, integers, floats, booleans, dates and timestamps (NULL and not;
    2^53 + 1 exact; dates at the ends of pandas' nanosecond range)."""
    con.execute("""
        create table t as select * from (values
            (1::BIGINT, 'a', NULL::VARCHAR, 0.5::DOUBLE, true, NULL::BOOLEAN, 7::INTEGER,
             NULL::BIGINT, 1::UTINYINT, DATE '2026-09-30', NULL::DATE,
             TIMESTAMP '2026-09-30 12:34:56.789012'),
            (2, NULL, 'é', NULL, false, true, NULL, 9007199254740993, NULL, DATE '1970-01-01',
             DATE '2262-04-12', NULL),
            (3, 'c', 'x,y', 1e-9, true, false, 9, -1, 255, DATE '2026-10-01', DATE '1677-09-22',
             TIMESTAMP '2026-10-01 00:00:00')
        ) v(user_id, name, city, p, flag, maybe, n, big, small, day, odd_day, seen_at)
    """)
    sql = "select * from t where user_id >= ? order by user_id"
    fast = warehouse.read_frame(con, sql, [1])
    pd.testing.assert_frame_equal(fast, con.execute(sql, [1]).df())
    assert len(fast) == 3 and fast["name"].isna().tolist() == [False, True, False]
    # the hold-out, the training sends and the snapshots can be empty (a new shop)
    empty = warehouse.read_frame(con, sql, [4])
    pd.testing.assert_frame_equal(empty, con.execute(sql, [4]).df())
    assert empty.empty and list(empty.columns) == list(fast.columns)
    # other types (here DECIMAL, a list) take df() itself
    other = "select user_id, 1.5::DECIMAL(18, 3) as price, [n] as ns from t order by user_id"
    pd.testing.assert_frame_equal(warehouse.read_frame(con, other), con.execute(other).df())
