"""The seam between the analysis and a metrics backend (Flagger's `providers.Interface`).

One method: run a query, get one number. The analysis needs nothing else, and a backend
that cannot answer says so with `MetricsUnavailable` rather than with a number, because
"Prometheus is down" must pause a release, never fail or pass it.
"""

from __future__ import annotations

import datetime
from typing import Protocol


class MetricProvider(Protocol):
    """Answers a query with the one number it evaluates to."""

    def query(self, promql: str) -> float | None:
        """The query's value now: a float (NaN stays NaN), or None when it matched no
        series. Raises `chatops.errors.MetricsUnavailable` when the backend cannot be
        reached, answers an HTTP error, refuses the query, or returns more than one
        number."""
        ...


class WindowProvider(MetricProvider, Protocol):
    """A provider that also answers as of a past moment, for figures counted over a
    window that has ended (the cost of a release): the same number however late it is
    asked, as long as the backend keeps the data."""

    def query_at(self, promql: str, at: datetime.datetime) -> float | None:
        """The query's value at `at`; as `query` otherwise."""
        ...
