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


# --- issue 6: exclusions, priority, holdout, sizes, caps, score / RFM / recommendation rules ---


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        (_valid(holdout_pct=60), "audience 'winback' field 'holdout_pct'"),
        (_valid(holdout_pct=-1), "audience 'winback' field 'holdout_pct'"),
        (_valid(min_size=-5), "audience 'winback' field 'min_size'"),
        (_valid(min_size=100, max_size=50),
         "audience 'winback' field 'max_size': must be >= min_size (100), got 50"),
        (_valid(channels=["google_ads"], frequency_cap_days=7),
         "audience 'winback' field 'frequency_cap_days': applies to the email channel only"),
        (_valid(frequency_cap_days=0), "audience 'winback' field 'frequency_cap_days'"),
        (_valid(priority=1), "audience 'winback' field 'priority': requires exclusive_group"),
        (_valid(exclusive_group="Bad Group", priority=1),
         "audience 'winback' field 'exclusive_group': must be a slug"),
        (_valid(exclude={"audiences": ["x"], "suppresed": True}),
         "audience 'winback' field 'exclude.suppresed': unknown field"),
        (_valid(include={"min_uplift": 0.1}),
         "audience 'winback' field 'include.min_uplift': requires campaign_id"),
        (_valid(include={"campaign_id": 1, "max_decile": 11}),
         "audience 'winback' field 'include.max_decile'"),
        (_valid(include={"min_churn_probability": 2}),
         "audience 'winback' field 'include.min_churn_probability'"),
        (_valid(include={"rfm_labels": ["Champions, Loyal"]}),
         "audience 'winback' field 'include.rfm_labels': names must be non-empty and contain "
         "no comma"),
        (_valid(include={"recommended_item_ids": ["a"]}),
         "audience 'winback' field 'include.recommended_item_ids'"),
        (_valid(include={"min_orders_lifetime": 3, "max_orders_lifetime": 1}),
         "audience 'winback' field 'include.max_orders_lifetime': must be >= "
         "min_orders_lifetime (3), got 1"),
    ],
)
def test_issue6_mistakes_name_audience_and_field(tmp_path, audience, expected):
    path = _write(tmp_path, [audience])
    with pytest.raises(AudienceConfigError) as excinfo:
        load_audiences(path)
    assert expected in str(excinfo.value)


@pytest.mark.parametrize(
    ("audiences", "expected"),
    [
        ([_valid(exclude={"audiences": ["winback"]})],
         "audience 'winback' field 'exclude.audiences': excludes itself"),
        ([_valid(exclude={"audiences": ["ghost"]})],
         "audience 'winback' field 'exclude.audiences': unknown audience 'ghost'"),
        ([_valid(exclusive_group="g")],
         "audience 'winback' field 'priority': is required with exclusive_group"),
        ([_valid(exclusive_group="g", priority=1),
          _valid(name="other", exclusive_group="g", priority=1)],
         "audience 'other' field 'priority': 1 already used by audience 'winback' in "
         "exclusive_group 'g'"),
    ],
)
def test_cross_audience_mistakes(tmp_path, audiences, expected):
    path = _write(tmp_path, audiences)
    with pytest.raises(AudienceConfigError) as excinfo:
        load_audiences(path)
    assert str(excinfo.value) == f"{path}: {expected}"


def test_definitions_frame_carries_issue6_rules(tmp_path):
    path = _write(
        tmp_path,
        [
            _valid(name="base", channels=["google_ads"]),
            _valid(
                include={"segments": ["A"], "segment_ids": [4], "campaign_id": 2,
                         "min_uplift": 0, "max_decile": 3, "rfm_labels": ["Champions",
                                                                        "Can't Lose Them"],
                         "membership_tiers": ["Gold"], "min_churn_probability": 0.4,
                         "recommended_categories": ["toys"], "recommended_item_ids": [7, 9],
                         "max_orders_lifetime": 9},
                exclude={"audiences": ["base"], "suppressed": True},
                exclusive_group="g", priority=2, holdout_pct=12.5, min_size=0, max_size=10,
                frequency_cap_days=3,
            ),
        ],
    )
    frame = definitions_frame(load_audiences(path), "2024-03-01")
    assert list(frame.columns) == list(DEFINITION_COLUMNS)
    base = frame.iloc[0].to_dict()
    assert (base["min_size"], base["holdout_pct"], base["exclude_suppressed"]) == (100, 0.0, False)
    assert pd.isna(base["exclude_audiences"]) and pd.isna(base["priority"])
    rows = frame[frame["audience_name"] == "winback"]
    # one row per segment rule: the name "A" and the id 4
    assert [(None if pd.isna(n) else n, None if pd.isna(i) else int(i))
            for n, i in zip(rows["segment_name"], rows["segment_id"], strict=True)] == [
        (None, 4), ("A", None)]
    row = rows.iloc[0].to_dict()
    assert row["rfm_labels"] == "Champions,Can't Lose Them"
    assert row["recommended_item_ids"] == "7,9" and row["recommended_categories"] == "toys"
    assert (row["min_uplift"], row["max_decile"], row["min_churn_probability"]) == (0.0, 3, 0.4)
    assert (row["exclude_audiences"], row["exclude_suppressed"]) == ("base", True)
    assert (row["exclusive_group"], row["priority"], row["holdout_pct"]) == ("g", 2, 12.5)
    assert (row["min_size"], row["max_size"], row["frequency_cap_days"]) == (0, 10, 3)
    assert row["holdout_salt"] == "holdout-v1"


def test_holdout_bucket_matches_md5_and_splits_evenly():
    import hashlib

    from marketing.audience_config import holdout_bucket

    # the buckets the dbt unit test audience_members_exclusions_priority_and_holdout relies on
    assert (holdout_bucket(1, "vip", "s"), holdout_bucket(2, "vip", "s")) == (5295, 2384)
    digest = hashlib.md5(b"salt:aud:42").hexdigest()
    assert holdout_bucket(42, "aud", "salt") == int(digest[:8], 16) % 10000
    share = sum(holdout_bucket(u, "aud", "salt") < 1000 for u in range(20_000)) / 20_000
    assert abs(share - 0.10) < 0.01  # 10% holdout is 10% of users
    assert holdout_bucket(1, "aud", "salt") != holdout_bucket(1, "aud", "salt2") or \
        holdout_bucket(2, "aud", "salt") != holdout_bucket(2, "aud", "salt2")


def test_shipped_file_uses_holdouts_groups_and_caps():
    audiences = {a.name: a for a in load_audiences(SHIPPED)}
    assert all(a.holdout_pct > 0 for a in audiences.values())
    groups = [a for a in audiences.values() if a.exclusive_group]
    assert len(groups) >= 2 and len({a.priority for a in groups}) == len(groups)
    assert any(a.exclude.audiences for a in audiences.values())
    assert all(a.frequency_cap_days for a in audiences.values() if "email" in a.channels)
