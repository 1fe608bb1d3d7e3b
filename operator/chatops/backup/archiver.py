"""The continuous archive of one ChatBackup (`spec.pointInTime`): tail the oplog from
where S3 says the archive stands, upload what has arrived every `flushInterval` (or at
the size cap) as a slice, merge short slices into `sliceLength` ones, delete the slices
no kept base backup needs, and keep `status.pointInTime` and the metrics current.

It runs on a thread of its own (a kopf daemon per ChatBackup with the archive enabled
waits on it), holding the ChatBackup's archive Lease, so with several operator replicas
(or a restarted process whose predecessor is not quite dead) one process writes slices.
It holds no database Lease: it only reads the oplog. Killed at any line, the next
archiver resumes from the last complete slice in S3: an op read but not uploaded is read
again from the oplog, a slice object without its manifest is not a slice.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

from kubernetes import client

from chatops import clock, telemetry
from chatops.adapters import oplog as oplog_io
from chatops.adapters import s3
from chatops.adapters.kube import Cluster
from chatops.adapters.lease import Lease, Renewal
from chatops.adapters.mongo import Mongo
from chatops.api import validation
from chatops.api.backup import ChatBackupSpec, ChatBackupStatus
from chatops.api.common import now_rfc3339, seconds
from chatops.api.pitr import ArchiveStatus
from chatops.backup import archive, credentials, oplog, pitr, slices
from chatops.backup.bsonstream import documents
from chatops.backup.manifest import ManifestSource
from chatops.backup.oplog import OpTime
from chatops.errors import ChatopsError, InvalidSpec, OplogGap
from chatops.events import Event, EventSink, subject

PLURAL = "chatbackups"
KIND = "ChatBackupArchive"
"""The worker Lease's kind: `chatops-chatbackuparchive-<name>`, apart from the backup
runs' Lease, so a long backup never stops the archive, nor the other way round."""
POLL = 0.25
"""Seconds between two reads of the oplog that found nothing new."""
HOUSEKEEPING = 60.0
"""Seconds between merges, retention and the check that the spec still asks for it."""
RECHECK = 5.0
"""Seconds before looking again while waiting (for a base backup, for the oplog)."""
log = logging.getLogger("chatops.archive")


