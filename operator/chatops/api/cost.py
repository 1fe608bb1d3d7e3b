"""What a release cost its users: the queries that count it (`spec.cost`, defaults per
the label contract in the README) and the figures counted (`status.cost` for the release
in flight, `cost` of each `status.history` entry).

The figures are counted by Prometheus over the release's own window: from its start
until it is complete (its drain over, or when it ended if nothing drains), evaluated at
the window's end, so a count taken later says the same. A figure Prometheus could not
give (unreachable, an error) is unknown, never zero; a query matching no series counts
0 (a version that never failed has no 5xx series).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chatops.api import bounds
from chatops.api.common import Model

_SELECTOR = 'namespace="{{namespace}}",service="{{service}}"'
_WINDOW = "[{{window}}]"


def _count(series: str) -> str:
    """The events the counter `series` counted in the window: per series, the larger of
    `increase()` (right across a restart's reset) and its growth, its last value less the
    last before the window (0 for a series born inside it, as a new color's are).
    `increase()` alone counts a series from its first scrape on and misses what that
    scrape already held: a new pod scraped a few seconds after it began to serve, a good
    part of a bad canary's few failures."""
    last = f"last_over_time({series}{_WINDOW})"
    before = f"last_over_time({series}{_WINDOW} offset {{{{window}}}})"
    grown = f"({last} - ({before} or {last} * 0))"
    return f"sum(clamp_min((increase({series}{_WINDOW}) >= {grown}) or {grown}, 0))"


DEFAULT_REQUESTS = _count(f"http_requests_total{{{_SELECTOR}}}")
DEFAULT_FAILED_REQUESTS = _count(f'http_requests_total{{{_SELECTOR},code=~"5.."}}')
_ACTIVE = f"websocket_connections_active{{{_SELECTOR}}}"
_SHUT = f'websocket_disconnections_total{{{_SELECTOR},reason="shutdown"}}'
_ACCEPTED = f'websocket_connections_total{{{_SELECTOR},result="success"}}'
_OPEN_NOW = f"sum by (pod) ({_ACTIVE})"
_SHUT_NOW = f"sum by (pod) ({_SHUT})"
_HELD_NOW = f"(({_OPEN_NOW} + {_SHUT_NOW}) or {_OPEN_NOW} or {_SHUT_NOW})"
_ANOTHER = (
    f"(sum by (pod) ({_ACCEPTED})"
    f" < sum by (pod) (max_over_time({_ACCEPTED}{_WINDOW} @ end())))"
)
_HELD = f"last_over_time(({_HELD_NOW} unless on (pod) {_ANOTHER})[{{{{window}}}}:1s])"
_BEFORE = f"sum by (pod) (last_over_time({_SHUT}{_WINDOW} offset {{{{window}}}}))"
_PODS = (
    f"(sum by (pod) (last_over_time({_ACTIVE}{_WINDOW}))"
    f" or sum by (pod) (last_over_time({_SHUT}{_WINDOW}))) * 0"
)
DEFAULT_WEBSOCKETS_MOVED = f"sum(clamp_min({_HELD} - ({_BEFORE} or {_PODS}), 0))"
"""Asked of the drained color only: the connections each of its pods held when it went.
At its last scrape a pod's `websocket_connections_active` and its `shutdown` closes in
the window add up to them — before its closes began (a pod that exits at once is never
scraped again), after them, or in between (a scrape in the middle of a pod's closes
sees some still open and the others closed: either figure alone misses a part).
Its last scrape *by its own process*: Prometheus keeps a gone pod's target for a few
seconds (discovery sends updates at most every 5 s; 1 s in the local environment, 3 s
seen there under load), and when the pod's IP already
serves a new pod the target scrapes that one under the gone pod's labels — its
counters from 0, no connection of the gone pod's (prometheus/prometheus#13322). Such a
sample shows fewer accepted connections (`result="success"`) than the pod had
accepted: it is left out (so does a drained pod's own restarted container in the window:
it counts what the pod held before). Hence the subquery, one step a second (no scrape is missed
at any scrape interval); the window's peak is taken once, at its end (`@ end()`)."""
_LOST = _count(f'websocket_disconnections_total{{{_SELECTOR},reason="error"}}')
_REFUSED = _count(f'websocket_connections_total{{{_SELECTOR},result="failure"}}')
DEFAULT_WEBSOCKETS_DROPPED = f"({_LOST} or vector(0)) + ({_REFUSED} or vector(0))"


class CostQueries(Model):
    """How the cost of a release is counted. Each query returns one number for one
    component's color Service over the window: `{{service}}`, `{{namespace}}`,
    `{{component}}`, `{{color}}`, `{{revision}}` as in the analysis, and `{{window}}`,
    the window's length as a Prometheus range (e.g. `754s`). The figures add the
    components up."""

    requests: bounds.Query = DEFAULT_REQUESTS
    """Requests the new version served (asked of its color)."""
    failed_requests: bounds.Query = DEFAULT_FAILED_REQUESTS
    """Requests the new version failed (asked of its color)."""
    websockets_moved: bounds.Query = DEFAULT_WEBSOCKETS_MOVED
    """WebSocket connections the drain moved: what the drained color's pods held when
    they went (asked of the drained color — the old one after a promotion, the new one
    after a rollback — once the release ended; 0 before)."""
    websockets_dropped: bounds.Query = DEFAULT_WEBSOCKETS_DROPPED
    """WebSocket connections lost without a close handshake, and connection attempts
    refused (asked of both colors)."""
    settle: bounds.HourDuration = "30s"
    """How long after the window's end the final count waits, so Prometheus has
    scraped past it (at least two scrape intervals; at most 1h)."""


class ReleaseCost(Model):
    """What one release cost its users, counted by Prometheus over its window."""

    color: Literal["blue", "green"]
    """The color the new version ran on."""
    since: str = Field(max_length=40)
    """The window's start: when the release started (RFC 3339)."""
    until: str | None = Field(default=None, max_length=40)
    """The window's end: when the release was complete — its drain over, or when it
    ended if nothing drains (RFC 3339); none while it goes on (the figures so far)."""
    counted_until: str | None = Field(default=None, max_length=40)
    """The end of the window the figures were counted over (RFC 3339)."""
    requests: int | None = Field(default=None, ge=0)
    """Requests the new version served; none: unknown."""
    failed_requests: int | None = Field(default=None, ge=0)
    """Requests the new version failed (5xx); none: unknown."""
    websockets_moved: int | None = Field(default=None, ge=0)
    """WebSocket connections closed by the app to move them; none: unknown."""
    websockets_dropped: int | None = Field(default=None, ge=0)
    """WebSocket connections lost or refused; none: unknown."""
    counted_at: str | None = Field(default=None, max_length=40)
    """When the figures were last counted, or counting last tried (RFC 3339)."""
    final: bool = False
    """True once counted after the window ended and Prometheus had time to scrape it:
    the figures no longer change."""
    problem: str | None = Field(default=None, max_length=512)
    """Why figures are unknown (e.g. Prometheus unreachable); counting is tried again."""
