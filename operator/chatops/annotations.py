"""Every annotation and label key chatops reads or writes on objects, in one place.

A key written as a literal in two modules is a key that can drift; the CLI, the
controllers and the tests import them from here.

Manual requests (`PROMOTE`, `ABORT`, `RETRY`, `BACKUP_NOW`) carry a value unique to
each request (`chatops promote` writes `step@<RFC 3339 time with microseconds>`), and a
controller removes one only if it still has the value it acted on (compare-and-remove),
so a second request written meanwhile is never lost. A bare value (`step`, `full`,
`true`, empty) written by hand or by GitOps works too.
"""

from __future__ import annotations

import datetime

from chatops.api.common import GROUP

PROMOTE = f"{GROUP}/promote"
"""On a ChatRelease: `step` or `full` (optionally `@<time>`): promote one step, or all."""
ABORT = f"{GROUP}/abort"
"""On a ChatRelease: roll the release in flight back (any value)."""
RETRY = f"{GROUP}/retry"
"""On a ChatRelease: release again a version that was rolled back (any value)."""
BACKUP_NOW = f"{GROUP}/backup-now"
"""On a ChatBackup: one run now (any value; `chatops backup-now` sets the time)."""
QUIESCED_BY = f"{GROUP}/quiesced-by"
"""On a Deployment a ChatRecovery stopped: which one (`namespace/name`)."""
REVISION = f"{GROUP}/revision"
"""Label and annotation of a release's Deployments and pods: the revision they run."""
RELEASED_FROM = f"{GROUP}/released-from"
"""Label on a Deployment or Service a deleted ChatRelease left serving: the release's
name. A ChatRelease of that name created again adopts it, and the label goes."""


def request(what: str, now: datetime.datetime) -> str:
    """A manual request's value, unique per request: `what@<RFC 3339, microseconds>`."""
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{what}@{stamp}"


def what(value: str) -> str:
    """What a request asks for, without its stamp (`step@2026-…` → `step`)."""
    return value.split("@", 1)[0].strip()
