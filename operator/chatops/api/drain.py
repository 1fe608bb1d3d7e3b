"""How the old color's WebSockets are closed after a switch: in waves, each one gated on
the reconnect success of the one before, read from the app's own WebSocket metrics.

A wave scales the drained color's Deployments down by a batch of pods. That is what
really closes connections on a cluster: taking a pod out of a Service's endpoints leaves
its established connections open (kube-proxy keeps conntrack entries of established
flows; Traefik, Envoy and NGINX keep an upgraded WebSocket to a removed upstream until
one side closes it — traefik/traefik#9455), whereas a pod deleted by its ReplicaSet
gets SIGTERM and the app's graceful shutdown closes its sockets (close frame 1001,
"going away"), so its clients reconnect through the router, which sends them to the
new color.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from chatops.api import bounds
from chatops.api.analysis import OnNoData
from chatops.api.bounds import Rule
from chatops.api.common import DURATION_PATTERN, Model, seconds

_SELECTOR = 'namespace="{{namespace}}",service="{{service}}"'
DEFAULT_RECONNECT_QUERY = (
    f'sum(increase(websocket_connections_total{{{_SELECTOR},result="success"}}[{{{{window}}}}]))'
    f" / sum(increase(websocket_connections_total{{{_SELECTOR}}}[{{{{window}}}}]))"
)
"""The share of WebSocket connection attempts the color receiving them (`{{service}}`)
accepted over the last `{{window}}`, per the label contract (README)."""


class ReconnectGate(Model):
    """What must hold after a wave before the next one: the share of reconnections the
    color now serving accepted. Below `min` is a reconnect storm: the drain pauses,
    measuring every interval, and goes on once a whole interval is back above `min`."""

    query: bounds.Query = DEFAULT_RECONNECT_QUERY
    """PromQL returning one number for the color receiving the reconnections:
    `{{service}}`, `{{namespace}}`, `{{component}}`, `{{color}}`, `{{revision}}` as in the
    analysis, and `{{window}}`, the interval as a Prometheus range (e.g. `30s`)."""
    min: float = Field(default=0.99, ge=0, le=1)
    """Lowest share of accepted reconnections (0..1) for the drain to go on."""
    on_no_data: OnNoData = "Pass"
    """Verdict when no connection attempt was seen in the interval (the query is NaN or
    empty): by default Pass, since the wave closed nothing anyone came back for (a
    component without WebSockets, idle pods). Inconclusive holds the drain as a Fail
    does."""


_INTERVAL_MIN = "1s"
_DRAIN_RULES = (
    Rule(
        f"!self.interval.matches({bounds.cel_string(DURATION_PATTERN)}) || "
        f"duration(self.interval) >= duration('{_INTERVAL_MIN}')",
        f"interval must be at least {_INTERVAL_MIN}",
        lambda d: seconds(d.interval) >= seconds(_INTERVAL_MIN),
    ),
)


class Drain(Model):
    """Close the drained color's connections in `waves` batches, `interval` apart, each
    gated on the reconnect success of the one before. The first wave comes when the
    drain window (`scaleDownDelaySeconds`, or `abortScaleDownDelaySeconds` after a
    rollback) has passed; one wave (the default) is a single cut then."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_DRAIN_RULES))

    @model_validator(mode="after")
    def _rules(self) -> Drain:
        return bounds.enforce(self, _DRAIN_RULES)

    waves: int = Field(default=1, ge=1, le=100)
    """Batches the drained color's pods are scaled down in (1..100); a wave that would
    remove no pod of any component is skipped."""
    interval: bounds.HourDuration = "30s"
    """Time from a wave done (its pods gone) to the reconnect check that lets the next
    one go (1s..1h): at least two of Prometheus' scrape intervals, so the check sees the
    reconnections."""
    reconnect: ReconnectGate = Field(default_factory=ReconnectGate)
    """The check between waves."""
