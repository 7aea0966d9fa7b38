"""Channel files: hashing, consent, determinism and atomic replacement."""

import csv
import io
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from marketing.identifiers import sha256_hex
from marketing.publish import (
    CHANNEL_FILES,
    PublishResult,
    build_rows,
    latest_publish,
    publish_audience,
)

DAY = "2024-03-01"
HEX64 = re.compile(rb"^[0-9a-f]{64}$")


def _member(user_id, email, phone, country, **overrides):
    row = {
        "user_id": user_id,
        "email": email,
        "phone": phone,
        "first_name": f"Name{user_id}",
        "last_name": "Smith",
        "country": country,
        "city": "Menlo Park",
        "postal_code": "94025-1234" if country == "US" else "SW1A 1AA",
        "is_email_opt_in": True,
        "is_ads_opt_in": True,
        "is_email_suppressed": False,
        "is_erased": False,
        "segment_name": "loyal",
        "recommended_item_1": "Mug",
        "recommended_item_2": "Tea",
        "recommended_item_3": "Spoon",
        "response_probability": 0.5,
    }
    row.update(overrides)
    return row


@pytest.fixture
def members() -> pd.DataFrame:
    return pd.DataFrame(
        [
            _member(1, " Alice@Example.COM ", "(415) 555-0123", "US"),
            _member(2, "bob@example.org", "020 7946 0958", "GB", response_probability=None),
            _member(3, "carol@example.de", "030 12345678", "DE", is_ads_opt_in=False),
            _member(4, "dave@example.com", "030 901820", "DE", is_email_opt_in=False),
            _member(5, "erin@example.com", "(650) 253-0000", "US", is_email_suppressed=True),
            _member(6, "frank@example.com", "(201) 555-0123", "US", is_erased=True),
            _member(7, "not-an-email", None, "US"),  # valid nothing: dropped everywhere
            _member(8, None, "(212) 555-0199", "US"),  # phone only
            _member(9, "gina@example.com", "12", "US", is_ads_opt_in=None),  # missing consent
            _member(10, "hal@example.com", None, "US", is_email_opt_in=None, is_erased=None),
        ]
    )


