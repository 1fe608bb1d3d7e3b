"""Delivering notifications in the background: the operator's one outbox and the worker
threads that empty it, reading each receiver's URL from its Secret at every attempt and
POSTing through `adapters.http.post_json` (which names the receiver, never the URL).

`offer` only renders and queues: it never waits on a receiver, so a receiver that is
down, slow or wrong never holds a release, a backup or a restore. An attempt that fails
is tried again after the outbox's backoff; one that fails every attempt is dropped, said
in the log, in `chatops_notifications_dropped_total` and in a Warning Event
`NotificationFailed` on the object.

Delivery is at most once per Event and in memory: notifications still queued when the
operator stops are dropped (counted, reason `shutdown`, and logged). A restarted operator
sends nothing again, since it posts no Event again for what its status already records
(killed between a ChatRelease's Events and the status they explain, the next look posts
and sends them again; a ChatBackup or ChatRecovery writes its status first, so such an
Event is lost instead). A receiver that answered too late for its attempt's timeout gets
the delivery again, with the same `id`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client

from chatops import telemetry
from chatops.adapters import http
from chatops.adapters.kube import Cluster
from chatops.events import Event
from chatops.notify import message
from chatops.notify.outbox import Outbox, Pending, Retry

WORKERS = 2
"""Threads attempting deliveries: a receiver that times out holds one, not the others."""
TIMEOUT = 5.0
"""Seconds an attempt waits for the receiver's answer."""
STOP_WAIT = 1.0
"""Seconds the operator's stop waits for each worker's attempt in flight."""
log = logging.getLogger("chatops.notify")

Send = Callable[[message.Delivery], str | None]
"""Attempts a delivery: None when the receiver answered 2xx, why not otherwise."""


class Dispatcher:
    """The outbox, a lock around it, and the workers; `send` makes one attempt."""

    def __init__(
        self, send: Send, outbox: Outbox | None = None, workers: int = WORKERS,
        on_dropped: Callable[[Pending, str], None] | None = None,
    ) -> None:
        self.outbox = outbox if outbox is not None else Outbox()
        self._send = send
        self._dropped = on_dropped or (lambda pending, reason: None)
        self._changed = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"chatops-notify-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> Dispatcher:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop the workers after the attempts in flight; what is queued is dropped."""
        with self._changed:
            self._stopping = True
            left = self.outbox.drain()
            self._changed.notify_all()
        for pending in left:
            self._drop(pending, "shutdown")
        for thread in self._threads:
            if thread.ident is not None:  # started; an attempt in flight is not waited
                thread.join(STOP_WAIT)  # for long: SIGTERM must end the operator soon

    def offer(self, deliveries: list[message.Delivery]) -> None:
        """Queue the deliveries, due now; any the full outbox refuses is dropped."""
        for delivery in deliveries:
            with self._changed:
                queued = not self._stopping and self.outbox.offer(delivery, time.monotonic())
                self._changed.notify()
            if not queued:
                self._drop(Pending(delivery, time.monotonic(), time.monotonic()), "queueFull")
        telemetry.notifications_queued.set(len(self.outbox))

    def _work(self) -> None:
        while True:
            with self._changed:
                pending = None
                while not self._stopping and pending is None:
                    now = time.monotonic()
                    pending = self.outbox.take(now)
                    if pending is None:
                        due = self.outbox.next_due()
                        self._changed.wait(None if due is None else max(due - now, 0.01))
                if self._stopping:
                    return
            assert pending is not None
            problem = self._attempt(pending.delivery)
            with self._changed:
                settled, after = self.outbox.settle(pending, problem, time.monotonic())
                self._changed.notify()
            self._record(settled, after)

    def _attempt(self, delivery: message.Delivery) -> str | None:
        try:
            return self._send(delivery)
        except Exception as err:  # a bug in an attempt must not end the worker
            log.exception("%s: attempt raised", delivery.label)
            return f"{delivery.label}: unexpected {type(err).__name__}"

    def _record(self, settled: str, pending: Pending) -> None:
        d = pending.delivery
        telemetry.notifications_queued.set(len(self.outbox))
        if settled == "delivered":
            seconds = time.monotonic() - pending.offered
            telemetry.record_notification("delivered", d.namespace, d.receiver, seconds)
            log.info("%s: %s delivered after %d failed attempt(s), %.1f s after its Event",
                     d.label, d.kind, pending.failed, seconds)
            return
        telemetry.record_notification("failed", d.namespace, d.receiver)
        if settled == "retry":
            log.info("%s: %s, attempt %d failed (%s); next in %.0f s", d.label, d.kind,
                     pending.failed, pending.problem, pending.due - time.monotonic())
        else:
            self._drop(pending, "attempts")

    def _drop(self, pending: Pending, reason: str) -> None:
        d = pending.delivery
        telemetry.record_notification(reason, d.namespace, d.receiver)
        log.warning("%s: %s dropped (%s) after %d attempt(s): %s", d.label, d.kind, reason,
                    pending.failed, pending.problem or "not attempted")
        try:
            self._dropped(pending, reason)
        except Exception:  # the API server is away too: the line above said it
            log.exception("%s: cannot post NotificationFailed", d.label)


def sender(api: client.ApiClient) -> Send:
    """Attempts against the real receiver: its URL from its Secret, then one POST."""
    cluster = Cluster(api)

    def send(d: message.Delivery) -> str | None:
        ref = d.url
        try:
            url = cluster.secret_value(d.namespace, ref.name, ref.key)
        except KeyError:
            return f"{d.label}: Secret {ref.name} has no key {ref.key}"
        except client.ApiException as err:
            return f"{d.label}: Secret {ref.name}: {err.status} {err.reason}"
        except (OSError, ValueError) as err:  # API server away, or not a text
            return f"{d.label}: Secret {ref.name}: {type(err).__name__}"
        return http.post_json(url.strip(), d.body, TIMEOUT, label=d.label)

    return send


def failure_event(api: client.ApiClient) -> Callable[[Pending, str], None]:
    """Tells a dropped notification on its object, as a Warning Event (not notified)."""
    cluster = Cluster(api)

    def post(pending: Pending, reason: str) -> None:
        if reason == "shutdown":  # the API server may be going too; the log has it
            return
        d = pending.delivery
        why = pending.problem or "the notification queue was full"
        cluster.post_event(d.ref, Event(
            "Warning", "NotificationFailed",
            f"{d.kind} not delivered to receiver {d.receiver} after {pending.failed} "
            f"attempt(s): {why}",
        ))

    return post


_running: Dispatcher | None = None
_retry = Retry()


def configure(retry: Retry) -> None:
    """The retry schedule of the dispatcher `start` makes (`chatops run --notify-retry`):
    set before kopf starts the operator."""
    global _retry
    _retry = retry


def start(api: client.ApiClient) -> None:
    """Start the operator's dispatcher (at startup); Events offered before are not sent."""
    global _running
    _running = Dispatcher(
        sender(api), Outbox(retry=_retry), on_dropped=failure_event(api)
    ).start()


def stop() -> None:
    global _running
    if _running is not None:
        _running.stop()
        _running = None


def offer(subject: Mapping[str, Any], event: Event) -> None:
    """Offer a posted Event to the object's receivers: rendered now, sent in the
    background. Nothing when no dispatcher runs (a CLI command posting an Event)."""
    running = _running
    if running is None or message.kind_of(str(subject.get("kind")), event) is None:
        return
    ids = (str(uuid.uuid4()) for _ in itertools.count())
    running.offer(message.deliveries(subject, event, message.now(), ids))
