"""Erasure and PII in ad files: every byte of every file the publish step writes is scanned.

A user erased on D2 (after being exported on D1) must be absent from every file of D2's
publish (full lists, deltas, manifests: plain, normalised or hashed identifiers, and their old
data lines) and from ``ml.published_members`` of every date. Ad files never hold a plain e-mail,
phone or name of anyone.
"""

import importlib.util
import json
import re
from datetime import date

import pytest

from marketing import warehouse
from marketing.identifiers import (
    normalise_email,
    normalise_name,
    normalise_phone,
    sha256_hex,
)
from marketing.pipeline import publish_audiences
from marketing.settings import REPO_ROOT, Settings

_spec = importlib.util.spec_from_file_location(
    "audience_warehouse", REPO_ROOT / "tests" / "fixtures" / "audience_warehouse.py"
)
fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture)

D1, D2 = date(2024, 3, 1), date(2024, 3, 2)
ERASED = 2


@pytest.fixture
def settings(tmp_path) -> Settings:
    return fixture.settings_for(tmp_path)


def _identifiers(user: dict) -> tuple[set[bytes], set[bytes]]:
    """(plain forms, hashed forms) of a user's e-mail, phone and names, as bytes."""
    email = normalise_email(user["email"])
    phones = {normalise_phone(user["phone"], user["country"], s) for s in ("e164", "digits")}
    names = {normalise_name(user["first_name"])}  # the fixture's last name is shared by all
    plain = {user["email"].strip(), email, user["phone"], *phones, user["first_name"]}
    plain.add(re.sub(r"\D", "", user["phone"]))
    hashed = {sha256_hex(v) for v in {email, *phones, *names}}
    return {p.encode() for p in plain if p}, {h.encode() for h in hashed}


def _files(settings: Settings, day: date | None = None):
    return [
        p for p in sorted(settings.outbox_dir.rglob("*"))
        if p.is_file() and (day is None or day.isoformat() in p.parts)
    ]


def _publish_two_days(settings: Settings) -> None:
    fixture.write_day(settings.warehouse_path, D1)
    publish_audiences(D1, "run_d1", settings)
    fixture.write_day(settings.warehouse_path, D2, erased={ERASED})
    # An upstream bug leaves the erased user in D2's audience: the publisher must still drop them.
    with warehouse.connect(settings.warehouse_path) as con:
        con.execute(
            "insert into marts.audience_members by name "
            "select 'newsletter' as audience_name, 'email' as channel, ? as user_id, "
            "false as is_holdout, ?::DATE as as_of_date",
            [ERASED, D2],
        )
        con.execute(
            "insert into marts.audience_members by name "
            "select 'retarget' as audience_name, 'google_ads' as channel, ? as user_id, "
            "false as is_holdout, ?::DATE as as_of_date",
            [ERASED, D2],
        )
    publish_audiences(D2, "run_d2", settings)


def test_erased_user_leaves_every_file_and_table_from_the_request_date(settings):
    _publish_two_days(settings)
    user = fixture.users().set_index("user_id").loc[ERASED].to_dict()
    plain, hashed = _identifiers(user)
    d1_text = b"".join(p.read_bytes() for p in _files(settings, D1))
    assert any(h in d1_text for h in hashed)  # the scan can see them: D1 had the user
    d1_lines = {
        line for p in _files(settings, D1) if p.suffix == ".csv"
        for line in p.read_bytes().splitlines()[1:]
        if any(h in line for h in hashed) or any(v.lower() in line.lower() for v in plain)
    }
    assert d1_lines
    d2_files = _files(settings, D2)
    assert {p.name for p in d2_files} >= {"audience.csv", "customer_match.csv", "removes.csv",
                                          "custom_audience_0001.csv", "removes_0001.csv"}
    for path in d2_files:
        data = path.read_bytes()
        for value in plain:
            assert value.lower() not in data.lower(), (path, value)
        for value in hashed:
            assert value not in data, (path, value)
        for line in d1_lines:
            assert line not in data, path
    # the removes files say how many lines were withheld rather than written
    manifest = json.loads((settings.outbox_dir / "google_ads" / "retarget" / "2024-03-02" /
                           "manifest.json").read_text())
    assert (manifest["removes"], manifest["removes_withheld"]) == (1, 1)
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        left = con.execute(
            "select count(*) from ml.published_members where user_id = ?", [ERASED]
        ).fetchone()[0]
        others = con.execute(
            "select count(distinct user_id) from ml.published_members where as_of_date = ?", [D1]
        ).fetchone()[0]
    assert left == 0 and others == 5  # erased from D1's history too; the others stay


def test_ad_files_never_hold_plain_identifiers(settings):
    _publish_two_days(settings)
    everyone = fixture.users().to_dict("records")
    ad_files = [p for p in _files(settings) if p.parts[-4] in ("google_ads", "meta_ads")]
    assert len(ad_files) >= 8
    for path in ad_files:
        data = path.read_bytes()
        assert b"@" not in data, path
        for user in everyone:
            plain, _ = _identifiers(user)
            for value in plain:
                assert value.lower() not in data.lower(), (path, value)
        # every byte sequence that is not a header, a 64-hex digest, a country code or a zip
        if path.suffix == ".csv":
            body = data.split(b"\n", 1)[1]
            leftover = re.sub(rb"[0-9a-f]{64}|\b[A-Z]{2}\b|\b9\d{4}\b|[,\n]", b"", body)
            assert leftover == b"", (path, leftover[:80])


def test_erased_user_leaves_earlier_ml_partitions(settings):
    fixture.write_day(settings.warehouse_path, D1)
    with warehouse.connect(settings.warehouse_path) as con:
        con.execute("create schema if not exists ml")
        con.execute("create or replace table ml.user_segments as select user_id, 1 as segment_id, "
                    "'A' as segment_name, ?::DATE as as_of_date from range(1, 6) as r(user_id)",
                    [D1])
        con.execute("create or replace table ml.user_recommendations as select user_id, 1 as rank, "
                    "7 as item_id, ?::DATE as as_of_date from range(1, 6) as r(user_id)", [D1])
        con.execute("create or replace view ml.some_view as select * from ml.user_segments")
    publish_audiences(D1, "run_d1", settings)
    fixture.write_day(settings.warehouse_path, D2, erased={ERASED})
    publish_audiences(D2, "run_d2", settings)
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        for table in ("ml.user_segments", "ml.user_recommendations"):
            users = {r[0] for r in con.execute(
                f"select user_id from {table} where as_of_date = ?", [D1]).fetchall()}
            assert users == {1, 3, 4, 5}, table  # D1's rows of the user erased on D2 are gone
