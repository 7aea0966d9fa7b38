"""pipeline.publish_audiences on a hand-made warehouse: log, history, frequency cap, bad config."""

import csv
import dataclasses
import importlib.util
import io
import json
import logging
from datetime import date, timedelta
from pathlib import Path

import pytest

from marketing import warehouse
from marketing.audience_config import AudienceConfigError
from marketing.pipeline import publish_audiences
from marketing.settings import REPO_ROOT, Settings

_spec = importlib.util.spec_from_file_location(
    "audience_warehouse", REPO_ROOT / "tests" / "fixtures" / "audience_warehouse.py"
)
fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture)

D1 = date(2024, 3, 1)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return fixture.settings_for(tmp_path)


def _emails(settings: Settings, day: date) -> list[str]:
    path = settings.outbox_dir / "email" / "newsletter" / day.isoformat() / "audience.csv"
    return [row["email"] for row in csv.DictReader(io.StringIO(path.read_text()))]


def test_publish_log_history_and_holdout(settings):
    fixture.write_day(settings.warehouse_path, D1, holdout={6})
    result = publish_audiences(D1, "run_1", settings)
    assert result == {"email/newsletter": 5, "google_ads/retarget": 5, "meta_ads/retarget": 5}
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        log = con.execute(
            "select channel, audience_name, rows, status, adds, removes, holdout, reason, path "
            "from ml.publish_log where as_of_date = ? order by all", [D1]
        ).fetchall()
        exported = con.execute(
            "select channel, list(user_id order by user_id) from ml.published_members "
            "where as_of_date = ? group by channel order by channel", [D1]
        ).fetchall()
    assert [row[:8] for row in log] == [
        ("email", "newsletter", 5, "published", 5, 0, 1, ""),
        ("google_ads", "retarget", 5, "published", 5, 0, 1, ""),
        ("meta_ads", "retarget", 5, "published", 5, 0, 1, ""),
    ]
    assert log[2][8] == "outbox/meta_ads/retarget/2024-03-01/custom_audience_0001.csv"
    assert exported == [(c, [1, 2, 3, 4, 5]) for c in ("email", "google_ads", "meta_ads")]
    # e-mail file: top-3 item names in rank order, the campaign's score
    path = settings.outbox_dir / "email" / "newsletter" / "2024-03-01" / "audience.csv"
    first = next(csv.DictReader(io.StringIO(path.read_text())))
    assert first == {
        "email": "annavel.smith1@example.com", "first_name": "Annavel", "segment_name": "Loyal",
        "recommended_item_1": "Item 1", "recommended_item_2": "Item 2",
        "recommended_item_3": "Item 3", "response_probability": "0.100000",
    }


def test_frequency_cap_skips_recently_emailed_users(settings):
    fixture.write_day(settings.warehouse_path, D1, holdout={1, 2})
    publish_audiences(D1, "r1", settings)
    assert _emails(settings, D1) == [f"{n.lower()}.smith{i}@example.com" for i, n in
                                     [(3, "Cléovix"), (4, "Dravan"), (5, "Evyqa"), (6, "Faylith")]]
    for offset, expected_ids in ((1, [1, 2]), (6, []), (7, [3, 4, 5, 6])):
        day = D1 + timedelta(days=offset)
        fixture.write_day(settings.warehouse_path, day)
        publish_audiences(day, "r", settings)
        got = sorted(int(e.split("@")[0].rsplit("smith", 1)[1]) for e in _emails(settings, day))
        assert got == expected_ids, offset
    # D1 e-mailed 3..6 and D1+1 e-mailed 1, 2: on D1+6 everyone is within 7 days; on D1+7,
    # 3..6 are 7 days back (free again) while 1 and 2 are 6 days back (still capped).
    # Ad channels have no cap: every day lists everyone.
    day = D1 + timedelta(days=7)
    manifest = json.loads(
        (settings.outbox_dir / "google_ads" / "retarget" / day.isoformat() / "manifest.json")
        .read_text()
    )
    assert manifest["rows"] == 6