def _napped(seconds: float, stopped: Callable[[], bool]) -> bool:
    """Wait between two polls; True (stop tailing) once the archiver must stop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stopped():
            return True
        time.sleep(min(0.05, seconds))
    return stopped()


def window_first(window: oplog_io.Window | None) -> OpTime | None:
    return None if window is None else OpTime(window.first.t, window.first.i)


def _entry_ts(raw: bytes | memoryview) -> OpTime:
    at = oplog.parse(raw).ts
    return OpTime(at.t, at.i)


@dataclasses.dataclass
class Buffer:
    """Ops read and not yet uploaded."""

    entries: list[tuple[OpTime, bytes]] = dataclasses.field(default_factory=list)
    size: int = 0
    since: float | None = None
    """time.monotonic() when the oldest of them was read."""

    def add(self, ts: OpTime, raw: bytes) -> None:
        if not self.entries:
            self.since = time.monotonic()
        self.entries.append((ts, raw))
        self.size += len(raw)

    def age(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def clear(self) -> None:
        self.entries, self.size, self.since = [], 0, None


def archive_once(
    api: client.ApiClient, namespace: str, name: str, stopped: Callable[[], bool],
    post: EventSink, wake_backups: Callable[[], None],
) -> float:
    """Archive until stopped, the Lease is lost, or the spec no longer asks for it;
    the seconds before the daemon should call again."""
    cluster = Cluster(api)
    body = cluster.get(PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return RECHECK
    resource = f"ChatBackup {namespace}/{name}"
    try:
        spec = validation.parsed(ChatBackupSpec, "ChatBackup", body["spec"], resource)
    except InvalidSpec:
        return RECHECK * 6  # the backup daemon says what is wrong in Accepted
    if not spec.point_in_time.enabled:
        return RECHECK * 6
    worker = Lease.worker(api, namespace, KIND, name)
    holder = worker.acquire()
    if holder is not None:
        log.info("%s: archived by %s", resource, holder)
        return RECHECK  # a holder that died lets go within LEASE_SECONDS: take over then
    renewal = Renewal(worker).start()
    try:
        secrets = credentials.References(
            resource, namespace, spec.mongodb.uri_secret_ref, "spec.mongodb.uriSecretRef",
            spec.storage.s3, "spec.storage.s3",
        ).read(cluster)
        store = credentials.store(spec.storage.s3, secrets)
        with Mongo(secrets.mongo_uri, app_name="chatops-archive") as mongo:
            session = Session(
                cluster, body, spec, store, mongo, post, wake_backups,
                lambda: stopped() or renewal.lost is not None,
            )
            try:
                return session.run()
            except ChatopsError as err:
                text = secrets.scrub(str(err))
                session.fail(text)
                raise ChatopsError(text) from None
    finally:
        renewal.stop()
        try:
            worker.release()
        except (client.ApiException, OSError):
            log.warning("%s: releasing the archive Lease failed; it expires", resource)


class Session:
    """One archiver's hold on one ChatBackup's archive."""

    def __init__(
        self, cluster: Cluster, body: Mapping[str, Any], spec: ChatBackupSpec,
        store: s3.Store, mongo: Mongo, post: EventSink, wake_backups: Callable[[], None],
        stopped: Callable[[], bool],
    ) -> None:
        meta = body["metadata"]
        self.cluster, self.spec, self.store, self.mongo = cluster, spec, store, mongo
        self.namespace, self.name = str(meta["namespace"]), str(meta["name"])
        self.uid = str(meta.get("uid") or "")
        self.ref = subject(body)
        self.post, self.wake_backups, self.stopped = post, wake_backups, stopped
        self.source = ManifestSource(namespace=self.namespace, name=self.name, uid=self.uid)
        self.prefix = spec.storage.s3.prefix
        database = spec.mongodb.database
        self.databases = [database] if database else []
        self.namespaces = oplog.Namespaces(frozenset(self.databases) if database else None)
        self.pit = spec.point_in_time
        self.flush_seconds = seconds(self.pit.flush_interval)
        old = ChatBackupStatus.model_validate(body.get("status") or {}).point_in_time
        self.status = old or ArchiveStatus()
        self.written = old
        self.listing: slices.Listing | None = None

    # -- status -----------------------------------------------------------------------

    def save(self, **update: Any) -> None:
        """Patch `status.pointInTime` with `update` (only that key of the status: the
        backup daemon writes the rest)."""
        new = self.status.model_copy(update=update)
        self.status = new
        if self.written is not None and new.wire() == self.written.wire():
            return
        wire: dict[str, Any] = new.wire()
        if self.written is not None:
            for key in self.written.wire():
                wire.setdefault(key, None)
        self.cluster.patch_status(PLURAL, self.namespace, self.name, {"pointInTime": wire})
        self.written = new

    def fail(self, message: str) -> None:
        try:
            self.save(state="Failed", message=message[:1000])
        except (client.ApiException, OSError):
            log.warning("%s/%s: cannot write the archive's status", self.namespace, self.name)

    def _look(self, oldest: OpTime | None = None) -> archive.Tail | archive.Wait | archive.Lost:
        """Where to tail from, from what S3 holds. The oplog is not scanned for it (on
        FerretDB every query of it reads it whole): the first read after the position
        tells whether it is still there; `oldest` is what that read found first."""
        self.listing = slices.listing(self.store, self.prefix, self.uid)
        line = pitr.timeline(self.listing.bases, self.listing.slices)
        oplog: tuple[OpTime, OpTime] | None = None
        if oplog_io.exists(self.mongo):
            floor = oldest or OpTime(0, 0)
            oplog = (floor, floor)
        seen = archive.Observed(self.listing.slices, self.listing.bases, oplog)
        at = archive.position(seen)
        self.status = self.status.model_copy(update={
            "slices": len(self.listing.slices),
            "restorable_from": pitr.rfc3339(line.windows[0].start) if line.windows else None,
            "last_archived_time": pitr.rfc3339(at) if at is not None else None,
            "last_archived_ts": pitr.wire(at) if at is not None else None,
        })
        if at is not None:
            telemetry.record_archived(self.namespace, self.name, at.t, at.t)
        return archive.resume(seen)

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> float:
        oldest: OpTime | None = None
        while not self.stopped():
            decision = self._look(oldest)
            oldest = None
            if isinstance(decision, archive.Lost):
                self._lost(decision)
                if isinstance(decision.then, archive.Wait):
                    self.save(state="Gap", message=decision.then.reason)
                    return RECHECK
                decision = decision.then
            if isinstance(decision, archive.Wait):
                self.save(state=decision.state, message=decision.reason)
                return RECHECK
            self._resumed_after_gap(decision.after)
            self.save(state="Archiving", message=f"tailing the oplog after {decision.after}")
            ended = self._tail(decision.after)
            if ended is True:
                return 0.0
            if isinstance(ended, OpTime):  # the oplog no longer holds the position
                oldest = ended
        return 0.0

    def _resumed_after_gap(self, after: OpTime) -> None:
        """Tailing from a base backup taken after the open gap closes it: said in status
        at once, and the backup daemon woken to clear `PointInTimeGap` (it would
        otherwise say the gap is open until its next look, maybe the next schedule)."""
        gap = archive.open_gap(self.status)
        if gap is None or self.listing is None:
            return
        base = next((b for b in self.listing.bases if b.consistent == after), None)
        if base is not None and base.consistent > pitr.at(gap.start_ts):
            self.status = archive.resumed(self.status, base)
            self.save(state="Archiving", message=f"tailing the oplog after {after}")
            self.wake_backups()

    def _lost(self, lost: archive.Lost) -> None:
        self.status, new = archive.with_gap(self.status, lost, clock.now())
        if not new:
            return
        message = archive.gap_message(lost)
        log.warning("%s/%s: %s", self.namespace, self.name, message)
        self.post(self.ref, Event("Warning", "PointInTimeGap", message
                                  + "; a new base backup is taken to start again from"))
        telemetry.record_gap(self.namespace, self.name)
        self.save()
        self.wake_backups()

    def _tail(self, after: OpTime) -> bool | OpTime:
        """Tail and upload until stopped (True), the look must be made again (False), or
        the oplog lost the position (the oldest op it holds instead)."""
        buffer = Buffer()
        previous = after
        next_chores = time.monotonic() + HOUSEKEEPING
        polls = self._polled(after)
        try:
            for polled in polls:
                if isinstance(polled, OpTime):
                    if buffer.entries:
                        self._flush(previous, buffer)
                    return polled
                for ts, raw in polled:
                    buffer.add(ts, raw)
                telemetry.record_pending(
                    self.namespace, self.name, buffer.entries[0][0].t if buffer.entries else None
                )
                if archive.flush_due(len(buffer.entries), buffer.size, buffer.age(),
                                     self.flush_seconds, self.pit.max_slice_bytes):
                    previous = self._flush(previous, buffer)
                if self.stopped():
                    if buffer.entries:
                        previous = self._flush(previous, buffer)
                    return True
                if time.monotonic() >= next_chores:
                    next_chores = time.monotonic() + HOUSEKEEPING
                    if not self._still_wanted():
                        if buffer.entries:
                            self._flush(previous, buffer)
                        return False
                    self._chores()
        finally:
            polls.close()
        if buffer.entries:  # the tail stopped (the operator stops): upload what arrived
            self._flush(previous, buffer)
        return self.stopped()

    def _polled(
        self, after: OpTime
    ) -> Generator[list[tuple[OpTime, bytes]] | OpTime, None, None]:
        """What the oplog holds after `after`, poll after poll (`adapters.oplog.tail`):
        the new entries of the backed-up databases (an empty list when there are none),
        or, once, the oldest entry the oplog holds when it no longer holds the position
        (it rolled past it)."""
        try:
            for batch in oplog_io.tail(
                self.mongo, after, self.namespaces, poll_seconds=POLL,
                wait=lambda seconds: _napped(seconds, self.stopped),
            ):
                if batch is None:
                    yield []
                    continue
                yield [(e.ts, e.raw) for e in oplog.entries(batch)]
        except OplogGap as gap:
            oldest = gap.oldest if isinstance(gap.oldest, OpTime) else None
            yield oldest or window_first(oplog_io.window(self.mongo)) or after

    def _flush(self, previous: OpTime, buffer: Buffer) -> OpTime:
        written = slices.write(
            self.store, self.prefix, self.source, self.databases, previous,
            buffer.entries, clock.now(),
        )
        log.debug("%s/%s: slice %s: %d op(s)", self.namespace, self.name, written.key,
                  written.count)
        buffer.clear()
        now = clock.now()
        self.save(
            state="Archiving", message=f"tailing the oplog after {written.last}",
            last_archived_time=pitr.rfc3339(written.last), last_archived_ts=pitr.wire(written.last),
            last_upload_time=now_rfc3339(now), slices=self.status.slices + 1,
        )
        telemetry.record_archived(self.namespace, self.name, written.last.t, written.last.t)
        telemetry.record_pending(self.namespace, self.name, None)
        return written.last

    def _still_wanted(self) -> bool:
        body = self.cluster.get(PLURAL, self.namespace, self.name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return False
        if str(body["metadata"].get("uid") or "") != self.uid:
            return False
        try:
            spec = ChatBackupSpec.model_validate(body["spec"])
        except ValueError:
            return False
        return spec == self.spec

    def _chores(self) -> None:
        """Merge short slices, delete what no kept base needs, refresh the counts and
        the oplog window."""
        window = oplog_io.window(self.mongo)
        if window is not None:
            telemetry.record_oplog(self.namespace, self.name, window.first.t, window.last.t)
            self.status = self.status.model_copy(
                update={"oplog_first_time": clock.rfc3339(window.first.time)}
            )
        look = slices.listing(self.store, self.prefix, self.uid)
        if not look.bases:
            return
        oldest = look.bases[0].consistent
        for run in pitr.merges(
            look.slices, oldest, seconds(self.pit.slice_length), self.pit.max_slice_bytes
        ):
            self._merge(run)
        look = slices.listing(self.store, self.prefix, self.uid)
        keep = pitr.needed(look.bases, look.slices)
        doomed = [
            s for s in look.slices if s.key not in keep and s.last <= look.bases[0].consistent
        ]
        doomed += [s for s in pitr.redundant(look.slices) if s not in doomed]
        if doomed:
            slices.delete(self.store, doomed)
        if look.incomplete:
            self.store.delete(look.incomplete)
        self.status = self.status.model_copy(update={"slices": len(look.slices) - len(doomed)})

    def _merge(self, run: tuple[pitr.Slice, ...]) -> None:
        """One slice of a run of short ones (read back verified), then the parts go."""
        entries: list[tuple[OpTime, bytes]] = []
        for part in run:
            raw = slices.read(self.store, part)
            entries += [(_entry_ts(doc), bytes(doc)) for doc in documents(raw)]
        slices.write(
            self.store, self.prefix, self.source, self.databases, run[0].previous, entries,
            clock.now(),
        )
        slices.delete(self.store, run)
