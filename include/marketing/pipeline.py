"""The daily job's steps as plain functions: read inputs, call the domain code, write outputs.

Each step takes the run date D (``as_of_date``) and ``Settings``, opens the warehouse for as
short as it can, and returns a small JSON-able dict (the DAG's XCom). Every write replaces
exactly D's partition, so any step can be re-run. The steps live in ``marketing.steps``, one
module per stage; this module is the one place the DAG and the benchmark import them from.
"""

from __future__ import annotations

from marketing.steps.delivering import deliver_audiences
from marketing.steps.landing import land_day
from marketing.steps.publishing import (
    load_audience_definitions,
    publish_audiences,
    publish_snapshot,
)
from marketing.steps.recommendations import build_recommendations, read_interactions
from marketing.steps.scores import score_campaigns, training_marts_to_keep
from marketing.steps.segments import build_segments

__all__ = [
    "build_recommendations",
    "build_segments",
    "deliver_audiences",
    "land_day",
    "load_audience_definitions",
    "publish_audiences",
    "publish_snapshot",
    "read_interactions",
    "score_campaigns",
    "training_marts_to_keep",
]
