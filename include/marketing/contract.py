"""The raw data contract: columns, types and row rules of every landed table.

One declarative spec per table drives the loader (``marketing.land``); the rule names it
produces are what analysts see in ``raw.rejected_rows.rule``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TableSpec:
    """Contract of one raw table.

    Attributes
    ----------
    columns : dict
        Contract column -> DuckDB type. All are required in every file.
    key : tuple
        Primary key; duplicates (within the batch or against earlier partitions) are rejected.
    not_null : tuple
        Columns that must be present on every row.
    timestamp : str or None
        Column that must not lie after the end of the row's partition day.
    enums : dict
        Column -> allowed values.
    non_negative : tuple
        Numeric columns that must be >= 0.
    foreign_keys : dict
        Column -> (table, column); the parent row must have landed in a partition on or before
        the child's partition. A NULL value is not checked here (``not_null`` covers it).
    optional : dict
        Column -> (DuckDB type, default SQL literal): may be absent from a file (older exports,
        shops without the concept); absent or NULL values take the default.
    nullable_if : dict
        Column -> boolean column: the column may be NULL on rows where that flag is true
        (a guest order has no user).
    max_abs : dict
        Numeric column -> largest plausible absolute value; larger values are extreme outliers
        (a quantity of 10^6 is a typo or a test order, not a purchase).
    """

    columns: dict[str, str]
    key: tuple[str, ...]
    not_null: tuple[str, ...] = ()
    timestamp: str | None = None
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    non_negative: tuple[str, ...] = ()
    foreign_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    optional: dict[str, tuple[str, str]] = field(default_factory=dict)
    nullable_if: dict[str, str] = field(default_factory=dict)
    max_abs: dict[str, float] = field(default_factory=dict)

    @property
    def all_columns(self) -> dict[str, str]:
        """Required and optional columns with their types, in table order."""
        return {**self.columns, **{c: t for c, (t, _) in self.optional.items()}}


EVENT_TYPES = ("view", "cart", "purchase")
CHANNELS = ("email", "google_ads", "meta_ads")
SUPPRESSION_REASONS = ("unsubscribe", "bounce", "complaint")

# Parents before children: foreign keys are checked against what has already landed.
TABLES: dict[str, TableSpec] = {
    "users": TableSpec(
        columns={
            "user_id": "BIGINT",
            "email": "VARCHAR",
            "phone": "VARCHAR",
            "first_name": "VARCHAR",
            "last_name": "VARCHAR",
            "country": "VARCHAR",
            "city": "VARCHAR",
            "postal_code": "VARCHAR",
            "signed_up_at": "TIMESTAMP",
            "email_opt_in": "BOOLEAN",
            "ads_opt_in": "BOOLEAN",
        },
        key=("user_id",),
        not_null=("user_id", "signed_up_at"),
        timestamp="signed_up_at",
    ),
    "items": TableSpec(
        columns={"item_id": "BIGINT", "name": "VARCHAR", "category": "VARCHAR", "price": "DOUBLE"},
        key=("item_id",),
        not_null=("item_id", "category", "price"),
        non_negative=("price",),
        max_abs={"price": 1_000_000.0},
    ),
    "campaigns": TableSpec(
        columns={
            "campaign_id": "BIGINT",
            "campaign_name": "VARCHAR",
            "channel": "VARCHAR",
            "starts_at": "TIMESTAMP",
            "response_window_days": "INTEGER",
        },
        key=("campaign_id",),
        not_null=("campaign_id", "starts_at", "response_window_days"),
        timestamp="starts_at",
        enums={"channel": CHANNELS},
        non_negative=("response_window_days",),
    ),
    "events": TableSpec(
        columns={
            "event_id": "BIGINT",
            "user_id": "BIGINT",
            "item_id": "BIGINT",
            "event_type": "VARCHAR",
            "event_at": "TIMESTAMP",
            "session_id": "VARCHAR",
        },
        key=("event_id",),
        not_null=("event_id", "user_id", "item_id", "event_type", "event_at"),
        timestamp="event_at",
        enums={"event_type": EVENT_TYPES},
        foreign_keys={"user_id": ("users", "user_id"), "item_id": ("items", "item_id")},
    ),
    "orders": TableSpec(
        columns={"order_id": "BIGINT", "user_id": "BIGINT", "ordered_at": "TIMESTAMP"},
        key=("order_id",),
        not_null=("order_id", "user_id", "ordered_at"),
        timestamp="ordered_at",
        foreign_keys={"user_id": ("users", "user_id")},
        # a cancellation/return (its lines carry the returned quantities, positive) reduces
        # spend and is not a purchase; a guest order has no user: kept for item statistics.
        optional={"is_cancelled": ("BOOLEAN", "false"), "is_guest": ("BOOLEAN", "false")},
        nullable_if={"user_id": "is_guest"},
    ),
    "order_lines": TableSpec(
        columns={
            "order_id": "BIGINT",
            "line_number": "INTEGER",
            "item_id": "BIGINT",
            "quantity": "INTEGER",
            "unit_price": "DOUBLE",
        },
        key=("order_id", "line_number"),
        not_null=("order_id", "line_number", "item_id", "quantity", "unit_price"),
        non_negative=("quantity", "unit_price"),
        max_abs={"quantity": 100_000.0, "unit_price": 1_000_000.0},
        foreign_keys={"order_id": ("orders", "order_id"), "item_id": ("items", "item_id")},
    ),
    "campaign_sends": TableSpec(
        columns={
            "send_id": "BIGINT",
            "campaign_id": "BIGINT",
            "user_id": "BIGINT",
            "sent_at": "TIMESTAMP",
            "is_control": "BOOLEAN",
        },
        key=("send_id",),
        not_null=("send_id", "campaign_id", "user_id", "sent_at", "is_control"),
        timestamp="sent_at",
        foreign_keys={"campaign_id": ("campaigns", "campaign_id"), "user_id": ("users", "user_id")},
    ),
    "campaign_responses": TableSpec(
        columns={
            "response_id": "BIGINT",
            "send_id": "BIGINT",
            "campaign_id": "BIGINT",
            "user_id": "BIGINT",
            "responded_at": "TIMESTAMP",
        },
        key=("response_id",),
        not_null=("response_id", "send_id", "responded_at"),
        timestamp="responded_at",
        foreign_keys={"send_id": ("campaign_sends", "send_id")},
    ),
    "suppressions": TableSpec(
        columns={"email": "VARCHAR", "reason": "VARCHAR", "suppressed_at": "TIMESTAMP"},
        key=("email", "reason"),
        not_null=("email", "reason", "suppressed_at"),
        timestamp="suppressed_at",
        enums={"reason": SUPPRESSION_REASONS},
    ),
    "erasure_requests": TableSpec(
        columns={"user_id": "BIGINT", "requested_at": "TIMESTAMP"},
        key=("user_id",),
        not_null=("user_id", "requested_at"),
        timestamp="requested_at",
        foreign_keys={"user_id": ("users", "user_id")},
    ),
}
