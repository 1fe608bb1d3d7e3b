"""The analysis, as pure functions: what to query, what a value means, when to measure
next, and what the measurements so far say about the release.

Semantics follow Argo Rollouts' AnalysisRun (`failureLimit`, `inconclusiveLimit`,
`consecutiveErrorLimit`, counted per metric), counted here per (metric, component)
since one ChatRelease measures every component, and made stricter where DESIGN.md says:

- an Error (Prometheus unreachable, a bad query) is not a failure: it holds the
  release where it is and never lets it promote; only more than `consecutiveErrorLimit`
  errors in a row fail it;
- no data (no series, NaN) is `onNoData`, Inconclusive by default, never a silent pass;
- a run is Successful only when every metric of every component has passed at least
  once, so a run where everything errored, or nothing was measured, never promotes;
- too little traffic (the minimum-traffic guard) makes a measurement Inconclusive
  whatever the value: a handful of requests proves nothing either way.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from typing import Literal

from chatops.api.analysis import Analysis, Measurement, Metric, Verdict
from chatops.api.common import seconds
from chatops.errors import ChatopsError, UnknownPlaceholder

Outcome = Literal["Running", "Successful", "Failed", "Inconclusive"]

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


@dataclass(frozen=True)
class QueryContext:
    """What a query's placeholders stand for: the version of one component measured."""

    service: str
    """The color Service of the version, e.g. `chat-api-green`."""
    namespace: str
    component: str
    color: str
    revision: str


PLACEHOLDERS = tuple(f.name for f in fields(QueryContext))


def unknown_placeholders(query: str) -> list[str]:
    """Placeholders in `query` that `render` cannot fill, for checking a spec up front."""
    return [name for name in _PLACEHOLDER.findall(query) if name not in PLACEHOLDERS]


def placeholder_problems(analysis: Analysis) -> list[str]:
    """`field: problem` lines for every unknown placeholder in the analysis' queries."""
    queries = [
        (f"spec.analysis.metrics[{i}].query", m.query) for i, m in enumerate(analysis.metrics)
    ]
    if analysis.minimum_traffic is not None:
        queries.append(("spec.analysis.minimumTraffic.query", analysis.minimum_traffic.query))
    problems = []
    for field, query in queries:
        for name in unknown_placeholders(query):
            error = UnknownPlaceholder(field, name, PLACEHOLDERS)
            problems.append(f"{error.field}: {error.problem}")
    return problems


def render(query: str, context: QueryContext, field: str = "spec.analysis.metrics[].query") -> str:
    """`query` with `{{service}}`, `{{namespace}}`, `{{component}}`, `{{color}}` and
    `{{revision}}` replaced; any other placeholder is refused, naming it."""
    for name in unknown_placeholders(query):
        raise UnknownPlaceholder(field, name, PLACEHOLDERS)
    return _PLACEHOLDER.sub(lambda m: str(getattr(context, m.group(1))), query)


def format_value(value: float | None) -> str | None:
    """A value as `status.analysis` shows it: `NaN` and `+Inf` as Prometheus writes them."""
    if value is None:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


@dataclass(frozen=True)
class TrafficSeen:
    """What the minimum-traffic query saw for the version measured."""

    requests: float | None
    """Its value; no series means no requests."""
    minimum: float

    @property
    def enough(self) -> bool:
        return (
            self.requests is not None
            and not math.isnan(self.requests)
            and (self.requests >= self.minimum)
        )


_NO_DATA: dict[str, Verdict] = {"Inconclusive": "Inconclusive", "Fail": "Fail", "Pass": "Pass"}


def judge(
    metric: Metric, value: float | ChatopsError | None, traffic: TrafficSeen | None = None
) -> tuple[Verdict, str]:
    """The verdict on one measurement and why. An error beats everything (nothing was
    learned); then too little traffic; then no data (`onNoData`); then `min`/`max`,
    both inclusive."""
    if isinstance(value, ChatopsError):
        return "Error", str(value)
    if traffic is not None and not traffic.enough:
        seen = format_value(traffic.requests) or "0"
        return "Inconclusive", f"too little traffic: {seen} < {format_value(traffic.minimum)}"
    if value is None or math.isnan(value):
        what = "no series" if value is None else "NaN"
        verdict = _NO_DATA[metric.on_no_data]
        return verdict, f"no data ({what}); onNoData is {metric.on_no_data}"
    shown = format_value(value)
    if metric.min is not None and value < metric.min:
        return "Fail", f"{shown} < min {format_value(metric.min)}"
    if metric.max is not None and value > metric.max:
        return "Fail", f"{shown} > max {format_value(metric.max)}"
    bounds = [
        *([f"min {format_value(metric.min)}"] if metric.min is not None else []),
        *([f"max {format_value(metric.max)}"] if metric.max is not None else []),
    ]
    return "Pass", f"{shown} within {' and '.join(bounds)}"


