"""A ChatRecovery's `spec.pointInTime`, step by step:

- Resolve: the target as an oplog position (an RFC 3339 time, inclusive to its second;
  or the first start of a ChatRelease revision, exclusive), the newest base backup not
  after it and the chain of slices through it (`backup.pitr.plan`), and every one of
  those slices read and checked against its manifest (size, sha256, count) — all before
  the app is quiesced or the database touched. A target in a gap, before the oldest base
  or after the newest archived op is refused naming the field.
- Restore (the existing step) restores the base backup, checked against its manifest.
- Replay: the slices' ops after the base's consistent time and not after the target,
  replayed idempotently (`backup.oplog.replay`): interrupted, it runs again from its
  first op to the same result.
- Verify: every document the replayed ops touched is as the last of them left it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from chatops import clock
from chatops.adapters import oplog as oplog_io
from chatops.adapters.kube import Cluster
from chatops.adapters.mongo import Mongo
from chatops.api.pitr import RecoveredPointInTime, RecoveryPointInTime
from chatops.api.recovery import RestoredBackup
from chatops.api.release_status import ChatReleaseStatus
from chatops.backup import credentials, oplog, pitr, slices
from chatops.backup.oplog import OpTime
from chatops.errors import InvalidSpec, VerificationFailed


class Stopped(Exception):
    """The operator stops (or the ChatRecovery is deleted) in the middle of a replay."""


def target(
    cluster: Cluster, namespace: str, resource: str, wanted: RecoveryPointInTime
) -> tuple[OpTime, str, str]:
    """(the last position to replay, the time as RFC 3339, the field it came from)."""
    if wanted.time is not None:
        at = clock.parse(wanted.time)
        return oplog.latest_at(at), clock.rfc3339(at), "spec.pointInTime.time"
    ref = wanted.release_revision
    assert ref is not None  # the schema requires one of the two
    field = "spec.pointInTime.releaseRevision"
    body = cluster.get("chatreleases", namespace, ref.release)
    if body is None:
        raise InvalidSpec(resource, field, f"ChatRelease {namespace}/{ref.release} does not exist")
    status = ChatReleaseStatus.model_validate(body.get("status") or {})
    starts = [h.started_at for h in status.history if h.revision == ref.revision and h.started_at]
    if status.canary_revision == ref.revision and status.release_started_at:
        starts.append(status.release_started_at)
    if not starts:
        known = sorted({h.revision for h in status.history})
        raise InvalidSpec(
            resource, field,
            f"ChatRelease {namespace}/{ref.release} has no start of revision {ref.revision} "
            f"in its status.history (revisions there: {', '.join(known) or 'none'})",
        )
    first = min(clock.parse(s) for s in starts)
    return pitr.before(first), clock.rfc3339(first), field


def resolve(
    cluster: Cluster, resource: str, namespace: str, plan: Any, wanted: RecoveryPointInTime,
) -> tuple[RestoredBackup, RecoveredPointInTime, str]:
    """The base backup and the slices for the target, every slice verified; what the
    status records, and the step's message."""
    until, when, field = target(cluster, namespace, resource, wanted)
    store = credentials.store(plan.storage, plan.secrets)
    look = slices.listing(store, plan.prefix, plan.owner_uid or "")
    asked = f"{when} ({field})"
    try:
        chosen = pitr.plan(look.bases, look.slices, until, asked)
    except pitr.Refused as refused:
        raise InvalidSpec(resource, field, str(refused)) from None
    ops = 0
    for piece in chosen.slices:
        raw = slices.read(store, piece)
        ops += sum(1 for e in oplog.entries(raw) if chosen.after < _ts(e) <= until)
    stored = next(b for b in look.backups if b.id == chosen.base.id)
    assert stored.manifest is not None
    backup = RestoredBackup(
        id=stored.id, key=stored.manifest.tarball.key, sha256=stored.manifest.tarball.sha256
    )
    recovered = RecoveredPointInTime(
        target=when, until_ts=pitr.wire(until), base=stored.id,
        base_consistent_time=pitr.rfc3339(chosen.base.consistent),
        slices=[s.key for s in chosen.slices], ops=ops,
    )
    message = (
        f"to {when}: base backup {stored.id} (consistent at "
        f"{pitr.rfc3339(chosen.base.consistent)}), then {ops} op(s) from {len(chosen.slices)} "
        "slice(s), each checked against its manifest"
    )
    return backup, recovered, message


def _ts(entry: oplog.Entry) -> OpTime:
    return OpTime(entry.ts.t, entry.ts.i)


def _slices(plan: Any, keys: Sequence[str]) -> tuple[Any, list[pitr.Slice]]:
    """The recorded slices, found again in S3 (a restart re-reads them)."""
    store = credentials.store(plan.storage, plan.secrets)
    look = slices.listing(store, plan.prefix, plan.owner_uid or "")
    by_key = {s.key: s for s in look.slices}
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise VerificationFailed(
            f"slice {missing[0]} is gone from S3 since the restore was planned"
        )
    return store, [by_key[k] for k in keys]


def _entries(
    store: Any, pieces: Sequence[pitr.Slice], after: OpTime, until: OpTime, stopped: Any
) -> Iterator[oplog.Entry]:
    for piece in pieces:
        for entry in oplog.entries(slices.read(store, piece)):
            if stopped():
                raise Stopped()
            if after < _ts(entry) <= until:
                yield entry


def _namespaces(databases: Sequence[str] | None) -> oplog.Namespaces:
    return oplog.Namespaces(frozenset(databases) if databases else None)


def replay(
    plan: Any, recovered: RecoveredPointInTime, after: OpTime, stopped: Any, token: str = ""
) -> int:
    """Replay the recorded slices' ops in (after, until] into the target; the ops
    applied. `token` names the replay's journal: the same across restarts of one
    recovery, so a restarted one finishes the batch a kill interrupted."""
    until = pitr.at(recovered.until_ts)
    store, pieces = _slices(plan, recovered.slices)
    with Mongo(plan.secrets.mongo_uri) as mongo:
        applier = oplog_io.Applier(mongo, token=token)
        return oplog.replay(
            _entries(store, pieces, after, until, stopped), _namespaces(plan.databases),
            applier.read, applier.write,
        )


def check(plan: Any, recovered: RecoveredPointInTime, after: OpTime) -> str:
    """Every document the replayed ops touched is as the last op on it left it (an
    insert or a whole-document update: that document; a delete: none). Updates that
    name fields only are checked by replay itself."""
    until = pitr.at(recovered.until_ts)
    store, pieces = _slices(plan, recovered.slices)
    last = oplog.LastStates(_namespaces(plan.databases))
    for entry in _entries(store, pieces, after, until, lambda: False):
        last.seen(entry)
    with Mongo(plan.secrets.mongo_uri) as mongo:
        return last.check(oplog_io.Applier(mongo).read)
