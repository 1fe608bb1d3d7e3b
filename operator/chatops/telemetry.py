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
COST_FIGURES = ("requests", "failed_requests", "websockets_moved", "websockets_dropped")
release_cost = {
    figure: Gauge(
        f"chatops_release_cost_{figure}",
        f"What the latest release cost its users ({figure.replace('_', ' ')}), counted by "
        "Prometheus over its window; absent while unknown.",
        ["namespace", "name", "revision"],
    )
    for figure in COST_FIGURES
}
release_cost_final = Gauge(
    "chatops_release_cost_final",
    "1 once the latest release's cost figures are final.",
    ["namespace", "name", "revision"],
)
drain_wave = Gauge(
    "chatops_release_drain_wave",
    "Waves of the drain in progress begun so far (0: none draining).",
    ["namespace", "name"],
)
drain_paused = Gauge(
    "chatops_release_drain_paused",
    "1 while the drain holds (a reconnect storm, Prometheus unreachable).",
    ["namespace", "name"],
)
_analysis_series: dict[tuple[str, str], set[tuple[str, str]]] = {}
"""The (metric, component) series of `analysis_value` each release has, so that they go
with the release: a metric's name comes from the spec, and is not known at deletion."""
_cost_revision: dict[tuple[str, str], str] = {}
"""The revision whose cost each release's series show now, so the series of the
previous one can be removed (one release's figures per ChatRelease)."""

