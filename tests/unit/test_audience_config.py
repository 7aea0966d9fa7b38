"""Audience definitions: the shipped file loads; each kind of mistake names audience and field."""

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from marketing.audience_config import (
    DEFINITION_COLUMNS,
    AudienceConfigError,
    definitions_frame,
    load_audiences,
)
from marketing.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "include" / "audiences.yml"


def _write(tmp_path: Path, audiences: list[dict]) -> Path:
    path = tmp_path / "audiences.yml"
    path.write_text(yaml.safe_dump({"audiences": audiences}, sort_keys=False), encoding="utf-8")
    return path


def _valid(**overrides) -> dict:
    audience = {"name": "winback", "description": "Lapsed buyers.", "channels": ["email"]}
    audience.update(overrides)
    return audience


def test_shipped_file_loads_with_required_kinds_of_audience():
    audiences = load_audiences(SHIPPED)
    assert len(audiences) >= 3
    channel_sets = [set(a.channels) for a in audiences]
    assert {"google_ads"} in channel_sets  # ad-only
    assert {"email"} in channel_sets  # email-only
    assert any(s >= {"meta_ads", "email"} for s in channel_sets)  # both
    assert all(a.description for a in audiences)
    responders = [a for a in audiences if a.include.min_response_probability is not None]
    assert responders and all(a.include.campaign_id is not None for a in responders)


def test_definitions_frame_one_row_per_audience_channel_segment(tmp_path):
    path = _write(
        tmp_path,
        [
            _valid(
                name="b_segmented",
                channels=["meta_ads", "email"],
                include={"segments": ["zeta", "alpha"], "min_recency_days": 45},
            ),
            _valid(
                name="a_plain",
                channels=["google_ads"],
                include={"campaign_id": 1, "min_response_probability": 0.25},
            ),
        ],
    )
    frame = definitions_frame(load_audiences(path), "2024-03-01")
    assert list(frame.columns) == list(DEFINITION_COLUMNS)
    assert "min_recency_days" in frame.columns
    keys = [
        (r.audience_name, r.channel, None if pd.isna(r.segment_name) else r.segment_name)
        for r in frame.itertuples()
    ]
    assert keys == [
        ("a_plain", "google_ads", None),
        ("b_segmented", "email", "alpha"),
        ("b_segmented", "email", "zeta"),
        ("b_segmented", "meta_ads", "alpha"),
        ("b_segmented", "meta_ads", "zeta"),
    ]
    plain = frame.iloc[0]
    assert plain["campaign_id"] == 1 and plain["min_response_probability"] == 0.25
    assert frame["min_recency_days"].isna().tolist() == [True, False, False, False, False]
    assert set(frame["as_of_date"]) == {date(2024, 3, 1)}
    assert str(frame["campaign_id"].dtype) == "Int64"


def test_definitions_frame_is_deterministic():
    audiences = load_audiences(SHIPPED)
    first = definitions_frame(audiences, date(2024, 3, 1))
    second = definitions_frame(list(reversed(audiences)), date(2024, 3, 1))
    assert first.equals(second)


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        (
            _valid(channels=["meta_ads", "tiktok"]),
            "audience 'winback' field 'channels': unknown channel 'tiktok' "
            "(allowed: email, google_ads, meta_ads)",
        ),
        (_valid(channels=[]), "audience 'winback' field 'channels': must list at least one"),
        (
            _valid(channels=["email", "email"]),
            "audience 'winback' field 'channels': channel listed twice",
        ),
        (_valid(name="Win-Back"), "audience 'Win-Back' field 'name': must be a slug"),
        (_valid(description=""), "audience 'winback' field 'description'"),
        (_valid(colour="red"), "audience 'winback' field 'colour': unknown field"),
        (
            _valid(include={"segmnts": ["a"]}),
            "audience 'winback' field 'include.segmnts': unknown field",
        ),
        (_valid(include={"segments": []}), "audience 'winback' field 'include.segments'"),
        (_valid(include={"campaign_id": "one"}), "audience 'winback' field 'include.campaign_id'"),
        (
            _valid(include={"campaign_id": 1, "min_response_probability": 1.5}),
            "audience 'winback' field 'include.min_response_probability'",
        ),
        (
            _valid(include={"min_response_probability": 0.5}),
            "audience 'winback' field 'include.min_response_probability': requires campaign_id",
        ),
        (
            _valid(include={"min_orders_lifetime": -1}),
            "audience 'winback' field 'include.min_orders_lifetime'",
        ),
        (
            _valid(include={"max_recency_days": 10, "min_recency_days": 30}),
            "audience 'winback' field 'include.min_recency_days': must be <= max_recency_days",
        ),
        ({"description": "x", "channels": ["email"]}, "audience #0 field 'name': is required"),
    ],
)
def test_mistakes_name_file_audience_and_field(tmp_path, audience, expected):
    path = _write(tmp_path, [audience])
    with pytest.raises(AudienceConfigError) as excinfo:
        load_audiences(path)
    message = str(excinfo.value)
    assert message.startswith(str(path) + ": ")
    assert expected in message


def test_duplicate_names_are_rejected(tmp_path):
    path = _write(tmp_path, [_valid(), _valid(channels=["google_ads"])])
    with pytest.raises(AudienceConfigError, match="audience 'winback' field 'name': duplicate"):
        load_audiences(path)


def test_every_error_is_reported_with_its_audience(tmp_path):
    path = _write(
        tmp_path, [_valid(name="first", channels=["fax"]), _valid(name="second", extra=1)]
    )
    with pytest.raises(AudienceConfigError) as excinfo:
        load_audiences(path)
    lines = str(excinfo.value).splitlines()
    assert len(lines) == 2
    assert "audience 'first' field 'channels'" in lines[0]
    assert "audience 'second' field 'extra'" in lines[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("audiences: [", "not valid YAML"),
        ("- just a list", "expected a mapping"),
        ("audiences: []", "field 'audiences'"),
        ("audience: []", "field 'audience': unknown field"),
    ],
)
def test_file_level_mistakes_name_the_file(tmp_path, text, expected):
    path = tmp_path / "audiences.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AudienceConfigError) as excinfo:
        load_audiences(path)
    assert str(excinfo.value).startswith(str(path))
    assert expected in str(excinfo.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudienceConfigError, match="cannot read"):
        load_audiences(tmp_path / "nope.yml")
