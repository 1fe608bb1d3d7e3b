"""`spec.notifications` of the three kinds: where to tell what happened, in which format,
and about what.

A receiver is named, its URL is in a Secret of the object's namespace (a Slack
incoming-webhook URL is itself the credential), and `on` picks the kinds of happening it
hears about, each kind the name of a moment a person cares about, from a closed list per
resource: the API server refuses a release receiver listening for `BackupFailed`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic.config import JsonDict

from chatops.api.common import Model, Name, SecretKeyRef

ReleaseKind = Literal["Started", "Step", "Promoted", "RolledBack"]
BackupKind = Literal["Failed", "Missed", "PointInTimeGap"]
RecoveryKind = Literal["Succeeded", "Failed"]
RELEASE_KINDS: tuple[ReleaseKind, ...] = ("Started", "Step", "Promoted", "RolledBack")
BACKUP_KINDS: tuple[BackupKind, ...] = ("Failed", "Missed", "PointInTimeGap")
RECOVERY_KINDS: tuple[RecoveryKind, ...] = ("Succeeded", "Failed")
MAX_RECEIVERS = 10
_SET: JsonDict = {"x-kubernetes-list-type": "set"}


class Notification(Model):
    """One receiver of an object's notifications."""

    name: Name
    """Names the receiver in logs, metrics and Events (its URL never is)."""
    format: Literal["json", "slack"] = "json"
    """`json`: the versioned chatops payload (`apiVersion: chatops.dev/notification/v1`);
    `slack`: a Slack incoming-webhook message (`text` and `blocks`)."""
    url_secret_ref: SecretKeyRef
    """The key of a Secret in this namespace holding the receiver's URL, read at each
    attempt (a rotated Secret applies to the next one)."""


class ReleaseNotification(Notification):
    on: list[ReleaseKind] = Field(default_factory=lambda: list(RELEASE_KINDS), max_length=4,
                                json_schema_extra=_SET)
    """What it is told: Started, Step (a canary weight set, a blue-green switch),
    Promoted, RolledBack (when the rollback begins, saying why). Default: all."""


class BackupNotification(Notification):
    on: list[BackupKind] = Field(default_factory=lambda: list(BACKUP_KINDS), max_length=3,
                                json_schema_extra=_SET)
    """What it is told: Failed (a run failed), Missed (a scheduled run did not start in
    time, or runs passed while the operator was down), PointInTimeGap (the oplog archive
    lost ops). Default: all."""


class RecoveryNotification(Notification):
    on: list[RecoveryKind] = Field(default_factory=lambda: list(RECOVERY_KINDS), max_length=2,
                                json_schema_extra=_SET)
    """What it is told: Succeeded, Failed (the restore ended so). Default: both."""


_BY_NAME: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
ReleaseReceivers = Annotated[
    list[ReleaseNotification], Field(max_length=MAX_RECEIVERS, json_schema_extra=_BY_NAME)
]
BackupReceivers = Annotated[
    list[BackupNotification], Field(max_length=MAX_RECEIVERS, json_schema_extra=_BY_NAME)
]
RecoveryReceivers = Annotated[
    list[RecoveryNotification], Field(max_length=MAX_RECEIVERS, json_schema_extra=_BY_NAME)
]
