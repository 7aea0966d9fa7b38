"""Airflow glue: the audience webhook connection as a ``marketing.delivery.WebhookDestination``.

Connection ``marketing_audience_webhook`` (any of Airflow's ways to define one, e.g.
``AIRFLOW_CONN_MARKETING_AUDIENCE_WEBHOOK``):

* URI form ``https://hooks.example.com:8443/audiences`` (scheme, host, port, path), or JSON
  ``{"conn_type": "http", "host": "https://hooks.example.com/audiences"}`` with the full URL
  in ``host``;
* ``password``, when set, is sent as ``Authorization: Bearer <password>``;
* ``extra`` may set ``max_attempts``, ``backoff_seconds``, ``max_backoff_seconds``,
  ``timeout_seconds`` and ``headers``.

No connection: :meth:`AudienceWebhookHook.get_destination` returns None and the deliver step
leaves the files in the outbox.
"""

from __future__ import annotations

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

DESTINATION_OPTIONS = ("max_attempts", "backoff_seconds", "max_backoff_seconds",
                       "timeout_seconds", "headers")


class AudienceWebhookHook(BaseHook):
    """Reads the webhook connection; builds the destination the deliver step posts to."""

    conn_name_attr = "audience_webhook_conn_id"
    default_conn_name = "marketing_audience_webhook"
    conn_type = "http"
    hook_name = "Marketing audience webhook"

    def __init__(self, audience_webhook_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.audience_webhook_conn_id = audience_webhook_conn_id

    def get_destination(self):
        """The ``WebhookDestination`` of the connection, or None when it is not defined."""
        from marketing.delivery import WebhookDestination

        try:
            conn = self.get_connection(self.audience_webhook_conn_id)
        except AirflowNotFoundException:
            return None
        host = conn.host or ""
        if "://" in host:
            url = host
        else:
            scheme = "https" if conn.conn_type == "https" else "http"
            port = f":{conn.port}" if conn.port else ""
            url = f"{scheme}://{host}{port}/{conn.schema or ''}"
        extra = conn.extra_dejson
        unknown = sorted(set(extra) - set(DESTINATION_OPTIONS))
        if unknown:
            raise ValueError(
                f"connection {self.audience_webhook_conn_id}: unknown extra {unknown}, "
                f"expected some of {list(DESTINATION_OPTIONS)}"
            )
        options = dict(extra)
        headers = dict(options.pop("headers", {}) or {})
        if conn.password:
            headers["Authorization"] = f"Bearer {conn.password}"
        return WebhookDestination(url, headers=headers, **options)
