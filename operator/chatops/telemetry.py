"""The operator's own metrics, on one `/metrics`: what each release is doing, what its
analysis measured, how often releases rolled back; and for backups, what the other
controllers record here too.

Gauges are set from each decision (the status is the truth; these mirror it), so a
restarted operator shows the right values after its first look at each object.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from chatops.api.release_status import ChatReleaseStatus, ReleasePhase

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


backup_last_success = Gauge(
    "chatops_backup_last_success_timestamp_seconds",
    "When the last good backup of the ChatBackup finished (Unix time).",
    ["namespace", "name"],
)
backup_duration = Gauge(
    "chatops_backup_duration_seconds", "Wall time of the last good backup.", ["namespace", "name"]
)
backup_size = Gauge(
    "chatops_backup_size_bytes", "Tarball bytes of the last good backup.", ["namespace", "name"]
)
backup_documents = Gauge(
    "chatops_backup_documents", "Documents in the last good backup.", ["namespace", "name"]
)
backup_failures = Counter(
    "chatops_backup_failures", "Backup runs that produced no backup.", ["namespace", "name"]
)


drill_last_verified = Gauge(
    "chatops_backup_last_verified_timestamp_seconds",
    "When a restore drill last proved a backup of the ChatBackup restorable (Unix time).",
    ["namespace", "name"],
)
drill_restore_seconds = Gauge(
    "chatops_backup_restore_seconds",
    "Restore time (RTO) the last successful restore drill measured.",
    ["namespace", "name"],
)
drill_failures = Counter(
    "chatops_backup_drill_failures", "Restore drills that failed.", ["namespace", "name"]
)


def record_drill(namespace: str, name: str, finished: float, seconds: float | None) -> None:
    """A successful restore drill: when it ended, and how long the restore took."""
    drill_last_verified.labels(namespace, name).set(finished)
    if seconds is not None:
        drill_restore_seconds.labels(namespace, name).set(seconds)
    drill_failures.labels(namespace, name)  # the series exists before the first failure


def record_drill_failure(namespace: str, name: str) -> None:
    drill_failures.labels(namespace, name).inc()


def record_backup(
    namespace: str,
    name: str,
    finished: float,
    seconds: float | None,
    size: int | None,
    documents: int | None,
) -> None:
    """A good backup: its time, duration, size and documents."""
    backup_last_success.labels(namespace, name).set(finished)
    for gauge, value in (
        (backup_duration, seconds),
        (backup_size, size),
        (backup_documents, documents),
    ):
        if value is not None:
            gauge.labels(namespace, name).set(value)
    backup_failures.labels(namespace, name)  # the series exists before the first failure


def record_backup_failure(namespace: str, name: str) -> None:
    backup_failures.labels(namespace, name).inc()


class Health:
    """What `/healthz` and `/readyz` answer. A standby replica is alive and ready; the
    leader is alive while its event loop keeps beating (a hung loop gets restarted)."""

    STALE = 30.0
    """Seconds without a beat after which the leader counts as hung."""

    def __init__(self) -> None:
        self.state = "starting"
        self.last_beat = time.monotonic()

    def standing_by(self) -> None:
        self.state = "standby"

    def leading(self) -> None:
        self.state, self.last_beat = "leading", time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def alive(self) -> bool:
        return self.state != "leading" or time.monotonic() - self.last_beat < self.STALE

    def ready(self) -> bool:
        return self.state in ("standby", "leading")


health = Health()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif self.path == "/healthz":
            ok = health.alive()
            self._reply(200 if ok else 503, f"{health.state}\n".encode())
        elif self.path == "/readyz":
            ok = health.ready()
            self._reply(200 if ok else 503, f"{health.state}\n".encode())
        else:
            self._reply(404, b"not found\n")

    def _reply(self, code: int, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would fill the log


def serve(port: int) -> ThreadingHTTPServer:
    """Serve `/metrics`, `/healthz` and `/readyz` on `port` (all interfaces: the kubelet
    and Prometheus reach the pod) in a background thread."""
    server = ThreadingHTTPServer(("", port), _Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def record_release(
    namespace: str, name: str, status: ChatReleaseStatus, reasons: Iterable[str]
) -> None:
    """Mirror a release's new `status`; `reasons` of the Events its look posted."""
    posted = set(reasons)
    for phase in PHASES:
        release_phase.labels(namespace, name, phase).set(1 if status.phase == phase else 0)
    release_step.labels(namespace, name).set(status.current_step or 0)
    release_weight.labels(namespace, name).set(status.canary_weight or 0)
    for m in status.analysis[-20:]:
        value = float(m.value) if m.value is not None else math.nan
        analysis_value.labels(namespace, name, m.metric, m.component).set(value)
    for reason in ROLLBACK_REASONS:  # every series exists from the start, so the first
        counted = rollbacks.labels(namespace, name, reason)  # rollback shows in increase()
        if reason in posted:
            counted.inc()


def forget_release(namespace: str, name: str) -> None:
    """Drop the series of a deleted ChatRelease."""
    for phase in PHASES:
        with contextlib.suppress(KeyError):
            release_phase.remove(namespace, name, phase)
    for gauge in (release_step, release_weight):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    for reason in ROLLBACK_REASONS:
        with contextlib.suppress(KeyError):
            rollbacks.remove(namespace, name, reason)
