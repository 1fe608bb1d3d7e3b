"""The archiver's decisions, pure: where to resume tailing the oplog, when the oplog has
rolled past the archive (a gap), when what has arrived is uploaded, and what the status
says.

The archive's truth is S3: the last complete slice's last op is where the archive
stands, whatever the status or a previous process remembered. So a restarted (or
failed-over) archiver reads the oplog from exactly there: no op is skipped, none is
archived twice. If the oplog no longer holds that position, the ops between it and the
oplog's oldest are lost: a `Gap`, reported once (by its start), after which the archive
starts again from a base backup taken after the gap.
"""

from __future__ import annotations

import dataclasses
import datetime

from chatops.api.common import now_rfc3339
from chatops.api.pitr import ArchiveGap, ArchiveStatus
from chatops.backup import pitr
from chatops.backup.oplog import OpTime
from chatops.backup.pitr import Base, Slice


@dataclasses.dataclass(frozen=True)
class Observed:
    """What one look at the archive saw."""

    slices: tuple[Slice, ...]
    """Complete slices of this ChatBackup."""
    bases: tuple[Base, ...]
    """Complete point-in-time base backups of this ChatBackup."""
    oplog: tuple[OpTime, OpTime] | None
    """The oplog's first and last position; None when the server keeps none."""


@dataclasses.dataclass(frozen=True)
class Tail:
    """Read the oplog after `after` (the previous of the next slice)."""

    after: OpTime


@dataclasses.dataclass(frozen=True)
class Wait:
    """Nothing to tail from yet; `reason` says what is awaited."""

    reason: str
    state: str = "Waiting"


@dataclasses.dataclass(frozen=True)
class Lost:
    """The oplog rolled past the archive: ops after `after` and before `oldest` are gone.
    `then` is what to do next: tail from a base after the gap, or wait for one."""

    after: OpTime
    oldest: OpTime
    then: Tail | Wait


def position(seen: Observed) -> OpTime | None:
    """Where the archive stands: the furthest its slices carry it from any base; the
    newest base's consistent time only when no slice follows one. A base backup newer
    than the archive's end (taken while it lagged, or while the operator was down) is no
    place to resume from while the oplog still holds the end: the ops between would be in
    no slice, and no restore could target a time between (when the oplog lost them,
    `resume` says it is a gap and starts from such a base)."""
    carried = [
        end for base in seen.bases
        for chain, end in [pitr.chain(base.consistent, seen.slices)] if chain
    ]
    if carried:
        return max(carried)
    return seen.bases[-1].consistent if seen.bases else None


def resume(seen: Observed) -> Tail | Wait | Lost:
    """Where to tail from, given what S3 and the oplog hold now."""
    if seen.oplog is None:
        return Wait(
            "the server keeps no oplog (local.oplog.rs): point-in-time recovery needs a "
            "replica set", "Failed",
        )
    first, _ = seen.oplog
    at = position(seen)
    if at is None:
        return Wait("waiting for the first point-in-time base backup to start from")
    if first <= at:
        return Tail(at)
    after_gap = [b for b in seen.bases if b.consistent >= first]
    then: Tail | Wait
    if after_gap:
        then = Tail(min(after_gap, key=lambda b: b.consistent).consistent)
    else:
        then = Wait(
            "the oplog rolled past the archive; waiting for a new base backup to start "
            "again from", "Gap",
        )
    return Lost(at, first, then)


def flush_due(
    buffered: int, buffered_bytes: int, oldest_age: float, flush_seconds: float,
    max_bytes: int,
) -> bool:
    """Upload what has arrived: it waited flushInterval, or reached the size cap."""
    if buffered == 0:
        return False
    return oldest_age >= flush_seconds or buffered_bytes >= max_bytes


def with_gap(
    status: ArchiveStatus, lost: Lost, now: datetime.datetime
) -> tuple[ArchiveStatus, bool]:
    """The status with the gap recorded, and whether it is new (a gap is one per start:
    found again after a restart, it is not told twice)."""
    if any(g.start_ts.t == lost.after.t and g.start_ts.i == lost.after.i for g in status.gaps):
        return status, False
    gap = ArchiveGap(
        start=pitr.rfc3339(lost.after), start_ts=pitr.wire(lost.after),
        end=pitr.rfc3339(lost.oldest), end_ts=pitr.wire(lost.oldest),
        detected_at=now_rfc3339(now),
    )
    return status.model_copy(update={"gaps": [*status.gaps, gap][-20:]}), True


def resumed(status: ArchiveStatus, base: Base) -> ArchiveStatus:
    """The newest gap marked as closed by the base backup the archive started from."""
    if not status.gaps or status.gaps[-1].resumed_from is not None:
        return status
    last = status.gaps[-1].model_copy(update={"resumed_from": base.id})
    return status.model_copy(update={"gaps": [*status.gaps[:-1], last]})


def gap_message(lost: Lost) -> str:
    return (
        f"the oplog rolled past the archive: ops from {lost.after} "
        f"to {lost.oldest} are lost; no restore can target a "
        "time between them"
    )


def open_gap(status: ArchiveStatus | None) -> ArchiveGap | None:
    """The newest gap, while no base backup after it has let the archive start again."""
    if status is None or not status.gaps or status.gaps[-1].resumed_from is not None:
        return None
    return status.gaps[-1]
