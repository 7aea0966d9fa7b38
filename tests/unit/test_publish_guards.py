"""Publisher guards: Meta file size limit, min/max size, holdout, deltas, mid-publish failure."""

import csv
import hashlib
import io
import json
import os

import pandas as pd
import pytest

from marketing import publish
from marketing.identifiers import sha256_hex
from marketing.publish import build_rows, publish_audience

DAY = "2024-03-01"


def _member(user_id, **overrides):
    row = {
        "user_id": user_id,
        "email": f"user{user_id}@example.com",
        "phone": None,
        "first_name": f"First{user_id}",
        "last_name": "Last",
        "country": "US",
        "city": "Austin",
        "postal_code": "73301",
        "is_email_opt_in": True,
        "is_ads_opt_in": True,
        "is_email_suppressed": False,
        "is_erased": False,
        "segment_name": "loyal",
        "recommended_item_1": "Mug",
        "recommended_item_2": None,
        "recommended_item_3": None,
        "response_probability": user_id / 100,
    }
    row.update(overrides)
    return row


def _frame(ids, **overrides) -> pd.DataFrame:
    return pd.DataFrame([_member(i, **overrides) for i in ids])


def _lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_meta_payload_files_are_split_at_the_row_limit(tmp_path, monkeypatch):
    assert publish.MAX_ROWS_PER_FILE["meta_ads"] == 10_000  # Meta: 10,000 users per request
    monkeypatch.setitem(publish.MAX_ROWS_PER_FILE, "meta_ads", 2)
    members = _frame(range(1, 6))
    result = publish_audience("a", "meta_ads", members, DAY, "r", tmp_path, min_size=0)
    directory = result.path.parent
    manifest = json.loads((directory / "manifest.json").read_text())
    names = [f["file"] for f in manifest["files"]]
    assert names == ["custom_audience_0001.csv", "custom_audience_0002.csv",
                     "custom_audience_0003.csv"]
    assert [f["rows"] for f in manifest["files"]] == [2, 2, 1] and manifest["rows"] == 5
    header = ",".join(publish.CHANNEL_FILES["meta_ads"][1])
    body = []
    for name in names:
        lines = _lines(directory / name)
        assert lines[0] == header and len(lines) - 1 <= 2
        body += lines[1:]
    assert body == [",".join(row) for row in build_rows(members, "meta_ads")]
    # the manifest checksum is the full export as one CSV
    full = ("\n".join([header, *body]) + "\n").encode()
    assert manifest["sha256"] == hashlib.sha256(full).hexdigest()
    assert sorted(p.name for p in directory.glob("adds_*.csv")) == ["adds_0001.csv",
                                                                    "adds_0002.csv",
                                                                    "adds_0003.csv"]


def test_small_ad_audience_is_not_published_and_says_why(tmp_path):
    first = publish_audience("a", "google_ads", _frame(range(1, 6)), "2024-02-28", "r0",
                             tmp_path, min_size=5)
    assert first.status == "published"
    small = publish_audience("a", "google_ads", _frame(range(1, 4)), "2024-02-29", "r1",
                             tmp_path, min_size=5)
    assert small.status == "skipped_below_min_size" and small.rows == 0
    assert small.reason == "3 rows < min_size 5: ad audience not published"
    directory = tmp_path / "google_ads" / "a" / "2024-02-29"
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json"]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert (manifest["status"], manifest["reason"], manifest["files"]) == (
        "skipped_below_min_size", small.reason, [])
    # the next publish diffs against the last *successful* one (2024-02-28), not the skip
    again = publish_audience("a", "google_ads", _frame(range(2, 7)), DAY, "r2", tmp_path,
                             min_size=5)
    manifest = json.loads((again.path.parent / "manifest.json").read_text())
    assert (manifest["previous_as_of_date"], again.adds, again.removes) == ("2024-02-28", 1, 1)
    # e-mail audiences are not held to min_size
    assert publish_audience("a", "email", _frame([1]), DAY, "r", tmp_path).status == "published"


def test_max_size_keeps_the_best_scored(tmp_path):
    members = _frame(range(1, 11)).sample(frac=1.0, random_state=1)
    result = publish_audience("a", "email", members, DAY, "r", tmp_path, max_size=3)
    emails = [row["email"] for row in csv.DictReader(io.StringIO(result.path.read_text()))]
    assert sorted(emails) == ["user10@example.com", "user8@example.com", "user9@example.com"]
    assert result.user_ids == (8, 9, 10)


def test_holdout_members_are_counted_never_exported(tmp_path):
    members = pd.concat([_frame([1, 2], is_holdout=False), _frame([3, 4, 5], is_holdout=True)])
    for channel in ("email", "google_ads", "meta_ads"):
        result = publish_audience("a", channel, members, DAY, "r", tmp_path, min_size=0)
        assert (result.rows, result.holdout, result.user_ids) == (2, 3, (1, 2))
        text = "".join(p.read_text() for p in result.path.parent.iterdir())
        for held in (3, 4, 5):
            assert f"user{held}@example.com" not in text
            assert sha256_hex(f"user{held}@example.com") not in text
        assert json.loads((result.path.parent / "manifest.json").read_text())["holdout"] == 3


def test_delta_files_hold_adds_and_removes(tmp_path):
    publish_audience("a", "google_ads", _frame([1, 2, 3]), "2024-02-29", "r0", tmp_path, 0)
    result = publish_audience("a", "google_ads", _frame([2, 3, 4]), DAY, "r1", tmp_path, 0)
    directory = result.path.parent
    adds = list(csv.DictReader(io.StringIO((directory / "adds.csv").read_text())))
    removes = list(csv.DictReader(io.StringIO((directory / "removes.csv").read_text())))
    assert [r["Email"] for r in adds] == [sha256_hex("user4@example.com")]
    assert [r["Email"] for r in removes] == [sha256_hex("user1@example.com")]
    # e-mail: keyed by address (a changed score is not a remove + add); removes never written
    publish_audience("a", "email", _frame([1, 2]), "2024-02-29", "r0", tmp_path)
    changed = _frame([2, 3], response_probability=0.9)
    result = publish_audience("a", "email", changed, DAY, "r1", tmp_path)
    assert (result.adds, result.removes) == (1, 1)
    names = sorted(p.name for p in result.path.parent.iterdir())
    assert names == ["adds.csv", "audience.csv", "manifest.json"]
    assert "user1@example.com" not in "".join(p.read_text() for p in result.path.parent.iterdir())


def test_failure_while_writing_files_keeps_previous_publish(tmp_path, monkeypatch):
    first = publish_audience("a", "google_ads", _frame([1, 2]), DAY, "r1", tmp_path, 0)
    directory = first.path.parent
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    real_write = publish._write_synced
    calls = []

    def failing_write(path, data):
        calls.append(path)
        if len(calls) == 2:  # the full file is written, then the disk fills up
            raise OSError("no space left")
        real_write(path, data)

    monkeypatch.setattr(publish, "_write_synced", failing_write)
    with pytest.raises(OSError, match="no space left"):
        publish_audience("a", "google_ads", _frame([7, 8, 9]), DAY, "r2", tmp_path, 0)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert sorted(os.listdir(directory.parent)) == [DAY]


def test_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="min_size must be"):
        publish_audience("a", "email", _frame([1]), DAY, "r", tmp_path, min_size=-1)
    with pytest.raises(ValueError, match="max_size must be"):
        publish_audience("a", "email", _frame([1]), DAY, "r", tmp_path, max_size=2.5)