def test_rerun_same_day_is_identical_and_ignores_own_history(settings):
    fixture.write_day(settings.warehouse_path, D1)
    publish_audiences(D1, "r1", settings)
    before = {p: p.read_bytes() for p in sorted(settings.outbox_dir.rglob("*.csv"))}
    publish_audiences(D1, "r2", settings)  # D1's own publish must not cap D1
    assert {p: p.read_bytes() for p in sorted(settings.outbox_dir.rglob("*.csv"))} == before
    assert len(_emails(settings, D1)) == 6


def test_bad_audiences_file_publishes_nothing(settings):
    fixture.write_day(settings.warehouse_path, D1)
    publish_audiences(D1, "r1", settings)
    before = {p: p.read_bytes() for p in sorted(settings.outbox_dir.rglob("*"))
              if p.is_file()}
    settings.audiences_path.write_text(
        fixture.AUDIENCES_YML.replace("frequency_cap_days: 7", "frequency_cap_days: 0"),
        encoding="utf-8",
    )
    with pytest.raises(AudienceConfigError,
                       match=r"audience 'newsletter' field 'frequency_cap_days'"):
        publish_audiences(D1, "r2", settings)
    after = {p: p.read_bytes() for p in sorted(settings.outbox_dir.rglob("*")) if p.is_file()}
    assert after == before
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        runs = con.execute("select distinct run_id from ml.publish_log").fetchall()
    assert runs == [("r1",)]


def test_small_ad_audience_is_logged_not_published(settings):
    settings.audiences_path.write_text(
        fixture.AUDIENCES_YML.replace("min_size: 2", "min_size: 7"), encoding="utf-8"
    )
    fixture.write_day(settings.warehouse_path, D1)
    publish_audiences(D1, "r1", settings)
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        log = con.execute(
            "select channel, rows, status, reason from ml.publish_log order by channel"
        ).fetchall()
        ads = con.execute(
            "select count(*) from ml.published_members where channel <> 'email'"
        ).fetchone()[0]
    assert log == [
        ("email", 6, "published", ""),
        ("google_ads", 0, "skipped_below_min_size",
         "6 rows < min_size 7: ad audience not published"),
        ("meta_ads", 0, "skipped_below_min_size",
         "6 rows < min_size 7: ad audience not published"),
    ]
    assert ads == 0
    assert not list((settings.outbox_dir / "google_ads").rglob("*.csv"))


def test_fixture_is_what_the_publisher_expects():
    assert Path(fixture.__file__).name == "audience_warehouse.py"


def _outbox_files(settings: Settings) -> dict[Path, bytes]:
    """Every outbox file but the manifests (they name the run), by path under the outbox."""
    return {p.relative_to(settings.outbox_dir): p.read_bytes()
            for p in settings.outbox_dir.rglob("*") if p.is_file() and "manifest" not in p.name}


