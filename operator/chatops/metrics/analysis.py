"""The analysis, as pure functions: what to query, what a value means, when to measure
next, and what the measurements so far say about the release.

Semantics follow Argo Rollouts' AnalysisRun (`failureLimit`, `inconclusiveLimit`,
`consecutiveErrorLimit`, counted per metric), counted here per (metric, component)
since one ChatRelease measures every component, and made stricter where DESIGN.md says.
The limits are judged from counters kept per analysis run (`count`, `AnalysisRun` in
status), never from the measurements kept for people to read, so a failure is never
forgotten because its measurement scrolled out of `status.analysis`:

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
from typing import Literal, cast

from chatops import clock
from chatops.api.analysis import (
    MESSAGE_LIMIT,
    Analysis,
    AnalysisRun,
    Measurement,
    Metric,
    MetricCount,
    Verdict,
)
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


@dataclass(frozen=True)
class WindowContext(QueryContext):
    """A version measured over a window of time (the drain's reconnect check, the cost
    of a release): `{{window}}` is its length as a Prometheus range, e.g. `754s`."""

    window: str


PLACEHOLDERS = tuple(f.name for f in fields(QueryContext))
WINDOW_PLACEHOLDERS = tuple(f.name for f in fields(WindowContext))


def window(length: float) -> str:
    """`length` seconds as a Prometheus range: whole seconds, rounded up, at least 1s."""
    return f"{max(1, math.ceil(length))}s"


def unknown_placeholders(query: str, known: tuple[str, ...] = PLACEHOLDERS) -> list[str]:
    """Placeholders in `query` that `render` cannot fill, for checking a spec up front."""
    return [name for name in _PLACEHOLDER.findall(query) if name not in known]


def placeholder_problems(analysis: Analysis) -> list[str]:
    """`field: problem` lines for every unknown placeholder in the analysis' queries (and
    `web` metrics' URLs and bodies)."""
    queries = []
    for i, m in enumerate(analysis.metrics):
        field = f"spec.analysis.metrics[{i}]"
        queries += [(f"{field}.query", m.query)] if m.query is not None else []
        if m.web is not None:
            queries.append((f"{field}.web.url", m.web.url))
            queries += [(f"{field}.web.body", m.web.body)] if m.web.body is not None else []
    if analysis.minimum_traffic is not None:
        queries.append(("spec.analysis.minimumTraffic.query", analysis.minimum_traffic.query))
    return query_problems(queries)


def query_problems(
    queries: Sequence[tuple[str, str]], known: tuple[str, ...] = PLACEHOLDERS
) -> list[str]:
    """`field: problem` lines for every placeholder of `(field, query)` not in `known`."""
    problems = []
    for field, query in queries:
        for name in unknown_placeholders(query, known):
            error = UnknownPlaceholder(field, name, known)
            problems.append(f"{error.field}: {error.problem}")
    return problems


def render(query: str, context: QueryContext, field: str = "spec.analysis.metrics[].query") -> str:
    """`query` with `{{service}}`, `{{namespace}}`, `{{component}}`, `{{color}}` and
    `{{revision}}` replaced (and `{{window}}` for a `WindowContext`); any other
    placeholder is refused, naming it."""
    known = tuple(f.name for f in fields(context))
    for name in unknown_placeholders(query, known):
        raise UnknownPlaceholder(field, name, known)
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


_NO_DATA: dict[str, Verdict] = {
    "Error": "Error", "Inconclusive": "Inconclusive", "Fail": "Fail", "Pass": "Pass",
}


