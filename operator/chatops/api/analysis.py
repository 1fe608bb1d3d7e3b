"""The analysis that gates a release: Prometheus queries, the range each value must stay
in, the limits that turn measurements into a verdict, and the measurements kept in a
ChatRelease's status so a human sees why a release stopped."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from chatops.api import bounds
from chatops.api.bounds import Rule
from chatops.api.common import Model, Name, SecretKeyRef
from chatops.api.web import WebMetric

# -- the spec's checks ---------------------------------------------------------------

OnNoData = Literal["Error", "Inconclusive", "Fail", "Pass"]


_METRIC_RULES = (
    Rule(
        "has(self.query) != has(self.web)",
        "set exactly one of query and web",
        lambda m: bounds.exactly_one(m.query, m.web),
    ),
    Rule(
        "has(self.min) || has(self.max)",
        "set min, max or both",
        lambda m: m.min is not None or m.max is not None,
    ),
    Rule(
        "!has(self.min) || !has(self.max) || self.min <= self.max",
        "min must not be greater than max",
        lambda m: m.min is None or m.max is None or m.min <= m.max,
    ),
)


class Metric(Model):
    """One Prometheus query, or one `web` endpoint, and the range its value must stay in."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_METRIC_RULES))

    @model_validator(mode="after")
    def _rules(self) -> Metric:
        return bounds.enforce(self, _METRIC_RULES)

    name: Name
    """Metric name, shown in status and events."""
    query: bounds.Query | None = None
    """PromQL returning one number (at most 2048 characters); `{{service}}`,
    `{{namespace}}`, `{{component}}`, `{{color}}` and `{{revision}}` are replaced before
    it runs. Exactly one of `query` and `web`."""
    web: WebMetric | None = None
    """Instead of a query: an HTTP endpoint answering JSON and the JSONPath to the value
    (Argo Rollouts' `web` provider); judged by the same rules. Its failures (no answer in
    `timeoutSeconds`, a status other than 2xx, an answer that is not JSON, a value that
    is not a number) are Error measurements, as an unreachable Prometheus is."""
    min: float | None = None
    """Lowest passing value."""
    max: float | None = None
    """Highest passing value."""
    on_no_data: OnNoData = "Error"
    """Verdict when the query returns no series or NaN. `Error` (the default, as Argo
    Rollouts treats an empty result): nothing was learned, the release holds and never
    promotes, and more than `consecutiveErrorLimit` such rounds in a row roll it back (a
    new version's first rounds often come before Prometheus has two samples of it);
    `Inconclusive` pauses for a human past `inconclusiveLimit`; `Fail`; `Pass`."""
    compare_to_stable: bool = False
    """`min` and `max` are ratios to the stable version's value of the same query, taken
    in the same round from the other color's pods (`{{service}}`, `{{color}}` and
    `{{revision}}` theirs): `max: 1.2` passes while the new version's value is at most
    1.2 times the stable's: a canary judged against what its users get today rather than a
    fixed number. The stable's value missing or NaN is no data (`onNoData`), its query
    failing an error; a stable value of 0 makes every bound 0. An in-place `rolling`
    release has no other color to compare with: no data. A `web` metric compares the
    same way: its URL and body rendered for the stable version are asked too."""
    dry_run: bool = False
    """Measured, shown in status (`dryRun: true` on its measurements and counters) and
    exported as the others are, but never decides: its failures, inconclusive and
    errored rounds neither roll back nor pause nor hold the release, and promotion does
    not wait for it to pass (Argo Rollouts' `dryRun`). For trying a new query on real
    releases before it gates them."""


_SELECTOR = 'namespace="{{namespace}}",service="{{service}}",revision="{{revision}}"'
"""The pods of the color Service running the revision judged: a color's series from an
earlier revision (a canary rolled back a minute ago) are not this one's."""


def success_ratio(success: str, total: str, window: str) -> str:
    """The share of `total`'s events over `window` that `success` counted: 0 when every
    one failed (the success series may not exist then), 1 when `total`'s series are there
    but counted nothing (no attempt, none failed: long-lived WebSockets make none for as
    long as they stay open); no series at all is still no data (`onNoData`). (`total * 0`
    rather than `vector(0)` stands for the missing success series: it keeps the labels,
    so the query can be asked for many releases at once, `metrics/grouped.py`.)"""
    ok, every = f"sum(rate({success}[{window}]))", f"sum(rate({total}[{window}]))"
    return f"(({ok} or {every} * 0) / ({every} > 0)) or (({every} == 0) + 1)"


DEFAULT_METRICS: tuple[Metric, ...] = (
    Metric(
        name="error-rate",
        query=(
            f'sum(rate(http_requests_total{{{_SELECTOR},code=~"5.."}}[1m])) / '
            f"sum(rate(http_requests_total{{{_SELECTOR}}}[1m]))"
        ),
        max=0.01,
    ),
    Metric(
        name="latency-p95",
        query=(
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(http_request_duration_seconds_bucket{{{_SELECTOR}}}[1m])))"
        ),
        max=0.5,
    ),
    Metric(
        name="websocket-success",
        query=success_ratio(
            f'websocket_connections_total{{{_SELECTOR},result="success"}}',
            f"websocket_connections_total{{{_SELECTOR}}}", "1m",
        ),
        min=0.99,
    ),
)


