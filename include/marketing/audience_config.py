"""Declarative audience definitions: load and validate ``include/audiences.yml``.

An audience says *who* (segments, response probability to a campaign, recency, order count)
and *where* (channels). Consent is not configurable: each channel's consent rule is applied by
the audience marts and again by the publisher.

The file is validated with pydantic (unknown fields are errors, so a typo never silently widens
an audience) and every problem is re-raised as :class:`AudienceConfigError` naming the file, the
audience and the field.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

logger = logging.getLogger(__name__)

CHANNELS: tuple[str, ...] = ("email", "google_ads", "meta_ads")
AD_CHANNELS: tuple[str, ...] = ("google_ads", "meta_ads")
NAME_PATTERN = r"^[a-z0-9_]+$"

DEFINITION_COLUMNS: tuple[str, ...] = (
    "audience_name",
    "description",
    "channel",
    "segment_name",
    "campaign_id",
    "min_response_probability",
    "max_recency_days",
    "min_recency_days",
    "min_orders_lifetime",
    "max_orders_lifetime",
    "rfm_labels",
    "membership_tiers",
    "min_uplift",
    "max_decile",
    "min_churn_probability",
    "recommended_categories",
    "recommended_item_ids",
    "segment_id",
    "exclude_audiences",
    "exclude_suppressed",
    "exclusive_group",
    "priority",
    "holdout_pct",
    "holdout_salt",
    "min_size",
    "max_size",
    "frequency_cap_days",
    "as_of_date",
)
DEFAULT_MIN_SIZE = 100


class AudienceConfigError(ValueError):
    """The audiences file is missing, unreadable or breaks a rule; the message says where."""


class AudienceInclude(BaseModel):
    """Membership rules; every rule given must hold (AND). Omitted rules do not filter."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    segments: tuple[str, ...] | None = Field(default=None, min_length=1)
    segment_ids: tuple[int, ...] | None = Field(default=None, min_length=1)
    campaign_id: int | None = None
    min_response_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    max_recency_days: int | None = Field(default=None, ge=0)
    min_recency_days: int | None = Field(default=None, ge=0)
    min_orders_lifetime: int | None = Field(default=None, ge=0)
    max_orders_lifetime: int | None = Field(default=None, ge=0)
    rfm_labels: tuple[str, ...] | None = Field(default=None, min_length=1)
    membership_tiers: tuple[str, ...] | None = Field(default=None, min_length=1)
    min_uplift: float | None = Field(default=None, ge=-1.0, le=1.0)
    max_decile: int | None = Field(default=None, ge=1, le=10)
    min_churn_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    recommended_categories: tuple[str, ...] | None = Field(default=None, min_length=1)
    recommended_item_ids: tuple[int, ...] | None = Field(default=None, min_length=1)

    @field_validator(
        "rfm_labels", "membership_tiers", "recommended_categories", "recommended_item_ids",
        mode="before",
    )
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("rfm_labels", "membership_tiers", "recommended_categories")
    @classmethod
    def _listable_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        # stored comma-joined in ml.audience_definitions: a comma would split a name
        for name in value or ():
            if not name.strip() or "," in name:
                raise ValueError(f"names must be non-empty and contain no comma, got {name!r}")
        return value

    @field_validator("min_uplift", "min_churn_probability", mode="before")
    @classmethod
    def _int_float(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("min_uplift", "max_decile")
    @classmethod
    def _score_needs_campaign(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("campaign_id") is None:
            raise ValueError("requires campaign_id (scores are per campaign)")
        return value

    @field_validator("max_orders_lifetime")
    @classmethod
    def _orders_window(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_orders_lifetime")
        if value is not None and low is not None and value < low:
            raise ValueError(f"must be >= min_orders_lifetime ({low}), got {value}")
        return value

    @field_validator("segments", "segment_ids", mode="before")
    @classmethod
    def _segments_list(cls, value: Any) -> Any:
        # YAML gives lists; strict mode would reject a list for a tuple field.
        return tuple(value) if isinstance(value, list) else value

    @field_validator("segments")
    @classmethod
    def _segments_distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        for name in value:
            if not name.strip():
                raise ValueError("segment names must not be empty")
        duplicates = sorted({name for name in value if value.count(name) > 1})
        if duplicates:
            raise ValueError(f"segment listed twice: {', '.join(map(repr, duplicates))}")
        return value

    @field_validator("min_response_probability", mode="before")
    @classmethod
    def _int_probability(cls, value: Any) -> Any:
        # ``0`` and ``1`` are valid probabilities even though YAML reads them as ints.
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("min_response_probability")
    @classmethod
    def _probability_needs_campaign(cls, value: float | None, info: ValidationInfo) -> float | None:
        if (
            value is not None
            and info.data.get("campaign_id") is None
            and "campaign_id" in info.data
        ):
            raise ValueError("requires campaign_id (a probability is always for one campaign)")
        return value

    @field_validator("min_recency_days")
    @classmethod
    def _recency_window(cls, value: int | None, info: ValidationInfo) -> int | None:
        upper = info.data.get("max_recency_days")
        if value is not None and upper is not None and value > upper:
            raise ValueError(f"must be <= max_recency_days ({upper}), got {value}")
        return value


class AudienceExclude(BaseModel):
    """Who is left out even when the include rules hold."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    audiences: tuple[str, ...] = ()
    suppressed: bool = False

    @field_validator("audiences", mode="before")
    @classmethod
    def _audiences_list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class AudienceDefinition(BaseModel):
    """One audience: a named rule set published to one or more channels.

    ``exclude.audiences`` removes users who meet another audience's include rules;
    ``exclude.suppressed`` also drops users with a suppressed e-mail address from the ad
    channels (the e-mail channel always drops them). Of the audiences sharing an
    ``exclusive_group`` a user lands only in the one with the lowest ``priority`` number.
    ``holdout_pct`` percent of members (hash of user, audience and ``holdout_salt``) form a
    control group that is recorded, never exported. Ad audiences with fewer than ``min_size``
    rows are not published; ``max_size`` keeps the best-scored rows; ``frequency_cap_days``
    (e-mail only) skips users e-mailed by any audience in the last N days.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1)
    channels: tuple[str, ...]
    include: AudienceInclude = AudienceInclude()
    exclude: AudienceExclude = AudienceExclude()
    exclusive_group: str | None = Field(default=None, pattern=NAME_PATTERN)
    priority: int | None = Field(default=None, ge=1)
    holdout_pct: float = Field(default=0.0, ge=0.0, le=50.0)
    holdout_salt: str = Field(default="holdout-v1", min_length=1)
    min_size: int = Field(default=DEFAULT_MIN_SIZE, ge=0)
    max_size: int | None = Field(default=None, ge=1)
    frequency_cap_days: int | None = Field(default=None, ge=1)

    @field_validator("holdout_pct", mode="before")
    @classmethod
    def _int_pct(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("priority")
    @classmethod
    def _priority_needs_group(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("exclusive_group") is None:
            raise ValueError("requires exclusive_group (priority ranks audiences of one group)")
        return value

    @field_validator("max_size")
    @classmethod
    def _max_not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_size")
        if value is not None and low is not None and value < low:
            raise ValueError(f"must be >= min_size ({low}), got {value}")
        return value

    @field_validator("frequency_cap_days")
    @classmethod
    def _cap_needs_email(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and "email" not in (info.data.get("channels") or ()):
            raise ValueError("applies to the email channel only, and channels has no email")
        return value

    @field_validator("channels", mode="before")
    @classmethod
    def _channels_list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"must list at least one channel (allowed: {', '.join(CHANNELS)})")
        for channel in value:
            if channel not in CHANNELS:
                raise ValueError(f"unknown channel {channel!r} (allowed: {', '.join(CHANNELS)})")
        duplicates = sorted({c for c in value if value.count(c) > 1})
        if duplicates:
            raise ValueError(f"channel listed twice: {', '.join(map(repr, duplicates))}")
        return value

    @field_validator("description")
    @classmethod
    def _description_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class _AudiencesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    audiences: list[AudienceDefinition] = Field(min_length=1)


def _describe_error(path: Path, raw: Any, error: dict[str, Any]) -> str:
    """Turn one pydantic error into "file: audience 'x' field 'a.b': message"."""
    loc = list(error["loc"])
    where = f"{path}"
    if loc and loc[0] == "audiences" and len(loc) >= 2 and isinstance(loc[1], int):
        index = loc[1]
        entry = raw.get("audiences", [])[index] if isinstance(raw, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        where += (
            f": audience {name!r}" if isinstance(name, str) and name else f": audience #{index}"
        )
        loc = loc[2:]
    field = ".".join(str(part) for part in loc if not isinstance(part, int))
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "is required"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind == "string_pattern_mismatch":
        message = f"must be a slug of [a-z0-9_]+, got {error['input']!r}"
    else:
        # pydantic's own wording; YAML users write lists, not tuples.
        message = error["msg"].replace("tuple", "list").replace("Tuple", "List")
        message = f"{message}, got {error['input']!r}"
    if field:
        where += f" field {field!r}"
    return f"{where}: {message}"


def load_audiences(path: Path | str) -> list[AudienceDefinition]:
    """Read and validate an audiences YAML file.

    Parameters
    ----------
    path : Path or str
        The YAML file: a mapping with one key, ``audiences``, holding a list of audiences.

    Returns
    -------
    list of AudienceDefinition
        In file order.

    Raises
    ------
    AudienceConfigError
        If the file is missing or not YAML, or any audience breaks a rule. The message names
        the file, the audience (by name, or ``#index`` when it has no usable name) and the field;
        all problems are listed, one per line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AudienceConfigError(f"{path}: cannot read audiences file ({exc.strerror})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AudienceConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise AudienceConfigError(
            f"{path}: expected a mapping with key 'audiences', got {type(raw).__name__}"
        )
    try:
        parsed = _AudiencesFile.model_validate(raw)
    except ValidationError as exc:
        messages = [_describe_error(path, raw, error) for error in exc.errors()]
        raise AudienceConfigError("\n".join(messages)) from None

    seen: dict[str, int] = {}
    for index, audience in enumerate(parsed.audiences):
        if audience.name in seen:
            raise AudienceConfigError(
                f"{path}: audience {audience.name!r} field 'name': duplicate name "
                f"(audiences #{seen[audience.name]} and #{index})"
            )
        seen[audience.name] = index
    groups: dict[tuple[str, int], str] = {}
    for audience in parsed.audiences:
        where = f"{path}: audience {audience.name!r}"
        for other in audience.exclude.audiences:
            if other == audience.name:
                raise AudienceConfigError(f"{where} field 'exclude.audiences': excludes itself")
            if other not in seen:
                raise AudienceConfigError(
                    f"{where} field 'exclude.audiences': unknown audience {other!r}"
                )
        if audience.exclusive_group is not None:
            if audience.priority is None:
                raise AudienceConfigError(
                    f"{where} field 'priority': is required with exclusive_group"
                )
            key = (audience.exclusive_group, audience.priority)
            if key in groups:
                raise AudienceConfigError(
                    f"{where} field 'priority': {audience.priority} already used by audience "
                    f"{groups[key]!r} in exclusive_group {audience.exclusive_group!r}"
                )
            groups[key] = audience.name
    logger.info("loaded %d audiences from %s", len(parsed.audiences), path)
    return list(parsed.audiences)


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"as_of_date must be a date or 'YYYY-MM-DD', got {value!r}") from exc


def _joined(values: Sequence[object] | None) -> str | None:
    """List rules travel to SQL comma-joined (names are checked to hold no comma)."""
    return ",".join(str(v) for v in values) if values else None


def holdout_bucket(user_id: int, audience_name: str, salt: str) -> int:
    """The holdout bucket 0..9999 of a member: the Python twin of audience_members' SQL.

    ``int(md5("<salt>:<audience>:<user_id>")[:8], 16) % 10000``; a member is held out when the
    bucket is below ``holdout_pct * 100``. md5 is used for its portability across SQL engines,
    not for secrecy.
    """
    digest = hashlib.md5(f"{salt}:{audience_name}:{user_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 10000


def definitions_frame(
    audiences: Sequence[AudienceDefinition], as_of_date: date | str
) -> pd.DataFrame:
    """Flatten audiences into the rows of ``ml.audience_definitions``.

    Parameters
    ----------
    audiences : sequence of AudienceDefinition
        As returned by :func:`load_audiences`.
    as_of_date : date or str
        The run date stamped on every row.

    Returns
    -------
    pandas.DataFrame
        One row per audience x channel x segment (``segment_name`` is missing when the audience
        has no segment rule), columns ``DEFINITION_COLUMNS``, sorted by audience, channel and
        segment. Integer rules are nullable ``Int64``, the probability nullable ``Float64``.
    """
    run_date = _as_date(as_of_date)
    rows = []
    for audience in audiences:
        rule = audience.include
        for channel in audience.channels:
            segment_rules = [(name, None) for name in rule.segments or ()] + [
                (None, segment_id) for segment_id in rule.segment_ids or ()
            ]
            for segment, segment_id in segment_rules or [(None, None)]:
                rows.append(
                    {
                        "audience_name": audience.name,
                        "description": audience.description,
                        "channel": channel,
                        "segment_name": segment,
                        "segment_id": segment_id,
                        "exclude_audiences": ",".join(audience.exclude.audiences) or None,
                        "exclude_suppressed": audience.exclude.suppressed,
                        "exclusive_group": audience.exclusive_group,
                        "priority": audience.priority,
                        "holdout_pct": audience.holdout_pct,
                        "holdout_salt": audience.holdout_salt,
                        "min_size": audience.min_size,
                        "max_size": audience.max_size,
                        "frequency_cap_days": audience.frequency_cap_days,
                        "campaign_id": rule.campaign_id,
                        "min_response_probability": rule.min_response_probability,
                        "max_recency_days": rule.max_recency_days,
                        "min_recency_days": rule.min_recency_days,
                        "min_orders_lifetime": rule.min_orders_lifetime,
                        "max_orders_lifetime": rule.max_orders_lifetime,
                        "rfm_labels": _joined(rule.rfm_labels),
                        "membership_tiers": _joined(rule.membership_tiers),
                        "min_uplift": rule.min_uplift,
                        "max_decile": rule.max_decile,
                        "min_churn_probability": rule.min_churn_probability,
                        "recommended_categories": _joined(rule.recommended_categories),
                        "recommended_item_ids": _joined(rule.recommended_item_ids),
                        "as_of_date": run_date,
                    }
                )
    frame = pd.DataFrame(rows, columns=list(DEFINITION_COLUMNS))
    frame = frame.astype(
        {
            "audience_name": "str",
            "description": "str",
            "channel": "str",
            "segment_name": "str",
            "campaign_id": "Int64",
            "min_response_probability": "Float64",
            "max_recency_days": "Int64",
            "min_recency_days": "Int64",
            "min_orders_lifetime": "Int64",
            "max_orders_lifetime": "Int64",
            "rfm_labels": "string",
            "membership_tiers": "string",
            "min_uplift": "Float64",
            "max_decile": "Int64",
            "min_churn_probability": "Float64",
            "recommended_categories": "string",
            "recommended_item_ids": "string",
            "segment_id": "Int64",
            "exclude_audiences": "string",
            "exclude_suppressed": "bool",
            "exclusive_group": "string",
            "priority": "Int64",
            "holdout_pct": "float64",
            "holdout_salt": "str",
            "min_size": "Int64",
            "max_size": "Int64",
            "frequency_cap_days": "Int64",
        }
    )
    frame["as_of_date"] = pd.Series([run_date] * len(frame), dtype=object)
    frame = frame.sort_values(
        ["audience_name", "channel", "segment_name", "segment_id"],
        na_position="first",
        kind="stable",
    ).reset_index(drop=True)
    return frame
