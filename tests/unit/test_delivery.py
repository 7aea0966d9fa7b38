"""Webhook delivery against a real HTTP server on 127.0.0.1 (a thread), with scripted failures."""

import hashlib
import http.server
import json
import shutil
import socket
import threading

import pandas as pd
import pytest

from marketing.delivery import (
    DeliveryError,
    WebhookDestination,
    deliver_publish,
    idempotency_key,
)
from marketing.publish import publish_audience

DAY = "2024-03-01"


class _Server:
    """Answers each POST with the next scripted status (200 once the script runs out)."""

    def __init__(self, script=()):
        self.script = list(script)
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append((dict(self.headers), body))
                status, extra = server.script.pop(0) if server.script else (200, {})
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook?token=t"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def publish_dir(tmp_path):
    members = pd.DataFrame(
        [
            {
                "user_id": i, "email": f"u{i}@example.com", "phone": None, "first_name": "A",
                "last_name": "B", "country": "US", "city": "Austin", "postal_code": "73301",
                "is_email_opt_in": True, "is_ads_opt_in": True, "is_email_suppressed": False,
                "is_erased": False, "segment_name": "s", "recommended_item_1": None,
                "recommended_item_2": None, "recommended_item_3": None,
                "response_probability": 0.5,
            }
            for i in range(3)
        ]
    )
    result = publish_audience("a", "google_ads", members, DAY, "r", tmp_path / "out", min_size=0)
    return result.path.parent


def _destination(url, **kw):
    return WebhookDestination(url, backoff_seconds=0.01, max_backoff_seconds=5.0,
                              timeout_seconds=5.0, **kw)


def test_delivers_every_file_then_the_manifest(publish_dir):
    with _Server() as server:
        sent = deliver_publish(publish_dir, _destination(server.url, headers={"X-Token": "k"}))
    names = [d.file for d in sent]
    assert names == ["adds.csv", "customer_match.csv", "removes.csv", "manifest.json"]
    assert [d.status for d in sent] == [200] * 4 and [d.attempts for d in sent] == [1] * 4
    manifest = json.loads((publish_dir / "manifest.json").read_text())
    for delivery, (headers, body) in zip(sent, server.requests, strict=True):
        assert body == (publish_dir / delivery.file).read_bytes()
        assert headers["Idempotency-Key"] == delivery.idempotency_key
        assert headers["Idempotency-Key"] == idempotency_key(manifest, delivery.file, body)
        assert (headers["X-Channel"], headers["X-Audience"], headers["X-As-Of-Date"]) == (
            "google_ads", "a", DAY)
        assert headers["X-File"] == delivery.file and headers["X-Token"] == "k"
    assert len({d.idempotency_key for d in sent}) == 4


def test_idempotency_key_is_stable_and_content_bound(publish_dir):
    with _Server() as server:
        first = deliver_publish(publish_dir, _destination(server.url))
        again = deliver_publish(publish_dir, _destination(server.url))
    assert [d.idempotency_key for d in first] == [d.idempotency_key for d in again]
    manifest = {"channel": "c", "audience": "a", "as_of_date": DAY}
    basis = f"c/a/{DAY}/f.csv/{hashlib.sha256(b'x').hexdigest()}".encode()
    assert idempotency_key(manifest, "f.csv", b"x") == hashlib.sha256(basis).hexdigest()
    assert idempotency_key(manifest, "f.csv", b"y") != idempotency_key(manifest, "f.csv", b"x")


def test_retries_5xx_and_429_with_exponential_backoff_and_retry_after(publish_dir):
    waits = []
    script = [(503, {}), (502, {}), (429, {"Retry-After": "2"})]
    with _Server(script) as server:
        sent = deliver_publish(publish_dir, _destination(server.url), sleep=waits.append)
    assert sent[0].attempts == 4 and sent[0].status == 200
    assert waits == [0.01, 0.02, 2.0]  # 0.01 * 2**0, 0.01 * 2**1, then Retry-After wins
    first_file = [h["Idempotency-Key"] for h, _ in server.requests[:4]]
    assert len(set(first_file)) == 1  # every retry carries the same key
    assert len(server.requests) == 4 + 3


def test_retry_after_is_capped(publish_dir):
    waits = []
    with _Server([(429, {"Retry-After": "3600"})]) as server:
        deliver_publish(publish_dir, _destination(server.url), sleep=waits.append)
    assert waits == [5.0]


def test_client_errors_are_not_retried_and_stop_before_the_manifest(publish_dir):
    waits = []
    with _Server([(200, {}), (400, {})]) as server:
        with pytest.raises(DeliveryError, match=r"customer_match\.csv .*HTTP 400 \(not retried"):
            deliver_publish(publish_dir, _destination(server.url), sleep=waits.append)
    assert waits == [] and len(server.requests) == 2
    assert all(h["X-File"] != "manifest.json" for h, _ in server.requests)


def test_gives_up_after_max_attempts(publish_dir):
    waits = []
    with _Server([(500, {})] * 10) as server:
        with pytest.raises(DeliveryError, match="gave up after 3 attempts, last error HTTP 500"):
            deliver_publish(publish_dir, _destination(server.url, max_attempts=3),
                            sleep=waits.append)
    assert len(server.requests) == 3 and waits == [0.01, 0.02]


def test_connection_refused_is_retried_then_reported(publish_dir):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits = []
    with pytest.raises(DeliveryError, match="gave up after 2 attempts, last error URLError"):
        deliver_publish(publish_dir, _destination(f"http://127.0.0.1:{port}/", max_attempts=2),
                        sleep=waits.append)
    assert waits == [0.01]


def test_rejects_bad_destinations(tmp_path):
    with pytest.raises(ValueError, match="got scheme 'ftp'"):
        WebhookDestination("ftp://example.com/")
    with pytest.raises(ValueError, match="max_attempts must be an int >= 1, got 0"):
        WebhookDestination("http://127.0.0.1/", max_attempts=0)
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        deliver_publish(tmp_path, WebhookDestination("http://127.0.0.1/"))


def test_deliver_step_sends_every_publish_of_the_day_and_writes_receipts(tmp_path, publish_dir):
    from marketing.settings import Settings
    from marketing.steps.delivering import deliver_audiences

    data = publish_dir.parents[3]  # out/<channel>/<audience>/<day> -> the data dir stands in
    settings = Settings(data_dir=data, warehouse_path=data / "w.duckdb",
                        analytics_path=data / "a.duckdb")
    outbox = settings.outbox_dir
    shutil.copytree(publish_dir, outbox / "google_ads" / "a" / DAY)
    shutil.copytree(publish_dir, outbox / "google_ads" / "a" / "2024-02-29")  # another day
    assert deliver_audiences(DAY, None, settings) == {"publishes": 1, "delivered": 0, "files": 0}
    with _Server() as server:
        result = deliver_audiences(DAY, _destination(server.url), settings)
    assert result == {"publishes": 1, "delivered": 1, "files": 4}
    assert [h["X-As-Of-Date"] for h, _ in server.requests] == [DAY] * 4
    receipt = json.loads((data / "deliveries" / DAY / "google_ads__a.json").read_text())
    assert receipt["publish_dir"] == f"outbox/google_ads/a/{DAY}"
    assert [f["file"] for f in receipt["files"]][-1] == "manifest.json"
    assert [f["idempotency_key"] for f in receipt["files"]] == [
        h["Idempotency-Key"] for h, _ in server.requests]
    assert receipt["host"] == server.url.split("/")[2]
