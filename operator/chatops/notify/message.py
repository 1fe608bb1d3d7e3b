"""What a receiver is told: which Events are notifications (reason → kind), and the body
each format sends. Pure: the same object, Event and time always give the same bodies.

The JSON payload (`format: json`) is versioned: `apiVersion: chatops.dev/notification/v1`
keeps its fields and their meaning; a change that would break a receiver is a v2.

    {"apiVersion": "chatops.dev/notification/v1",
     "id": "<uuid: the same on every attempt, for a receiver to drop a repeat>",
     "kind": "Promoted",                      # the `on` kind
     "time": "2026-12-04T18:50:00.123456Z",   # when the Event was posted
     "receiver": "<spec.notifications[].name>",
     "object": {"apiVersion": "chatops.dev/v1alpha1", "kind": "ChatRelease",
                "namespace": "shop", "name": "chat", "uid": "…"},
     "event": {"type": "Normal", "reason": "Promoted", "message": "…"},
     "release": {"revision": "…", "phase": "Promoting", "version": "chat-api:1.1",
                 "stableRevision": "…", "step": 1, "steps": 7, "weight": 10}}

`release` is there for a ChatRelease only; `step`, `steps` and `weight` for kind Step of
a canary only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from chatops import clock
from chatops.api.common import SecretKeyRef
from chatops.api.notifications import (
    BackupNotification,
    RecoveryNotification,
    ReleaseNotification,
)
from chatops.events import Event

API_VERSION = "chatops.dev/notification/v1"

KINDS: dict[str, dict[str, str]] = {
    "ChatRelease": {
        "ReleaseStarted": "Started",
        "WeightSet": "Step",
        "TrafficSwitched": "Step",
        "Promoted": "Promoted",
    },
    "ChatBackup": {
        "BackupFailed": "Failed",
        "BackupSkipped": "Missed",
        "MissedSchedules": "Missed",
        "PointInTimeGap": "PointInTimeGap",
    },
    "ChatRecovery": {"RecoverySucceeded": "Succeeded", "RecoveryFailed": "Failed"},
}
"""Event reason → notification kind, per resource: every other Event is not one, but
the Event a release's rollback begins with (`transitions.abort`), whatever its reason
(AnalysisFailed, Aborted, a failed webhook…), which names the revision it rolls back in
its details (`rolledBack`): it is kind RolledBack."""
Receiver = ReleaseNotification | BackupNotification | RecoveryNotification
_RECEIVERS: dict[str, TypeAdapter[list[Any]]] = {
    "ChatRelease": TypeAdapter(list[ReleaseNotification]),
    "ChatBackup": TypeAdapter(list[BackupNotification]),
    "ChatRecovery": TypeAdapter(list[RecoveryNotification]),
}
SLACK_TEXT = 2900
"""Characters of a message in a Slack section (Slack refuses a text over 3000)."""
_TITLES = {"Step": "step", "RolledBack": "rolled back", "PointInTimeGap": "point-in-time gap"}


@dataclass(frozen=True)
class Delivery:
    """One body for one receiver, as rendered when the Event was posted."""

    id: str
    kind: str
    namespace: str
    receiver: str
    url: SecretKeyRef
    body: Mapping[str, Any]
    ref: Mapping[str, Any]
    """apiVersion, kind and metadata of the object, to post an Event on if it fails."""

    @property
    def label(self) -> str:
        """How logs, errors and Events name the receiver: never by its URL."""
        meta = self.ref["metadata"]
        return f"notification {self.receiver} of {self.ref['kind']} {self.namespace}/{meta['name']}"


def kind_of(resource: str, event: Event) -> str | None:
    """The notification kind of `event` on this resource, if it is one."""
    if resource == "ChatRelease" and "rolledBack" in event.details:
        return "RolledBack"
    return KINDS.get(resource, {}).get(event.reason)


def receivers(subject: Mapping[str, Any]) -> list[Receiver]:
    """The object's `spec.notifications` (the API server checked their shape: a list it
    did not is ignored, never a failed look)."""
    adapter = _RECEIVERS.get(str(subject.get("kind")))
    raw = (subject.get("spec") or {}).get("notifications") or []
    if adapter is None or not raw:
        return []
    try:
        return list(adapter.validate_python(raw))
    except ValidationError:
        return []


def deliveries(
    subject: Mapping[str, Any], event: Event, at: str, ids: Iterable[str]
) -> list[Delivery]:
    """A delivery per receiver of the object listening for the Event's kind, stamped
    `at` (RFC 3339), each with the next of `ids` (one per delivery, kept by every
    attempt at it)."""
    kind = kind_of(str(subject.get("kind")), event)
    if kind is None:
        return []
    meta = subject["metadata"]
    ref = {"apiVersion": subject.get("apiVersion"), "kind": subject["kind"], "metadata": meta}
    out = []
    for receiver, id_ in zip(
        (r for r in receivers(subject) if kind in r.on), ids, strict=False
    ):
        payload = json_payload(subject, event, kind, receiver.name, at, id_)
        body = payload if receiver.format == "json" else slack(payload)
        out.append(Delivery(id_, kind, meta["namespace"], receiver.name,
                            receiver.url_secret_ref, body, ref))
    return out


def json_payload(
    subject: Mapping[str, Any], event: Event, kind: str, receiver: str, at: str, id_: str
) -> dict[str, Any]:
    """The `chatops.dev/notification/v1` body (see the module's docstring)."""
    meta = subject["metadata"]
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "id": id_,
        "kind": kind,
        "time": at,
        "receiver": receiver,
        "object": {
            "apiVersion": subject.get("apiVersion"),
            "kind": subject["kind"],
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta.get("uid"),
        },
        "event": {"type": event.type, "reason": event.reason, "message": event.message},
    }
    if subject["kind"] == "ChatRelease":
        body["release"] = _release(subject.get("status") or {}, event)
    return body


def _release(status: Mapping[str, Any], event: Event) -> dict[str, Any]:
    """The release facts of the status the Event explains: the revision it is about
    (rolled back, in flight, or just promoted), the phase, the canary step."""
    revision = (
        event.details.get("rolledBack") or status.get("canaryRevision")
        or status.get("stableRevision")
    )
    facts: dict[str, Any] = {
        "revision": revision,
        "phase": status.get("phase"),
        "version": status.get("canaryVersion") or status.get("stableVersion"),
        "stableRevision": status.get("stableRevision"),
    }
    for key in ("step", "steps", "weight"):
        if key in event.details:
            facts[key] = event.details[key]
    return {k: v for k, v in facts.items() if v is not None}


def slack(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message of the payload: `text` (the notification's
    fallback and what a phone shows) and `blocks` (a section and a context line)."""
    obj, event = payload["object"], payload["event"]
    mark = ":warning:" if event["type"] == "Warning" else ":white_check_mark:"
    title = _TITLES.get(payload["kind"], payload["kind"].lower())
    what = f"{obj['kind']} {obj['namespace']}/{obj['name']}"
    text = f"{mark} {what}: {title}. {event['message']}"
    context = [f"reason *{event['reason']}*"]
    release = payload.get("release") or {}
    context += [f"{k} `{release[k]}`" for k in ("revision", "phase", "step", "weight")
                if k in release]
    context.append(payload["time"])
    return {
        "text": text,
        "blocks": [
            {"type": "section",
             "text": {"type": "mrkdwn",
                      "text": f"{mark} *{what}*: {title}\n{event['message'][:SLACK_TEXT]}"}},
            {"type": "context",
             "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
        ],
    }


def now() -> str:
    """The time a notification is stamped with: when its Event was posted."""
    return clock.rfc3339(clock.now())
