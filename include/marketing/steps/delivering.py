"""Step ``deliver``: POST D's published audiences to a webhook, with a receipt per publish.

Every publish directory of D under ``outbox/<channel>/<audience>/<D>/`` is sent with
:func:`marketing.delivery.deliver_publish` (data files, then the manifest; idempotency keys;
retries with backoff). Each delivered publish gets a receipt,
``deliveries/<D>/<channel>__<audience>.json`` (host, and per file its idempotency key, HTTP
status and attempts), so "what was sent where" is answerable without the receiver. Without a
destination nothing is sent and the step says so: the files stay ready for a manual upload.
Re-running D re-sends the same files under the same keys, which the receiver de-duplicates.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
from dataclasses import asdict
from datetime import date
from pathlib import Path

from marketing.delivery import FileDelivery, WebhookDestination, deliver_publish
from marketing.settings import Settings
from marketing.steps.common import as_date

logger = logging.getLogger(__name__)


def deliver_audiences(
    as_of_date: date | str,
    destination: WebhookDestination | None,
    settings: Settings | None = None,
) -> dict:
    """Send every publish of D to ``destination`` (None: send nothing, say so).

    Returns
    -------
    dict
        ``publishes`` (directories of D), ``delivered`` (publishes sent) and ``files``.

    Raises
    ------
    marketing.delivery.DeliveryError
        When a file cannot be delivered after its retries (publishes before it keep their
        receipts; the task's retry re-sends under the same idempotency keys).
    """
    settings = settings or Settings.from_env()
    day = as_date(as_of_date).isoformat()
    publishes = sorted(path.parent for path in settings.outbox_dir.glob(f"*/*/{day}/manifest.json"))
    if destination is None:
        logger.warning(
            "no audience webhook configured: %d publishes of %s stay in %s for upload",
            len(publishes), day, settings.outbox_dir,
        )
        return {"publishes": len(publishes), "delivered": 0, "files": 0}
    host = urllib.parse.urlsplit(destination.url).netloc
    files = 0
    for folder in publishes:
        sent = deliver_publish(folder, destination)
        files += len(sent)
        channel, audience = folder.parent.parent.name, folder.parent.name
        _write_receipt(
            settings.data_dir / "deliveries" / day / f"{channel}__{audience}.json",
            folder.relative_to(settings.data_dir), host, sent,
        )
    return {"publishes": len(publishes), "delivered": len(publishes), "files": files}


def _write_receipt(path: Path, publish_dir: Path, host: str, sent: list[FileDelivery]) -> None:
    """Write the receipt atomically (a crash never leaves half a receipt)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    receipt = {"publish_dir": str(publish_dir), "host": host,
               "files": [asdict(delivery) for delivery in sent]}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(receipt, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