def judge(
    metric: Metric,
    value: float | ChatopsError | None,
    traffic: TrafficSeen | None = None,
    stable: float | ChatopsError | None = None,
) -> tuple[Verdict, str]:
    """The verdict on one measurement and why. An error beats everything (nothing was
    learned); then too little traffic; then, for a `compareToStable` metric, the
    stable version's value (`stable`) missing or failed; then no data (`onNoData`);
    then `min`/`max`, both inclusive (a `compareToStable` metric's times `stable`)."""
    if isinstance(value, ChatopsError):
        return "Error", str(value)
    if traffic is not None and not traffic.enough:
        seen = format_value(traffic.requests) or "0"
        return "Inconclusive", f"too little traffic: {seen} < {format_value(traffic.minimum)}"
    if metric.compare_to_stable:
        scaled = against_stable(metric, stable)
        if isinstance(scaled, tuple):
            return scaled
        verdict, message = judge(scaled.model_copy(update={"compare_to_stable": False}), value)
        ratios = " and ".join(
            f"{name} {format_value(ratio)} times stable {format_value(cast(float, stable))}"
            for name, ratio in (("min", metric.min), ("max", metric.max)) if ratio is not None
        )
        return verdict, f"{message} ({ratios})"
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


def against_stable(
    metric: Metric, stable: float | ChatopsError | None
) -> Metric | tuple[Verdict, str]:
    """A `compareToStable` metric with its ratios made bounds for this round (each times
    the stable version's value), or the verdict when there is no stable value to compare
    with: its query failed (Error) or it has no data (`onNoData`)."""
    if isinstance(stable, ChatopsError):
        return "Error", f"the stable version's query: {stable}"
    if stable is None or math.isnan(stable):
        what = "no series" if stable is None else "NaN"
        return _NO_DATA[metric.on_no_data], (
            f"no data for the stable version ({what}); onNoData is {metric.on_no_data}"
        )
    return metric.model_copy(update={
        "min": None if metric.min is None else metric.min * stable,
        "max": None if metric.max is None else metric.max * stable,
    })


def next_measurement_at(
    analysis: Analysis,
    started_at: datetime.datetime,
    last_measured_at: datetime.datetime | None,
    breached: bool = False,
) -> datetime.datetime:
    """When the next measurement is due: `initialDelay` after the run started, then
    every `interval`, or at once (after `initialDelay`) when the sweep saw a metric
    `breached`. A measurement older than `started_at` belongs to an earlier run."""
    first = started_at + datetime.timedelta(seconds=seconds(analysis.initial_delay))
    if breached or last_measured_at is None or last_measured_at < started_at:
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


def last_round_at(run: AnalysisRun | None) -> datetime.datetime | None:
    """When the run's latest counted round was taken; None before its first."""
    if run is None or not run.rounds or run.last_round_at is None:
        return None
    return clock.parse(run.last_round_at)


def count(
    run: AnalysisRun | None, started_at: str | None, measurements: Sequence[Measurement]
) -> AnalysisRun | None:
    """The counters of the run that started at `started_at` (`status.analysisStartedAt`)
    after the new `measurements` (one round or none), oldest first.

    Counters of another run are dropped: a new run starts from zero. A round (the
    measurements that share a `time`) is counted when it was taken at or after the run
    started and after the last round counted, so counting the same round twice changes
    nothing; the last round's time is kept across runs, so a round counted for one run
    (the pause that just ended) is not counted again for the next one started in the
    same look. No run in progress (`started_at` None): no counters."""
    if started_at is None:
        return None
    counted = run.last_round_at if run is not None else None
    if run is None or run.started_at != started_at:
        run = AnalysisRun(started_at=started_at, last_round_at=counted)
    start = clock.parse(started_at)
    rounds: dict[str, list[Measurement]] = {}
    for m in measurements:
        rounds.setdefault(m.time, []).append(m)
    for time in sorted(rounds, key=clock.parse):
        at = clock.parse(time)
        if at < start or (run.last_round_at is not None and at <= clock.parse(run.last_round_at)):
            continue
        run = _counted(run, time, rounds[time])
    return run


def _counted(run: AnalysisRun, time: str, measurements: Sequence[Measurement]) -> AnalysisRun:
    counts = {(c.metric, c.component): c for c in run.metrics}
    for m in measurements:
        key = (m.metric, m.component)
        counts[key] = _tallied(
            counts.get(key) or MetricCount(metric=m.metric, component=m.component), m
        )
    return run.model_copy(
        update={"rounds": run.rounds + 1, "last_round_at": time, "metrics": list(counts.values())}
    )