def next_measurement_at(
    analysis: Analysis, started_at: datetime.datetime, last_measured_at: datetime.datetime | None
) -> datetime.datetime:
    """When the next measurement is due: `initialDelay` after traffic moved, then every
    `interval`. A measurement older than `started_at` belongs to an earlier step."""
    first = started_at + datetime.timedelta(seconds=seconds(analysis.initial_delay))
    # Status times are whole seconds: compare at that precision, or a measurement taken in
    # the step's first second would look older than the step.
    if last_measured_at is None or last_measured_at < started_at.replace(microsecond=0):
        return first
    return max(first, last_measured_at + datetime.timedelta(seconds=seconds(analysis.interval)))


def due(
    analysis: Analysis,
    started_at: datetime.datetime,
    last_measured_at: datetime.datetime | None,
    now: datetime.datetime,
) -> bool:
    """Whether a measurement should be taken now (else look again at
    `next_measurement_at`)."""
    return now >= next_measurement_at(analysis, started_at, last_measured_at)


def measured_at(measurement: Measurement) -> datetime.datetime:
    """When a recorded measurement was taken (its RFC 3339 `time`)."""
    return datetime.datetime.fromisoformat(measurement.time.replace("Z", "+00:00"))


def measurements_since(
    measurements: Sequence[Measurement], started_at: datetime.datetime
) -> list[Measurement]:
    """The measurements of the run that began at `started_at` (a step's pause, the
    post-promotion window), out of everything `status.analysis` keeps."""
    start = started_at.replace(microsecond=0)
    return [m for m in measurements if measured_at(m) >= start]


def last_measured_at(measurements: Sequence[Measurement]) -> datetime.datetime | None:
    """When the newest of `measurements` was taken, for `due`."""
    return max((measured_at(m) for m in measurements), default=None)


@dataclass(frozen=True)
class _Tally:
    metric: str
    component: str
    verdicts: tuple[Verdict, ...]
    last_messages: dict[Verdict, str]

    def count(self, verdict: Verdict) -> int:
        return self.verdicts.count(verdict)

    def errors_in_a_row(self) -> int:
        run = 0
        for verdict in reversed(self.verdicts):
            if verdict != "Error":
                break
            run += 1
        return run

    def why(self, verdict: Verdict) -> str:
        return f"{self.metric} on {self.component}: " + self.last_messages.get(verdict, "")


def _assess(analysis: Analysis, tally: _Tally) -> tuple[Outcome, str]:
    failed, inconclusive = tally.count("Fail"), tally.count("Inconclusive")
    errors = tally.errors_in_a_row()
    where = f"{tally.metric} on {tally.component}"
    if failed > analysis.failure_limit:
        return "Failed", (
            f"{where} failed {failed} time(s), more than failureLimit "
            f"{analysis.failure_limit}; last: {tally.last_messages['Fail']}"
        )
    if inconclusive > analysis.inconclusive_limit:
        return "Inconclusive", (
            f"{where} was inconclusive {inconclusive} time(s), more than inconclusiveLimit "
            f"{analysis.inconclusive_limit}; last: {tally.last_messages['Inconclusive']}"
        )
    if errors > analysis.consecutive_error_limit:
        return "Failed", (
            f"{where} errored {errors} time(s) in a row, more than consecutiveErrorLimit "
            f"{analysis.consecutive_error_limit}; last: {tally.last_messages['Error']}"
        )
    if errors:
        return "Running", f"{where} errored, holding until a measurement succeeds: " + (
            tally.last_messages["Error"]
        )
    if "Pass" not in tally.verdicts:
        return "Running", f"{where} has not passed yet"
    return "Successful", f"{where} passed"


def outcome(
    analysis: Analysis,
    measurements: Sequence[Measurement],
    components: Collection[str] | None = None,
) -> tuple[Outcome, str]:
    """What the measurements of one analysis run (one pause, one post-promotion window;
    oldest first) say, and why:

    - Failed: a (metric, component) failed more than `failureLimit` times, or errored
      more than `consecutiveErrorLimit` times in a row: roll back;
    - Inconclusive: one was inconclusive more than `inconclusiveLimit` times: pause for
      a human;
    - Running: keep measuring; errors below the limit land here, so they hold the
      release and never promote it;
    - Successful: every metric of every component (`components`, by default those
      measured) passed at least once, none is over a limit, none last errored.

    Measurements of metrics no longer in the spec are ignored."""
    names = [m.name for m in analysis.metrics]
    measured = [m for m in measurements if m.metric in names]
    wanted = (
        list(components)
        if components is not None
        else list(dict.fromkeys(m.component for m in measured))
    )
    if not wanted:
        return "Running", "no measurement yet"
    results = []
    for component in wanted:
        for name in names:
            mine = [m for m in measured if m.metric == name and m.component == component]
            tally = _Tally(
                name,
                component,
                tuple(m.verdict for m in mine),
                {m.verdict: m.message for m in mine},
            )
            results.append(_assess(analysis, tally))
    for worst in ("Failed", "Inconclusive", "Running"):
        for result, message in results:
            if result == worst:
                return result, message
    return "Successful", f"all {len(names)} metric(s) passed on {', '.join(wanted)}"
