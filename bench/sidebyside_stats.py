"""The side-by-side benchmark's pure parts (no I/O): the one error-rate query every
controller runs, who made a request in the API server's audit log, and the table's
arithmetic (medians, min-max, ratios, the issue's targets). tests/unit reads it as is.
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

CONTROLLERS = ("chatops", "argo", "flagger")
THRESHOLD = 0.01  # the error rate above which each controller must roll back


def error_rate(selector: str, window: str = "1m") -> str:
    """The error-rate query all three controllers run, on their own selector of the
    canary's pods. The 5xx rate is `or <total> * 0` so that a healthy canary (which has
    no 5xx series at all) gives 0, not "no data": Flagger halts on no data and Argo's
    condition cannot read an empty result. (`vector(0)` would do the same here but has no
    labels, so chatops' sweep could not ask it for many releases at once.)"""
    errors = f'sum(rate(http_requests_total{{{selector},code=~"5.."}}[{window}]))'
    total = f"sum(rate(http_requests_total{{{selector}}}[{window}]))"
    return f"({errors} or {total} * 0) / {total}"


def controller_of(user_agent: str, namespace: str | None, namespaces: Mapping[str, str]) -> str:
    """Which controller made an audited request, from its user agent: `rollouts-controller/…`
    and the plugin it starts (`argo-rollouts-gatewayapi-plugin`) are Argo's, `flagger/…`
    Flagger's. chatops talks through the Python kubernetes client (`OpenAPI-Generator/…`)
    and kopf (`kopf/…`); the chat app simulator also uses that client, so chatops' requests
    are also those in its own namespace. "" is anyone else (the benchmark, kwok, the
    control plane, Prometheus)."""
    if user_agent.startswith(("rollouts-controller/", "argo-rollouts-gatewayapi-plugin")):
        return "argo"
    if user_agent.startswith("flagger/"):
        return "flagger"
    ours = namespace is not None and namespace == namespaces.get("chatops")
    if user_agent.startswith(("OpenAPI-Generator/", "kopf/")) and ours:
        return "chatops"
    return ""


@dataclass(frozen=True)
class Request:
    """One request of the audit log (each counted once, whatever its stages)."""

    at: float  # seconds since the epoch, when the API server received it
    controller: str
    verb: str
    resource: str


def audited(lines: Iterable[str], namespaces: Mapping[str, str]) -> list[Request]:
    """The requests of the controllers in audit log lines (JSON, one event a line). A
    request has an event per stage (a watch: ResponseStarted then, much later,
    ResponseComplete): it is counted at its first. Half-written last lines are skipped."""
    seen: set[str] = set()
    found = []
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        audit_id = event.get("auditID", "")
        if audit_id in seen:
            continue
        seen.add(audit_id)
        ref = event.get("objectRef") or {}
        who = controller_of(event.get("userAgent", ""), ref.get("namespace"), namespaces)
        if not who:
            continue
        resource = ref.get("resource", event.get("requestURI", ""))
        if ref.get("subresource"):
            resource = f"{resource}/{ref['subresource']}"
        at = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        found.append(Request(at, who, event.get("verb", ""), resource))
    return found


def count(requests: Iterable[Request], controller: str, start: float, end: float) -> int:
    """Requests `controller` made in [start, end] (epoch seconds)."""
    return sum(1 for r in requests if r.controller == controller and start <= r.at <= end)


def breakdown(
    requests: Iterable[Request], controller: str, windows: Iterable[tuple[float, float]]
) -> dict[str, float]:
    """`verb resource` → requests per window (per release), most first: what a release
    costs each controller, row by row."""
    spans = list(windows)
    counts: Counter[str] = Counter(
        f"{r.verb} {r.resource}"
        for r in requests
        if r.controller == controller and any(a <= r.at <= b for a, b in spans)
    )
    return {key: n / max(len(spans), 1) for key, n in counts.most_common()}


History = Sequence[tuple[float, Mapping[str, int]]]
"""A route's backend weights, each time they changed, with the (monotonic) time seen."""


def first_at(history: History, backend: str, weight: int, since: float) -> float | None:
    """When `backend` was first seen at `weight` at or after `since` (None: never)."""
    return next((t for t, w in history if t >= since and w.get(backend) == weight), None)


def step_lags(
    history: History, backend: str, since: float, steps: Sequence[int], dwell: Sequence[float]
) -> list[float | None]:
    """For each weight of `steps`, how much longer than `dwell` (its pause) the canary
    `backend` stayed at it: from the first route change after `since` that put it there
    to the first that moved it elsewhere, less the pause. Read from the route alone, so
    the same for any controller. None from the first step not seen both ways."""
    lags: list[float | None] = []
    later = [(t, w.get(backend)) for t, w in history if t >= since]
    i = 0
    for weight, pause in zip(steps, dwell, strict=True):
        reached = next((j for j in range(i, len(later)) if later[j][1] == weight), None)
        left = None
        if reached is not None:
            left = next((j for j in range(reached, len(later)) if later[j][1] != weight), None)
        if reached is None or left is None:
            lags += [None] * (len(steps) - len(lags))
            break
        lags.append(later[left][0] - later[reached][0] - pause)
        i = left
    return lags


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    n: int

    def show(self, unit: str = "", digits: int = 2) -> str:
        if self.n == 0:
            return "-"
        if self.n == 1 or self.low == self.high:
            return f"{self.median:.{digits}f}{unit}"
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def spread(values: Iterable[float | None]) -> Spread:
    """Median and min-max of what was measured (None: a run that did not get there)."""
    got = [v for v in values if v is not None and not math.isnan(v)]
    if not got:
        return Spread(math.nan, math.nan, math.nan, 0)
    return Spread(statistics.median(got), min(got), max(got), len(got))


def ratio(ours: Spread, theirs: Spread) -> float:
    """chatops' median over a peer's; nan when either is missing or the peer's is 0."""
    if ours.n == 0 or theirs.n == 0 or theirs.median == 0:
        return math.nan
    return ours.median / theirs.median


@dataclass(frozen=True)
class Target:
    row: str
    peer: str
    factor: float  # chatops' median must be ≤ factor x the peer's

    def met(self, rows: Mapping[str, Mapping[str, Spread]]) -> bool | None:
        """None when a median is missing (a row not measured is not met, nor failed)."""
        r = ratio(rows[self.row]["chatops"], rows[self.row][self.peer])
        return None if math.isnan(r) else r <= self.factor


TARGETS = (
    Target("requests", "argo", 0.5),
    Target("first_weight", "argo", 1.0),
    Target("rollback", "argo", 0.5),
    Target("idle_rss", "flagger", 1.2),
    Target("cpu", "argo", 1.0),
)