def _read(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


@pytest.mark.parametrize("channel", ["google_ads", "meta_ads"])
def test_ad_files_hold_only_hashes(tmp_path, members, channel):
    result = publish_audience("winback", channel, members, DAY, "run_1", tmp_path, min_size=0)
    header = CHANNEL_FILES[channel][1]
    for path in sorted(result.path.parent.glob("*.csv")):  # full file and deltas
        data = path.read_bytes()
        assert b"@" not in data
        for raw in members["phone"].dropna():
            digits = re.sub(r"\D", "", raw)
            if len(digits) >= 6:
                assert digits.encode() not in data
        for name in ("Name1", "name1", "Smith", "smith", "Menlo", "menlopark"):
            assert name.encode() not in data
        lines = data.split(b"\n")
        assert lines[0] == ",".join(header).encode()
        assert lines[-1] == b""  # trailing newline, "\n" endings only
        assert b"\r" not in data
        for line in lines[1:-1]:
            for column, value in zip(header, line.split(b","), strict=True):
                if column == "Country":
                    assert re.fullmatch(rb"[A-Z]{2}", value)
                elif column == "Zip":
                    assert re.fullmatch(rb"[0-9A-Z]*", value)
                else:
                    assert value == b"" or HEX64.match(value), (column, value)


def test_google_and_meta_hash_the_right_normal_forms(tmp_path, members):
    google = _read(publish_audience("a", "google_ads", members, DAY, "r", tmp_path, 0).path)
    meta = _read(publish_audience("a", "meta_ads", members, DAY, "r", tmp_path, 0).path)
    # consented for ads: 1, 2, 4, 5, 7 (no e-mail or phone: dropped), 8
    assert len(google) == len(meta) == 5
    alice = sha256_hex("alice@example.com")
    assert {
        "Email": alice,
        "Phone": sha256_hex("+14155550123"),
        "First Name": sha256_hex("name1"),
        "Last Name": sha256_hex("smith"),
        "Country": "US",
        "Zip": "94025",
    } in google
    assert {
        "EMAIL": alice,
        "PHONE": sha256_hex("14155550123"),
        "FN": sha256_hex("name1"),
        "LN": sha256_hex("smith"),
        "ZIP": sha256_hex("94025"),
        "CT": sha256_hex("menlopark"),
        "COUNTRY": sha256_hex("us"),
    } in meta
    bob = [r for r in google if r["Email"] == sha256_hex("bob@example.org")]
    assert bob[0]["Zip"] == "SW1A1AA" and bob[0]["Country"] == "GB"
    assert [r for r in google if r["Email"] == ""][0]["Phone"] == sha256_hex("+12125550199")
    keys = [tuple(r.values()) for r in google]
    assert keys == sorted(keys)


def test_non_consented_users_never_appear(tmp_path, members):
    excluded_ads = {"carol@example.de", "frank@example.com", "gina@example.com", "hal@example.com"}
    for channel in ("google_ads", "meta_ads"):
        text = publish_audience("a", channel, members, DAY, "r", tmp_path, 0).path.read_text()
        for email in excluded_ads:
            assert sha256_hex(email) not in text
    rows = _read(publish_audience("a", "email", members, DAY, "r", tmp_path).path)
    # 4 no e-mail opt-in, 5 suppressed, 6 erased, 7 invalid address, 8 no address, 10 unknown
    assert [r["email"] for r in rows] == [
        "alice@example.com",
        "bob@example.org",
        "carol@example.de",
        "gina@example.com",
    ]
    assert rows[0] == {
        "email": "alice@example.com",
        "first_name": "Name1",
        "segment_name": "loyal",
        "recommended_item_1": "Mug",
        "recommended_item_2": "Tea",
        "recommended_item_3": "Spoon",
        "response_probability": "0.500000",
    }
    assert rows[1]["response_probability"] == ""


def test_consent_rules_match_brute_force(members):
    """Row-by-row reading of the rules, cross-checking the vectorised filter."""
    expected_email = {
        m["email"].strip().lower()
        for m in members.to_dict("records")
        if m["is_email_opt_in"] is True
        and m["is_email_suppressed"] is False
        and m["is_erased"] is False
        and isinstance(m["email"], str)
        and "@" in m["email"]
    }
    assert {row[0] for row in build_rows(members, "email")} == expected_email


def test_republish_is_byte_identical_and_manifest(tmp_path, members):
    first = publish_audience("winback", "meta_ads", members, DAY, "run_1", tmp_path, 0)
    first_bytes = {p.name: p.read_bytes() for p in first.path.parent.iterdir()}
    shuffled = members.sample(frac=1.0, random_state=3).reset_index(drop=True)
    second = publish_audience("winback", "meta_ads", shuffled, DAY, "run_1", tmp_path, 0)
    assert second == first
    assert {p.name: p.read_bytes() for p in second.path.parent.iterdir()} == first_bytes

    directory = tmp_path / "meta_ads" / "winback" / DAY
    assert sorted(os.listdir(tmp_path / "meta_ads" / "winback")) == [DAY]  # no temp dirs left
    assert first.path == directory / "custom_audience_0001.csv"
    assert isinstance(first, PublishResult) and first.status == "published"
    manifest_bytes = (directory / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert manifest_bytes.endswith(b"}\n")
    assert manifest_bytes.decode() == json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    assert manifest["rows"] == first.rows == 5
    assert manifest["sha256"] == first.sha256
    assert manifest["file"] == "custom_audience_0001.csv"
    assert manifest["files"] == [
        {"file": "custom_audience_0001.csv", "rows": 5, "sha256": first.sha256}
    ]
    assert manifest["columns"] == ["EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "COUNTRY"]
    assert manifest["schema"]["hashed"] == manifest["columns"]
    assert manifest["schema"]["max_rows_per_file"] == 10_000
    assert manifest["status"] == "published" and manifest["reason"] is None
    assert (manifest["audience"], manifest["channel"], manifest["as_of_date"]) == (
        "winback",
        "meta_ads",
        DAY,
    )
    assert manifest["run_id"] == "run_1"
    assert manifest["previous_as_of_date"] is None and manifest["adds"] == 5


def test_manifest_counts_adds_and_removes_against_previous_day(tmp_path, members):
    publish_audience("a", "email", members, "2024-02-29", "r0", tmp_path)
    changed = members[members["user_id"] != 1]
    extra = pd.DataFrame([_member(11, "zed@example.com", None, "US")])
    publish_audience("a", "email", pd.concat([changed, extra]), DAY, "r1", tmp_path)
    manifest = json.loads((tmp_path / "email" / "a" / DAY / "manifest.json").read_text())
    assert (manifest["previous_as_of_date"], manifest["adds"], manifest["removes"]) == (
        "2024-02-29",
        1,
        1,
    )


def test_deltas_skip_a_publish_below_min_size(tmp_path, members):
    # the latest *successful* publish is the one later deltas (and pruning) must keep
    publish_audience("a", "meta_ads", members, "2024-02-28", "r0", tmp_path, min_size=0)
    skipped = publish_audience("a", "meta_ads", members, "2024-02-29", "r1", tmp_path,
                               min_size=1000)
    assert skipped.status == "skipped_below_min_size"
    audience_dir = tmp_path / "meta_ads" / "a"
    assert latest_publish(audience_dir)[0] == "2024-02-28"
    assert latest_publish(audience_dir, before="2024-02-28") is None
    assert latest_publish(tmp_path / "email" / "none") is None
    publish_audience("a", "meta_ads", members[members["user_id"] != 1], DAY, "r2", tmp_path, 0)
    manifest = json.loads((audience_dir / DAY / "manifest.json").read_text())
    assert (manifest["previous_as_of_date"], manifest["adds"], manifest["removes"]) == (
        "2024-02-28", 0, 1)
    assert latest_publish(audience_dir)[0] == DAY


@pytest.mark.parametrize("failing_call", [1, 2])
def test_failure_before_swap_keeps_previous_publish(tmp_path, members, monkeypatch, failing_call):
    first = publish_audience("winback", "email", members, DAY, "run_1", tmp_path)
    audience_dir = first.path.parent.parent
    before = {p.name: p.read_bytes() for p in first.path.parent.iterdir()}

    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == failing_call:  # 1: setting the old dir aside; 2: the swap itself
            raise OSError("disk on fire")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk on fire"):
        publish_audience("winback", "email", members.iloc[:1], DAY, "run_2", tmp_path)
    monkeypatch.undo()

    assert sorted(os.listdir(audience_dir)) == [DAY]  # no temp or set-aside dirs
    assert {p.name: p.read_bytes() for p in first.path.parent.iterdir()} == before


def test_interrupted_swap_is_recovered_on_next_publish(tmp_path, members):
    first = publish_audience("winback", "email", members, DAY, "run_1", tmp_path)
    audience_dir = first.path.parent.parent
    before = first.path.read_bytes()
    # Simulate a crash after the old dir was set aside but before the swap.
    os.rename(audience_dir / DAY, audience_dir / f".{DAY}.old-x")
    (audience_dir / f".{DAY}.tmp-y").mkdir()
    again = publish_audience("winback", "email", members, DAY, "run_1", tmp_path)
    assert again.path.read_bytes() == before
    assert sorted(os.listdir(audience_dir)) == [DAY]


def test_rejects_bad_arguments(tmp_path, members):
    with pytest.raises(ValueError, match="got 'tiktok'"):
        publish_audience("a", "tiktok", members, DAY, "r", tmp_path)
    with pytest.raises(ValueError, match="got '../escape'"):
        publish_audience("../escape", "email", members, DAY, "r", tmp_path)
    with pytest.raises(ValueError, match="missing columns"):
        publish_audience("a", "email", members.drop(columns=["is_erased"]), DAY, "r", tmp_path)
    with pytest.raises(ValueError, match="as_of_date"):
        publish_audience("a", "email", members, "yesterday", "r", tmp_path)


def test_data_lines_are_the_files_lines_even_with_quotes_and_newlines():
    from marketing.publish import _csv_bytes, _line, _lines

    rows = [("a", "b,c"), ('say "hi"', ""), ("two\nlines", "x"), ("é", " lead")]
    assert _lines(rows) == [
        line.encode("utf-8") for line in
        ['a,"b,c"', '"say ""hi""",', '"two\nlines",x', "é, lead"]
    ]
    # A file assembled from the lines is what one csv writer writes for the whole file.
    whole = io.StringIO(newline="")
    writer = csv.writer(whole, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["h1", "h2"])
    writer.writerows(rows)
    assert _csv_bytes(_line(["h1", "h2"]), _lines(rows)) == whole.getvalue().encode("utf-8")
    assert _csv_bytes(_line(["h1", "h2"]), []) == b"h1,h2\n"
