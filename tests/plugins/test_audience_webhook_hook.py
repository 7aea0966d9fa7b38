"""The audience webhook connection -> WebhookDestination (URI and JSON forms, no connection)."""

import json

import pytest
from airflow.sdk import BaseHook  # noqa: F401  (puts plugins/ on sys.path, as in Airflow)
from audience_webhook_hook import AudienceWebhookHook

VAR = "AIRFLOW_CONN_MARKETING_AUDIENCE_WEBHOOK"


def test_no_connection_means_no_destination(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    assert AudienceWebhookHook().get_destination() is None


def test_uri_form_gives_url_and_bearer_token(monkeypatch):
    monkeypatch.setenv(VAR, "https://bot:s3cret@hooks.example.com:8443/audiences/in")
    destination = AudienceWebhookHook().get_destination()
    assert destination.url == "https://hooks.example.com:8443/audiences/in"
    assert destination.headers == {"Authorization": "Bearer s3cret"}


def test_json_form_with_full_url_and_options(monkeypatch):
    monkeypatch.setenv(VAR, json.dumps({
        "conn_type": "http", "host": "http://127.0.0.1:9000/hook",
        "extra": {"max_attempts": 2, "timeout_seconds": 3, "headers": {"X-Shop": "s1"}},
    }))
    destination = AudienceWebhookHook().get_destination()
    assert destination.url == "http://127.0.0.1:9000/hook"
    assert destination.max_attempts == 2 and destination.timeout_seconds == 3
    assert destination.headers == {"X-Shop": "s1"}


def test_unknown_options_are_refused_by_name(monkeypatch):
    monkeypatch.setenv(VAR, json.dumps({"conn_type": "http", "host": "http://h/x",
                                        "extra": {"retries": 3}}))
    with pytest.raises(ValueError, match=r"unknown extra \['retries'\]"):
        AudienceWebhookHook().get_destination()
