"""Deliver a published audience to an HTTP destination (a webhook) with retries.

A publish directory (``outbox/<channel>/<audience>/<date>/``, see ``marketing.publish``) is sent
as one POST per data file, then its manifest last (the receiver's "commit" marker). Every request
carries an ``Idempotency-Key`` derived from what is sent (channel, audience, date, file name and
the file's SHA-256), so a retry, or a re-run of the same date, can be de-duplicated by the
receiver; a changed file gets a new key.

Retries: connection errors, timeouts, HTTP 429 and 5xx are retried up to ``max_attempts`` with
exponential backoff (``backoff_seconds * 2**(attempt - 1)``, capped by ``max_backoff_seconds``;
a ``Retry-After`` in seconds is honoured within the same cap). Other 4xx answers are not
retried: the payload itself is wrong. Backoff has no jitter so runs are reproducible; there is
one sender per destination (the DAG's writer pool), so there is no thundering herd to spread.

Only the standard library is used (``urllib``). Secrets (the URL's token) come from the caller,
never from this module; URLs are not logged beyond scheme and host.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})


class DeliveryError(RuntimeError):
    """A file could not be delivered; the message names the file, attempts and last error."""


@dataclass(frozen=True)
class WebhookDestination:
    """Where and how to POST audience files.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` endpoint.
    max_attempts : int
        Tries per file, first included (>= 1).
    backoff_seconds, max_backoff_seconds : float
        First retry delay and the cap of the exponential backoff.
    timeout_seconds : float
        Socket timeout per request.
    headers : dict
        Extra headers (e.g. an ``Authorization`` read from an Airflow connection).
    """

    url: str
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    timeout_seconds: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"url must be http(s)://..., got scheme {scheme!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if self.backoff_seconds < 0 or self.max_backoff_seconds < 0 or self.timeout_seconds <= 0:
            raise ValueError(
                "backoff_seconds, max_backoff_seconds must be >= 0 and timeout_seconds > 0, got "
                f"{self.backoff_seconds}, {self.max_backoff_seconds}, {self.timeout_seconds}"
            )


@dataclass(frozen=True)
class FileDelivery:
    """One delivered file: its name, idempotency key, HTTP status and attempts used."""

    file: str
    idempotency_key: str
    status: int
    attempts: int


def idempotency_key(manifest: dict, file_name: str, data: bytes) -> str:
    """Hex SHA-256 of ``channel/audience/as_of_date/file/sha256(data)``: same content, same key."""
    content = hashlib.sha256(data).hexdigest()
    basis = "/".join(
        [manifest["channel"], manifest["audience"], manifest["as_of_date"], file_name, content]
    )
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()


def _delay(destination: WebhookDestination, attempt: int, retry_after: str | None) -> float:
    delay = destination.backoff_seconds * 2 ** (attempt - 1)
    if retry_after is not None and retry_after.strip().isdigit():
        delay = max(delay, float(retry_after.strip()))
    return min(delay, destination.max_backoff_seconds)


def _post(
    destination: WebhookDestination,
    data: bytes,
    headers: dict[str, str],
    label: str,
    sleep: Callable[[float], None],
) -> tuple[int, int]:
    """POST with retries; returns (status, attempts) or raises ``DeliveryError``."""
    last_error = "no attempt made"
    for attempt in range(1, destination.max_attempts + 1):
        request = urllib.request.Request(
            destination.url, data=data, headers=headers, method="POST"
        )
        retry_after = None
        try:
            with urllib.request.urlopen(request, timeout=destination.timeout_seconds) as response:
                return response.status, attempt
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            if exc.code not in RETRY_STATUSES:
                raise DeliveryError(
                    f"{label}: rejected with HTTP {exc.code} (not retried, attempt {attempt})"
                ) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < destination.max_attempts:
            delay = _delay(destination, attempt, retry_after)
            logger.warning("%s: attempt %d failed (%s), retrying in %.2fs",
                           label, attempt, last_error, delay)
            sleep(delay)
    raise DeliveryError(
        f"{label}: gave up after {destination.max_attempts} attempts, last error {last_error}"
    )


def deliver_publish(
    publish_dir: Path | str,
    destination: WebhookDestination,
    sleep: Callable[[float], None] = time.sleep,
) -> list[FileDelivery]:
    """POST every data file of one publish, then its manifest, to ``destination``.

    Parameters
    ----------
    publish_dir : Path or str
        ``outbox/<channel>/<audience>/<YYYY-MM-DD>/`` holding ``manifest.json``.
    destination : WebhookDestination
    sleep : callable
        Waits between retries (tests pass a recorder).

    Returns
    -------
    list of FileDelivery
        In sending order. A publish that was not published (``status`` other than
        ``published``) sends only its manifest, so the receiver learns why.

    Raises
    ------
    FileNotFoundError
        If the directory has no manifest.
    DeliveryError
        If a file cannot be delivered; files after it are not sent (the manifest last means
        the receiver never sees a commit for a partial delivery).
    """
    publish_dir = Path(publish_dir)
    manifest_path = publish_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{publish_dir}: no manifest.json, not a publish directory")
    manifest_bytes = manifest_path.read_bytes()
    manifest = json.loads(manifest_bytes)
    data_files = sorted(
        p.name for p in publish_dir.iterdir() if p.is_file() and p.name != "manifest.json"
    )
    host = urllib.parse.urlsplit(destination.url).netloc
    deliveries = []
    for name in [*data_files, "manifest.json"]:
        data = manifest_bytes if name == "manifest.json" else (publish_dir / name).read_bytes()
        key = idempotency_key(manifest, name, data)
        headers = {
            **destination.headers,
            "Content-Type": "application/json" if name.endswith(".json") else "text/csv",
            "Idempotency-Key": key,
            "X-Audience": manifest["audience"],
            "X-Channel": manifest["channel"],
            "X-As-Of-Date": manifest["as_of_date"],
            "X-File": name,
        }
        label = f"{manifest['channel']}/{manifest['audience']}/{manifest['as_of_date']}/{name}"
        status, attempts = _post(destination, data, headers, f"{label} -> {host}", sleep)
        deliveries.append(FileDelivery(name, key, status, attempts))
    logger.info("delivered %d files of %s/%s for %s to %s", len(deliveries),
                manifest["channel"], manifest["audience"], manifest["as_of_date"], host)
    return deliveries