look_seconds = Histogram(
    "chatops_release_look_seconds",
    "Time one look at a ChatRelease took (observe, decide, act).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
sweep_queries = Counter(
    "chatops_sweep_queries",
    "Grouped Prometheus queries the sweep asked (one per metric template and Prometheus, "
    "for all releases in an analysis).",
)
sweep_breaches = Counter(
    "chatops_sweep_breaches",
    "Releases the sweep found out of bounds between rounds, woken to measure at once.",
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


archive_last_op = Gauge(
    "chatops_pitr_last_archived_timestamp_seconds",
    "Time of the newest op in the ChatBackup's oplog archive (Unix time): "
    "time() minus it is the seconds since the last archived op.",
    ["namespace", "name"],
)
archive_lag = Gauge(
    "chatops_pitr_archive_lag_seconds",
    "Seconds between the newest op in the oplog and the newest op archived.",
    ["namespace", "name"],
)
archive_rpo = Gauge(
    "chatops_pitr_unarchived_seconds",
    "Seconds the oldest op read from the oplog but not yet uploaded has waited (0 when "
    "every op read is in S3): what a loss of the database now would lose (RPO).",
    ["namespace", "name"],
)
oplog_window = Gauge(
    "chatops_pitr_oplog_window_seconds",
    "Seconds between the oldest and the newest op the oplog holds: how long the archive "
    "may fall behind (the operator be down) before ops are lost.",
    ["namespace", "name"],
)
archive_gaps = Counter(
    "chatops_pitr_gaps", "Gaps the archive found (the oplog rolled past it).",
    ["namespace", "name"],
)
_pending: dict[tuple[str, str], float | None] = {}


def record_oplog(namespace: str, name: str, first: float, last: float) -> None:
    oplog_window.labels(namespace, name).set(max(0.0, last - first))


def record_archived(namespace: str, name: str, archived: float, newest: float) -> None:
    """The newest archived op's time, and the newest op's in the oplog (Unix seconds)."""
    archive_last_op.labels(namespace, name).set(archived)
    archive_lag.labels(namespace, name).set(max(0.0, newest - archived))
    archive_gaps.labels(namespace, name)  # the series exists before the first gap


def record_pending(namespace: str, name: str, oldest: float | None) -> None:
    """When the oldest op waiting for upload was written (None: nothing waits); the RPO
    gauge is computed from it at every scrape."""
    key = (namespace, name)
    if key not in _pending:

        def waited() -> float:
            since = _pending.get(key)
            return 0.0 if since is None else max(0.0, time.time() - since)

        archive_rpo.labels(namespace, name).set_function(waited)
    _pending[key] = oldest


def record_gap(namespace: str, name: str) -> None:
    archive_gaps.labels(namespace, name).inc()


notifications_delivered = Counter(
    "chatops_notifications_delivered", "Notifications a receiver answered 2xx to.",
    ["namespace", "receiver"],
)
notification_attempts_failed = Counter(
    "chatops_notification_attempts_failed",
    "Attempts at a notification that failed (an answer not 2xx, a timeout, no Secret); "
    "each is retried after a backoff until its last.",
    ["namespace", "receiver"],
)
notifications_dropped = Counter(
    "chatops_notifications_dropped",
    "Notifications never delivered: every attempt failed (attempts), the queue was full "
    "(queueFull), or the operator stopped with them queued (shutdown).",
    ["namespace", "receiver", "reason"],
)
notifications_queued = Gauge(
    "chatops_notifications_queued", "Notifications waiting for their next attempt."
)
notification_delivery = Histogram(
    "chatops_notification_delivery_seconds",
    "From a notification's Event to its receiver's 2xx, retries included.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)


def record_notification(
    outcome: str, namespace: str, receiver: str, seconds: float | None = None
) -> None:
    """One notification's `outcome`: delivered (after `seconds`), failed (an attempt),
    or dropped for a reason (`queueFull`, `attempts`, `shutdown`)."""
    if outcome == "delivered":
        notifications_delivered.labels(namespace, receiver).inc()
        notification_delivery.observe(seconds or 0.0)
    elif outcome == "failed":
        notification_attempts_failed.labels(namespace, receiver).inc()
    else:
        notifications_dropped.labels(namespace, receiver, outcome).inc()


class Health:
    """What `/healthz` and `/readyz` answer: alive means working. A replica is working
    while the API server answers its credentials (reachability checks it every few
    seconds) and, once it leads, while its event loop keeps beating; a replica that
    cannot read its credentials, reach the API server or get past its authentication is
    not alive, and its Deployment restarts it. A standby replica that works is alive
    and ready."""

    STALE = 30.0
    """Seconds without a beat, or without an answer of the API server, after which the
    replica counts as not working (a hung loop, a check that hangs)."""

    def __init__(self) -> None:
        self.state = "starting"
        self.last_beat = time.monotonic()
        self.last_answer: float | None = None
        self.unreachable: str | None = "the API server not asked yet"

    def standing_by(self) -> None:
        self.state = "standby"

    def leading(self) -> None:
        self.state, self.last_beat = "leading", time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def answered(self) -> None:
        """The API server answered a request made with this replica's credentials."""
        self.last_answer, self.unreachable = time.monotonic(), None

    def not_answered(self, why: str) -> None:
        """It did not (`why` names the failure and never a credential)."""
        self.unreachable = why

    def trouble(self) -> str | None:
        """Why this replica is not working; None while it is."""
        now = time.monotonic()
        if self.unreachable is not None:
            return self.unreachable
        if self.last_answer is None or now - self.last_answer >= self.STALE:
            return f"no answer of the API server for {self.STALE:.0f} s"
        if self.state == "leading" and now - self.last_beat >= self.STALE:
            return f"the event loop has not turned for {self.STALE:.0f} s"
        return None

    def alive(self) -> bool:
        return self.trouble() is None

    def ready(self) -> bool:
        return self.state in ("standby", "leading") and self.alive()

    def describe(self) -> str:
        """The probes' body: the state, and what is wrong if anything is."""
        trouble = self.trouble()
        return f"{self.state}\n" if trouble is None else f"{self.state}: {trouble}\n"


health = Health()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif self.path == "/healthz":
            self._reply(200 if health.alive() else 503, health.describe().encode())
        elif self.path == "/readyz":
            self._reply(200 if health.ready() else 503, health.describe().encode())
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
        _analysis_series.setdefault((namespace, name), set()).add((m.metric, m.component))
    for reason in ROLLBACK_REASONS:  # every series exists from the start, so the first
        counted = rollbacks.labels(namespace, name, reason)  # rollback shows in increase()
        if reason in posted:
            counted.inc()
    drain = status.scale_down
    drain_wave.labels(namespace, name).set(drain.wave if drain is not None else 0)
    drain_paused.labels(namespace, name).set(1 if drain is not None and drain.paused else 0)
    _record_cost(namespace, name, status)


def _record_cost(namespace: str, name: str, status: ChatReleaseStatus) -> None:
    """The cost of the release in flight, else of the latest in history; a figure not
    known is no series (never a zero)."""
    revision, cost = status.canary_revision, status.cost
    if cost is None:
        entry = next((e for e in reversed(status.history) if e.cost is not None), None)
        revision, cost = (entry.revision, entry.cost) if entry is not None else (None, None)
    key = (namespace, name)
    if _cost_revision.get(key) not in (None, revision):
        _forget_cost(namespace, name)
    if cost is None or revision is None:
        return
    _cost_revision[key] = revision
    for figure, gauge in release_cost.items():
        value = getattr(cost, figure)
        if value is None:
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name, revision)
        else:
            gauge.labels(namespace, name, revision).set(value)
    release_cost_final.labels(namespace, name, revision).set(1 if cost.final else 0)


def _forget_cost(namespace: str, name: str) -> None:
    revision = _cost_revision.pop((namespace, name), None)
    if revision is None:
        return
    for gauge in (*release_cost.values(), release_cost_final):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name, revision)


def forget_release(namespace: str, name: str) -> None:
    """Drop the series of a deleted ChatRelease."""
    for phase in PHASES:
        with contextlib.suppress(KeyError):
            release_phase.remove(namespace, name, phase)
    _forget_cost(namespace, name)
    for gauge in (release_step, release_weight, drain_wave, drain_paused):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    for reason in ROLLBACK_REASONS:
        with contextlib.suppress(KeyError):
            rollbacks.remove(namespace, name, reason)
    for metric, component in _analysis_series.pop((namespace, name), set()):
        with contextlib.suppress(KeyError):
            analysis_value.remove(namespace, name, metric, component)
