"""Analysis of a release from Prometheus: the provider seam, its Prometheus
implementation, and the pure rules that turn values into verdicts and verdicts into an
outcome (`analysis`). `measure` is the one function that runs queries."""

from chatops.metrics.analysis import (
    Outcome,
    QueryContext,
    TrafficSeen,
    due,
    judge,
    last_measured_at,
    measurements_since,
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
    "due",
    "judge",
    "last_measured_at",
    "measure",
    "measurements_since",
    "next_measurement_at",
    "outcome",
    "render",
]
