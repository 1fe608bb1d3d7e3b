"""The operator's own metrics, on one `/metrics`: what each release is doing, what its
analysis measured, how often releases rolled back; and for backups, what the other
controllers record here too.

Gauges are set from each decision (the status is the truth; these mirror it), so a
restarted operator shows the right values after its first look at each object.
"""

from __future__ import annotations

import contextlib
import math

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from chatops.api.release import ChatReleaseStatus, ReleasePhase
from chatops.release.model import Decision

PHASES: tuple[ReleasePhase, ...] = (
    "Progressing",
    "Paused",
    "Promoting",
    "Succeeded",
    "Degraded",
    "RolledBack",
    "Failed",
)
ROLLBACK_REASONS = frozenset(
    {
        "AnalysisFailed",
        "Aborted",
        "ProgressDeadlineExceeded",
        "HealthCheckFailed",
        "SmokeTestFailed",
        "CanaryUnavailable",
    }
)

release_phase = Gauge(
    "chatops_release_phase",
    "1 for the phase the ChatRelease is in, 0 for the others.",
    ["namespace", "name", "phase"],
)
release_step = Gauge(
    "chatops_release_step", "Index of the canary step in progress.", ["namespace", "name"]
)
release_weight = Gauge(
    "chatops_release_canary_weight",
    "Percent of new connections on the new version.",
    ["namespace", "name"],
)
analysis_value = Gauge(
    "chatops_release_analysis_value",
    "Last value each analysis metric returned.",
    ["namespace", "name", "metric", "component"],
)
rollbacks = Counter(
    "chatops_release_rollbacks", "Releases rolled back, by reason.", ["namespace", "name", "reason"]
)
look_seconds = Histogram(
    "chatops_release_look_seconds",
    "Time one look at a ChatRelease took (observe, decide, act).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def serve(port: int) -> None:
    """Expose `/metrics` on `port` (all interfaces: Prometheus scrapes the pod)."""
    start_http_server(port)


def record_release(namespace: str, name: str, decision: Decision) -> None:
    status: ChatReleaseStatus = decision.status
    for phase in PHASES:
        release_phase.labels(namespace, name, phase).set(1 if status.phase == phase else 0)
    release_step.labels(namespace, name).set(status.current_step or 0)
    release_weight.labels(namespace, name).set(status.canary_weight or 0)
    for m in status.analysis[-20:]:
        value = float(m.value) if m.value is not None else math.nan
        analysis_value.labels(namespace, name, m.metric, m.component).set(value)
    for event in decision.events:
        if event.reason in ROLLBACK_REASONS:
            rollbacks.labels(namespace, name, event.reason).inc()


def forget_release(namespace: str, name: str) -> None:
    """Drop the series of a deleted ChatRelease."""
    for phase in PHASES:
        with contextlib.suppress(KeyError):
            release_phase.remove(namespace, name, phase)
    for gauge in (release_step, release_weight):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
