"""Analysis of a release from Prometheus: the provider seam, its Prometheus
implementation, and the pure rules that turn values into verdicts and verdicts into an
outcome (`analysis`). `measure` is the one function that runs queries."""

from chatops.metrics.analysis import (
    Outcome,
    QueryContext,
    TrafficSeen,
    count,
    due,
    judge,
    last_round_at,
    next_measurement_at,
    outcome,
    render,
)
from chatops.metrics.measure import measure
from chatops.metrics.prometheus import PrometheusProvider
from chatops.metrics.provider import MetricProvider

__all__ = [
    "MetricProvider",
    "Outcome",
    "PrometheusProvider",
    "QueryContext",
    "TrafficSeen",
    "count",
    "due",
    "judge",
    "last_round_at",
    "measure",
    "next_measurement_at",
    "outcome",
    "render",
]
