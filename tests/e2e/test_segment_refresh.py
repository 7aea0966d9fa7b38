"""The whole daily DAG on tiny generated data, run the way `make demo` runs it.

One module-scoped run (`airflow dags test`) for the sample's last day; the tests then check
every table and file it promises, the planted structure it must recover, privacy rules, and that
a second run of the same date changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import json
import os
import re
import subprocess
import threading
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from marketing.sample_data import generate
from marketing.settings import Settings
from marketing.warehouse import connect

pytestmark = pytest.mark.e2e

SAMPLE = {"n_users": 2000, "n_items": 240, "n_days": 60, "seed": 7, "end_date": date(2026, 9, 30)}
ML_TABLES = (
    "ml.user_segments",
    "ml.segments",
    "ml.segment_model_selection",
    "ml.item_neighbours",
    "ml.user_recommendations",
    "ml.campaign_scores",
    "ml.user_predictions",
    "ml.model_runs",
    "ml.audience_definitions",
    "ml.publish_log",
    "ml.published_members",
)
MART_TABLES = (
    "marts.user_profiles",
    "marts.user_rfm",
    "marts.segment_profiles",
    "marts.user_item_interactions",
    "marts.fct_campaign_sends",
    "marts.dim_users",
    "marts.audience_members",
)
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def run_dag(as_of: date) -> None:
    result = subprocess.run(
        ["airflow", "dags", "test", "segment_refresh", as_of.isoformat()],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "failed" not in _final_state_line(output), output[-6000:]


def _final_state_line(output: str) -> str:
    lines = [line for line in output.splitlines() if "DagRun Finished" in line]
    return lines[-1] if lines else ""


def table_state(settings: Settings, as_of: date) -> dict[str, list]:
    state = {}
    with connect(settings.warehouse_path, read_only=True) as con:
        for table in ML_TABLES + MART_TABLES:
            state[table] = con.execute(
                f"select * exclude (run_id) from {table} where as_of_date = ? order by all"
                if table == "ml.publish_log"
                else f"select * from {table} where as_of_date = ? order by all",
                [as_of],
            ).fetchall()
    return state


def outbox_files(settings: Settings, as_of: date) -> dict[str, bytes]:
    files = {}
    for path in sorted(settings.outbox_dir.rglob("*")):
        if path.is_file() and as_of.isoformat() in path.parts:
            files[str(path.relative_to(settings.outbox_dir))] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="module")
def webhook():
    """An audience webhook on 127.0.0.1 behind the DAG's connection; yields what it received."""
    received: list[tuple[dict, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            received.append((dict(self.headers),
                             self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    variable = "AIRFLOW_CONN_MARKETING_AUDIENCE_WEBHOOK"
    os.environ[variable] = f"http://127.0.0.1:{server.server_port}/audiences"
    try:
        yield received
    finally:
        os.environ.pop(variable, None)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def first_run(airflow_db, settings, webhook):
    generate(out_dir=settings.data_dir, **SAMPLE)
    as_of = SAMPLE["end_date"]
    run_dag(as_of)
    return {
        "as_of": as_of,
        "tables": table_state(settings, as_of),
        "files": outbox_files(settings, as_of),
        "deliveries": list(webhook),
    }


def test_every_table_has_rows_for_the_run_date(first_run):
    empty = [t for t, rows in first_run["tables"].items() if not rows]
    assert empty == []


def test_segments_recover_planted_personas(first_run, settings):
    with connect(settings.warehouse_path, read_only=True) as con:
        segments = con.execute(
            "select user_id, segment_id from ml.user_segments where as_of_date = ?",
            [first_run["as_of"]],
        ).df()
        names = con.execute(
            "select segment_name from ml.segments where as_of_date = ?", [first_run["as_of"]]
        ).fetchall()
    personas = pd.read_parquet(settings.truth_dir / "personas.parquet")
    joined = segments.merge(personas, on="user_id")
    assert len(joined) == len(segments)
    assert adjusted_rand_score(joined["persona"], joined["segment_id"]) >= 0.7
    assert all(name and name[0] for name in names)
    assert len({n[0] for n in names}) == len(names)


def test_neighbours_stay_in_copurchase_groups(first_run, settings):
    with connect(settings.warehouse_path, read_only=True) as con:
        neighbours = con.execute(
            "select item_id, neighbour_item_id, rank, similarity from ml.item_neighbours "
            "where as_of_date = ?",
            [first_run["as_of"]],
        ).df()
    groups = pd.read_parquet(settings.truth_dir / "item_groups.parquet")[["item_id", "group_id"]]
    top = neighbours[neighbours["rank"] <= 5]
    top = top.merge(groups, on="item_id").merge(
        groups.rename(columns={"item_id": "neighbour_item_id", "group_id": "neighbour_group"}),
        on="neighbour_item_id",
    )
    assert (top["group_id"] == top["neighbour_group"]).mean() >= 0.6
    assert (neighbours["item_id"] != neighbours["neighbour_item_id"]).all()
    assert neighbours.groupby("item_id")["rank"].max().max() <= 20


def test_recommendations_exclude_purchases(first_run, settings):
    with connect(settings.warehouse_path, read_only=True) as con:
        clash = con.execute(
            "select count(*) from ml.user_recommendations as r "
            "join marts.user_item_interactions as i using (user_id, item_id) "
            "where r.as_of_date = ? and i.has_purchased",
            [first_run["as_of"]],
        ).fetchone()[0]
        per_user = con.execute(
            "select max(rank) from ml.user_recommendations where as_of_date = ?",
            [first_run["as_of"]],
        ).fetchone()[0]
    assert clash == 0
    assert per_user == 10


def test_response_model_beats_chance(first_run, settings):
    with connect(settings.warehouse_path, read_only=True) as con:
        auc = con.execute(
            "select value from ml.model_runs where model = 'response' and metric = 'auc' "
            "and as_of_date = ?",
            [first_run["as_of"]],
        ).fetchone()[0]
        probabilities = con.execute(
            "select min(response_probability), max(response_probability) from ml.campaign_scores "
            "where as_of_date = ?",
            [first_run["as_of"]],
        ).fetchone()
    assert auc > 0.6
    assert 0.0 <= probabilities[0] < probabilities[1] <= 1.0
    card = settings.models_dir / "response" / first_run["as_of"].isoformat() / "model_card.json"
    assert json.loads(card.read_text())["metrics"]["auc"] == pytest.approx(auc)


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(data.decode("utf-8").splitlines()))


def test_files_and_manifests(first_run):
    files = first_run["files"]
    channels = {name.split("/")[0] for name in files}
    assert channels == {"google_ads", "meta_ads", "email"}
    manifests = {n: json.loads(b) for n, b in files.items() if n.endswith("manifest.json")}
    published = {n: m for n, m in manifests.items() if m["status"] == "published"}
    assert published
    for name, manifest in manifests.items():
        assert manifest["as_of_date"] == first_run["as_of"].isoformat()
        assert manifest["run_id"]
        if manifest["status"] != "published":
            assert manifest["reason"], name  # a skipped publish says why
            continue
        assert manifest["files"]
        for part in manifest["files"]:
            data = files[str(Path(name).parent / part["file"])]
            assert part["rows"] == len(_csv_rows(data))
            assert part["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["rows"] == sum(part["rows"] for part in manifest["files"])


def test_erased_users_are_in_no_output(first_run, settings):
    """Users whose erasure request is dated on or before D appear in no table or file of D."""
    as_of = first_run["as_of"]
    with connect(settings.warehouse_path, read_only=True) as con:
        erased = {
            row[0]
            for row in con.execute(
                "select user_id from raw.erasure_requests where requested_at < ?::DATE + 1",
                [as_of],
            ).fetchall()
        }
        assert erased, "the sample should carry erasure requests"
        emails = {
            row[0].strip().lower().encode()
            for row in con.execute(
                "select email from raw.users where user_id in (select unnest(?::BIGINT[]))",
                [sorted(erased)],
            ).fetchall()
            if row[0]
        }
        for table in ML_TABLES + MART_TABLES:
            columns = {r[0] for r in con.execute(f"describe {table}").fetchall()}
            if "user_id" not in columns:
                continue
            leaked = con.execute(
                f"select count(*) from {table} where as_of_date = ? "
                "and user_id in (select unnest(?::BIGINT[]))",
                [as_of, sorted(erased)],
            ).fetchone()[0]
            if table == "marts.dim_users":
                leaked = con.execute(
                    "select count(*) from marts.dim_users where is_erased is not true "
                    "and user_id in (select unnest(?::BIGINT[]))",
                    [sorted(erased)],
                ).fetchone()[0]
            assert leaked == 0, f"{table} still holds erased users"
    for name, data in first_run["files"].items():
        lowered = data.lower()
        assert not any(email in lowered for email in emails), f"{name} holds an erased e-mail"


def test_ad_files_hold_only_hashes(first_run):
    # Google Customer Match takes Country (ISO alpha-2) and Zip in plain text; every other
    # value of every ad file (full lists and deltas) is a SHA-256 hex digest or empty.
    plain = {"Country": re.compile(r"^([A-Z]{2})?$"), "Zip": re.compile(r"^[0-9A-Z]*$")}
    checked = 0
    for name, data in first_run["files"].items():
        if name.split("/")[0] in ("google_ads", "meta_ads") and name.endswith(".csv"):
            assert b"@" not in data
            for row in _csv_rows(data):
                checked += 1
                for column, value in row.items():
                    pattern = plain.get(column) if name.startswith("google_ads/") else None
                    if pattern is not None:
                        assert pattern.match(value), (name, column, value)
                    else:
                        assert value == "" or HEX64.match(value), (name, column, value)
    assert checked


def test_email_files_only_consented_unsuppressed(first_run, settings):
    with connect(settings.warehouse_path, read_only=True) as con:
        allowed = {
            row[0]
            for row in con.execute(
                "select lower(trim(email)) from marts.dim_users "
                "where is_email_opt_in and not is_email_suppressed and not is_erased"
            ).fetchall()
        }
        suppressed = {
            row[0]
            for row in con.execute("select lower(trim(email)) from raw.suppressions").fetchall()
        }
    emailed = [
        row["email"]
        for name, data in first_run["files"].items()
        if name.startswith("email/") and name.endswith(".csv")
        for row in _csv_rows(data)
    ]
    assert emailed
    assert set(emailed) <= allowed
    assert not set(emailed) & suppressed


def test_analytics_copy_is_published(first_run, settings):
    with connect(settings.analytics_path, read_only=True) as con:
        segments = con.execute(
            "select count(*) from ml.segments where as_of_date = ?", [first_run["as_of"]]
        ).fetchone()[0]
        columns = {r[0] for r in con.execute("describe marts.dim_users").fetchall()}
    assert segments > 0
    assert "email" not in columns


def test_deliver_posts_every_published_file_with_a_receipt(first_run, settings):
    day = first_run["as_of"].isoformat()
    sent = {
        f"{h['X-Channel']}/{h['X-Audience']}/{h['X-As-Of-Date']}/{h['X-File']}": (h, body)
        for h, body in first_run["deliveries"]
    }
    assert len(sent) == len(first_run["deliveries"])  # each file once
    assert sent.keys() == first_run["files"].keys()
    for name, (_, body) in sent.items():
        assert body == first_run["files"][name], name
    publishes = {name.rsplit("/", 1)[0] for name in sent}
    receipts = sorted((settings.data_dir / "deliveries" / day).glob("*.json"))
    assert len(receipts) == len(publishes) >= 3
    for path in receipts:
        receipt = json.loads(path.read_text())
        assert receipt["files"][-1]["file"] == "manifest.json"
        for entry in receipt["files"]:
            name = f"{receipt['publish_dir'].removeprefix('outbox/')}/{entry['file']}"
            assert sent[name][0]["Idempotency-Key"] == entry["idempotency_key"]
            assert entry["status"] == 200


def test_rerun_same_date_changes_nothing(first_run, settings):
    run_dag(first_run["as_of"])
    again = table_state(settings, first_run["as_of"])
    for table, rows in first_run["tables"].items():
        assert again[table] == rows, f"{table} changed on re-run"
    files = outbox_files(settings, first_run["as_of"])
    assert files.keys() == first_run["files"].keys()
    for name, data in files.items():
        if name.endswith("manifest.json"):
            a, b = json.loads(data), json.loads(first_run["files"][name])
            a.pop("run_id"), b.pop("run_id")
            assert a == b, name
        else:
            assert data == first_run["files"][name], f"{name} changed on re-run"