def test_phone_parses_carry_over_to_the_next_publish(settings, monkeypatch):
    """Each publish keeps the numbers it parsed; the next one parses only new numbers, with
    byte-identical files; an erased user's number drops out of the kept parses."""
    import phonenumbers

    from marketing import identifiers

    settings = dataclasses.replace(settings, publish_processes=1)  # parse calls counted here

    identifiers._PARSED.clear()  # a fresh process
    fixture.write_day(settings.warehouse_path, D1)
    publish_audiences(D1, "r1", settings)
    first = _outbox_files(settings)
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        kept = con.execute("select phone, region, e164, phonenumbers_version "
                           "from cache.phone_parses order by all").fetchall()
    assert [(p, r) for p, r, _, _ in kept] == sorted(
        zip(fixture.PHONES, fixture.COUNTRIES, strict=True))
    assert {v for *_, v in kept} == {phonenumbers.__version__}
    assert dict(((p, r), e) for p, r, e, _ in kept)[("(415) 555-0101", "US")] == "+14155550101"

    identifiers._PARSED.clear()  # the next run's process knows nothing ...
    calls = []
    real_parse = phonenumbers.parse
    monkeypatch.setattr(phonenumbers, "parse", lambda *a, **k: calls.append(a) or real_parse(*a, **k))
    publish_audiences(D1, "r2", settings)
    assert calls == []  # ... but the kept parses
    again = _outbox_files(settings)
    assert again == first

    fixture.write_day(settings.warehouse_path, D1 + timedelta(days=1), erased={2})
    publish_audiences(D1 + timedelta(days=1), "r3", settings)
    assert calls == []
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        phones = [r[0] for r in con.execute("select phone from cache.phone_parses").fetchall()]
        tables = {r[0] for r in con.execute("select schema_name from duckdb_tables()").fetchall()}
    assert "020 7946 0102" not in phones and len(phones) == 5
    assert "cache" in tables


def test_phone_parses_of_another_libphonenumber_version_are_ignored(settings, monkeypatch):
    import phonenumbers

    from marketing import identifiers

    settings = dataclasses.replace(settings, publish_processes=1)  # parse calls counted here

    fixture.write_day(settings.warehouse_path, D1)
    publish_audiences(D1, "r1", settings)
    identifiers._PARSED.clear()
    monkeypatch.setattr(phonenumbers, "__version__", "0.0.1")
    calls = []
    real_parse = phonenumbers.parse
    monkeypatch.setattr(phonenumbers, "parse", lambda *a, **k: calls.append(a) or real_parse(*a, **k))
    publish_audiences(D1, "r2", settings)
    assert len(calls) == len(fixture.PHONES)


def _published(settings: Settings) -> tuple[dict, dict]:
    """The outbox files (:func:`_outbox_files`) and the step's tables."""
    files = _outbox_files(settings)
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        tables = {t: con.execute(f"select * from {t} order by all").fetchall()
                  for t in ("ml.publish_log", "ml.published_members", "cache.phone_parses")}
    return files, tables


@pytest.mark.parametrize("processes", [2, 3])
def test_forked_processes_write_what_one_process_writes(tmp_path, processes, caplog):
    """The files, the publish log, the published members and the kept phone parses do not
    depend on how many processes wrote them; a worker's warnings reach the caller's log."""
    outputs = {}
    for n in (1, processes):
        (tmp_path / str(n)).mkdir()
        settings = dataclasses.replace(fixture.settings_for(tmp_path / str(n)),
                                       publish_processes=n)
        settings.audiences_path.write_text(
            fixture.AUDIENCES_YML.replace("min_size: 2", "min_size: 6"), encoding="utf-8")
        fixture.write_day(settings.warehouse_path, D1)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="marketing"):
            publish_audiences(D1, "r1", settings)
            fixture.write_day(settings.warehouse_path, D1 + timedelta(days=1), erased={2})
            publish_audiences(D1 + timedelta(days=1), "r2", settings)
        below = [r for r in caplog.records if "not published" in r.getMessage()]
        outputs[n] = (_published(settings), sorted(r.getMessage() for r in below))
    (files, tables), warnings = outputs[processes]
    assert len(warnings) == 2  # google_ads and meta_ads below min_size after the erasure
    assert outputs[processes] == outputs[1]
    assert {path.parts[0] for path in files} == {"email", "google_ads", "meta_ads"}
    assert len(tables["ml.published_members"]) > 0 and len(tables["cache.phone_parses"]) == 5


@pytest.mark.parametrize("processes", [0, -1, 1.5, "2"])
def test_publish_processes_must_be_a_positive_integer(tmp_path, processes):
    with pytest.raises(ValueError, match="publish_processes must be None or an integer >= 1"):
        dataclasses.replace(fixture.settings_for(tmp_path), publish_processes=processes)