class PrometheusSource(Model):
    """Where the analysis reads metrics."""

    address: bounds.URL | None = None
    """Prometheus base URL; defaults to the operator's configured address."""
    auth_secret_ref: SecretKeyRef | None = None
    """A bearer token for Prometheus, from a Secret."""


class MinimumTraffic(Model):
    """Measurements taken with too little traffic are inconclusive, not passes."""

    query: bounds.Query = f"sum(increase(http_requests_total{{{_SELECTOR}}}[1m]))"
    """PromQL for the requests the version served in the last interval."""
    min: float = Field(default=10, ge=0)
    """Fewest requests for a measurement to count."""


class Analysis(Model):
    """Prometheus checks that gate every step and can roll a release back by themselves."""

    prometheus: PrometheusSource = Field(default_factory=PrometheusSource)
    """Prometheus to query."""
    interval: bounds.HourDuration = "30s"
    """Time between measurements (at most 1h)."""
    initial_delay: bounds.HourDuration = "0s"
    """Wait after traffic moves before the first measurement (at most 1h)."""
    failure_limit: bounds.Limit = 0
    """Failed measurements tolerated; one more aborts the release."""
    inconclusive_limit: bounds.Limit = 0
    """Inconclusive measurements tolerated; one more pauses the release for a human."""
    consecutive_error_limit: bounds.Limit = 4
    """Query errors in a row tolerated (Prometheus unreachable pauses, never promotes);
    one more aborts."""
    minimum_traffic: MinimumTraffic | None = None
    """Guard against judging a version on too few requests."""
    metrics: list[Metric] = Field(
        default_factory=lambda: list(DEFAULT_METRICS), min_length=1, max_length=20
    )
    """The checks; defaults follow the runbook: error rate < 1 %, p95 < 500 ms, WebSocket
    connection success > 99 %."""


Verdict = Literal["Pass", "Fail", "Inconclusive", "Error"]


class Measurement(Model):
    """One analysis measurement, kept so a human sees why a release stopped."""

    metric: str
    """Metric name."""
    component: str
    """Component measured."""
    query: str
    """The query after templating."""
    value: str | None = None
    """The value Prometheus returned (as text: NaN and empty are answers too)."""
    verdict: Verdict
    """Pass, Fail, Inconclusive or Error."""
    time: str
    """When it was taken (RFC 3339)."""
    message: str = ""
    """Why the verdict, e.g. the threshold or the error."""
    dry_run: bool = False
    """Its metric is `dryRun`: this verdict decided nothing."""
    stable_value: str | None = None
    """With `compareToStable`: the stable version's value it was compared with."""


MESSAGE_LIMIT = 512
"""Characters of a measurement's message kept in the run's counters."""


class MetricCount(Model):
    """How one metric of one component fared so far in the analysis run in progress."""

    metric: str = Field(max_length=63)
    """Metric name."""
    component: str = Field(max_length=63)
    """Component measured."""
    passed: int = Field(default=0, ge=0)
    """Pass verdicts."""
    failed: int = Field(default=0, ge=0)
    """Fail verdicts; more than `failureLimit` rolls the release back."""
    inconclusive: int = Field(default=0, ge=0)
    """Inconclusive verdicts; more than `inconclusiveLimit` pauses for a human."""
    errors: int = Field(default=0, ge=0)
    """Error verdicts (the query could not be answered), in all."""
    consecutive_errors: int = Field(default=0, ge=0)
    """Error verdicts since the last answered query; more than `consecutiveErrorLimit`
    rolls the release back."""
    last_verdict: Verdict | None = None
    """The verdict of the latest measurement."""
    last_message: str = Field(default="", max_length=MESSAGE_LIMIT)
    """Why the latest verdict."""
    dry_run: bool = False
    """The metric is `dryRun`: these counters decide nothing."""
    last_failure: str = Field(default="", max_length=MESSAGE_LIMIT)
    """Why the latest Fail, if any: the reason a rollback names."""


class AnalysisRun(Model):
    """The counters of one analysis run (a canary pause, a pre-promotion analysis, a
    post-promotion or rolling window): every measurement round of the run counted once,
    however few of its measurements `status.analysis` keeps for people to read. The
    limits are judged from these counters (as Argo Rollouts keeps its counters apart from
    `measurementRetention`)."""

    started_at: str = Field(max_length=40)
    """The `status.analysisStartedAt` of the run these counters belong to: a run that
    starts later starts from zero."""
    rounds: int = Field(default=0, ge=0)
    """Rounds of measurements counted (one round measures every metric of every
    component)."""
    last_round_at: str | None = Field(default=None, max_length=40)
    """When the latest round counted was taken. A round is identified by its time and
    counted only when it is newer, so a round is never counted twice, even when the
    operator restarts (the round's measurements and these counters are written in the
    same status patch)."""
    metrics: list[MetricCount] = Field(default_factory=list, max_length=200)
    """Counters per metric and component."""