def _tallied(c: MetricCount, m: Measurement) -> MetricCount:
    message = m.message[:MESSAGE_LIMIT]
    update: dict[str, object] = {
        "dry_run": m.dry_run,
        "last_verdict": m.verdict,
        "last_message": message,
        "consecutive_errors": c.consecutive_errors + 1 if m.verdict == "Error" else 0,
    }
    if m.verdict == "Pass":
        update["passed"] = c.passed + 1
    elif m.verdict == "Fail":
        update.update(failed=c.failed + 1, last_failure=message)
    elif m.verdict == "Inconclusive":
        update["inconclusive"] = c.inconclusive + 1
    else:
        update["errors"] = c.errors + 1
    return c.model_copy(update=update)


def _assess(analysis: Analysis, c: MetricCount) -> tuple[Outcome, str]:
    where = f"{c.metric} on {c.component}"
    if c.failed > analysis.failure_limit:
        return "Failed", (
            f"{where} failed {c.failed} time(s), more than failureLimit "
            f"{analysis.failure_limit}; last: {c.last_failure}"
        )
    # Errors past their limit fail as failures do, before inconclusive verdicts: a
    # release paused as inconclusive whose metrics then keep erroring rolls back.
    if c.consecutive_errors > analysis.consecutive_error_limit:
        return "Failed", (
            f"{where} errored {c.consecutive_errors} time(s) in a row, more than "
            f"consecutiveErrorLimit {analysis.consecutive_error_limit}; last: {c.last_message}"
        )
    if c.inconclusive > analysis.inconclusive_limit:
        last = f"; last: {c.last_message}" if c.last_verdict == "Inconclusive" else ""
        return "Inconclusive", (
            f"{where} was inconclusive {c.inconclusive} time(s), more than inconclusiveLimit "
            f"{analysis.inconclusive_limit}{last}"
        )
    if c.consecutive_errors:
        return "Running", f"{where} errored, holding until a measurement succeeds: " + (
            c.last_message
        )
    if not c.passed:
        return "Running", f"{where} has not passed yet"
    return "Successful", f"{where} passed"


def outcome(
    analysis: Analysis,
    run: AnalysisRun | None,
    components: Collection[str] | None = None,
) -> tuple[Outcome, str]:
    """What the counters of one analysis run (one pause, one post-promotion window) say,
    and why:

    - Failed: a (metric, component) failed more than `failureLimit` times, or errored
      more than `consecutiveErrorLimit` times in a row: roll back;
    - Inconclusive: one was inconclusive more than `inconclusiveLimit` times: pause for
      a human;
    - Running: keep measuring; errors below the limit land here, so they hold the
      release and never promote it;
    - Successful: every metric of every component (`components`, by default those
      counted) passed at least once, none is over a limit, none last errored.

    Counters of metrics no longer in the spec are ignored, and so are those of `dryRun`
    metrics: they are measured and shown, never decide."""
    names = [m.name for m in analysis.metrics if not m.dry_run]
    counts = {(c.metric, c.component): c for c in (run.metrics if run is not None else [])}
    wanted = (
        list(components)
        if components is not None
        else list(dict.fromkeys(c for (metric, c) in counts if metric in names))
    )
    if not wanted or run is None or not run.rounds:
        return "Running", "no measurement yet"
    results = [
        _assess(
            analysis, counts.get((name, component)) or MetricCount(metric=name, component=component)
        )
        for component in wanted
        for name in names
    ]
    for worst in ("Failed", "Inconclusive", "Running"):
        for result, message in results:
            if result == worst:
                return result, message
    dry = len(analysis.metrics) - len(names)
    shown = f"; {dry} dryRun metric(s) measured, not judged" if dry else ""
    return "Successful", f"all {len(names)} metric(s) passed on {', '.join(wanted)}{shown}"
