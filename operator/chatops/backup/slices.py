"""The oplog slices in S3 (the I/O half of `pitr`): listing one ChatBackup's slices and
base backups, writing a slice (object, then manifest), reading one back verified, and
deleting.

A slice is written as the backups are: its object first, conditionally (never over
another), then its manifest; a slice without its manifest does not exist and is removed
once older than any write could take. Reading one back checks its size, count and
sha256 against its manifest before a single op is handed on.
"""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import zlib
from collections.abc import Iterable, Sequence

from chatops import clock
from chatops.adapters import s3
from chatops.backup import catalog, pitr
from chatops.backup.bsonstream import documents
from chatops.backup.manifest import Manifest, ManifestSource
from chatops.backup.oplog import OpTime
from chatops.backup.pitr import Base, Slice, SliceManifest
from chatops.backup.retention import RetentionPolicy, StoredBackup
from chatops.errors import StorageError, VerificationFailed

CONTENT_TYPE = "application/gzip"
INCOMPLETE_AFTER = datetime.timedelta(minutes=30)
"""A slice object without a manifest older than this was left by a stopped archiver."""


@dataclasses.dataclass(frozen=True)
class Listing:
    """What one ChatBackup's archive holds in S3."""

    slices: tuple[Slice, ...]
    """Complete slices."""
    incomplete: tuple[str, ...]
    """Keys of slice objects or manifests without their other half, old enough to go."""
    bases: tuple[Base, ...]
    """Complete base backups with a consistent time, oldest first."""
    backups: tuple[StoredBackup, ...]
    """Every complete backup of this ChatBackup (also those that are not point in time)."""
    broken: tuple[str, ...] = ()
    """Manifests that cannot be read (named in messages)."""


def consistent_time(manifest: Manifest) -> OpTime | None:
    """What a base backup holds, as its manifest says: the database as of this op; None
    for a backup that is not point in time (a server without an oplog)."""
    if not manifest.point_in_time or manifest.consistent_time is None:
        return None
    return OpTime.parse(manifest.consistent_time)


def bases(backups: Iterable[StoredBackup]) -> list[Base]:
    out = []
    for b in backups:
        if b.manifest is None:
            continue
        at = consistent_time(b.manifest)
        if at is not None:
            out.append(Base(b.id, at, b.tarball_key or ""))
    return sorted(out, key=lambda b: (b.consistent, b.id))


def listing(
    store: s3.Store, prefix: str, uid: str, now: datetime.datetime | None = None
) -> Listing:
    """The slices and base backups of the ChatBackup of `uid` under `prefix`."""
    now = now or clock.now()
    folder = pitr.directory(prefix, uid)
    objects: dict[tuple[OpTime, OpTime], dict[str, s3.StoredObject]] = {}
    for obj in store.objects(folder):
        name = pitr.parse_key(folder, obj.key)
        if name is not None:
            objects.setdefault((name.first, name.last), {})[name.kind] = obj
    slices: list[Slice] = []
    incomplete: list[str] = []
    broken: list[str] = []
    for parts in objects.values():
        body, meta = parts.get("slice"), parts.get("manifest")
        if body is not None and meta is not None:
            raw = store.get(meta.key)
            try:
                manifest = pitr.parse_manifest(raw or b"")
            except ValueError:
                broken.append(meta.key)
                continue
            if manifest.source.uid == uid and manifest.size == body.size:
                slices.append(Slice.of(manifest, meta.key))
                continue
            broken.append(meta.key)
            continue
        alone = body or meta
        assert alone is not None
        if now - alone.last_modified > INCOMPLETE_AFTER:
            incomplete.append(alone.key)
    policy = RetentionPolicy(uid=uid)
    good = tuple(reversed(policy.good(catalog.list_backups(store, prefix))))
    return Listing(
        tuple(sorted(slices, key=lambda s: (s.previous, s.last))), tuple(incomplete),
        tuple(bases(good)), good, tuple(broken),
    )


def write(
    store: s3.Store, prefix: str, source: ManifestSource, databases: Sequence[str],
    previous: OpTime, entries: Sequence[tuple[OpTime, bytes]], now: datetime.datetime,
) -> Slice:
    """Upload one slice of `entries` (position, raw BSON), all after `previous`, then its
    manifest. Idempotent: an object left under the same key by an archiver stopped
    before its manifest holds the same ops (same positions), and is kept if it does."""
    assert entries, "a slice holds at least one op"
    uid = source.uid or ""
    folder = pitr.directory(prefix, uid)
    first, last = entries[0][0], entries[-1][0]
    raw = b"".join(e[1] for e in entries)
    digest = hashlib.sha256(raw).hexdigest()
    body = gzip.compress(raw, compresslevel=6, mtime=0)
    key = pitr.slice_key(folder, first, last)
    metadata = _owner(source)
    try:
        store.put(key, body, CONTENT_TYPE, metadata)
    except s3.KeyTaken:
        held = store.get(key)
        if held is None or _sha(held) != digest:
            raise
        body = held
    manifest = SliceManifest(
        source=source, key=key, databases=list(databases), previous=pitr.wire(previous),
        first=pitr.wire(first), last=pitr.wire(last), count=len(entries), bson_bytes=len(raw),
        sha256=digest, size=len(body), created_at=now,
    )
    mkey = pitr.manifest_key(folder, first, last)
    try:
        store.put(mkey, manifest.to_json(), metadata=metadata)
    except s3.KeyTaken:  # written by us before a crash: the same slice
        held_manifest = store.get(mkey)
        if held_manifest is None or pitr.parse_manifest(held_manifest).sha256 != digest:
            raise
    return Slice.of(manifest, mkey)


def _owner(source: ManifestSource) -> dict[str, str]:
    from chatops.backup.dump import owner_metadata

    return owner_metadata(source)


def _sha(gz: bytes) -> str:
    try:
        return hashlib.sha256(gzip.decompress(gz)).hexdigest()
    except (OSError, EOFError, zlib.error):
        return ""


def read(store: s3.Store, piece: Slice) -> bytes:
    """The raw BSON of a slice, checked against its manifest (size, sha256, count);
    VerificationFailed naming the key when it does not match or is gone."""
    try:
        body = store.get(piece.key)
    except StorageError as err:
        raise VerificationFailed(f"slice {piece.key}: {err}") from None
    if body is None:
        raise VerificationFailed(f"slice {piece.key} is missing (its manifest is there)")
    if len(body) != piece.size:
        raise VerificationFailed(
            f"slice {piece.key} is {len(body)} bytes, its manifest says {piece.size}"
        )
    try:
        raw = gzip.decompress(body)
    except (OSError, EOFError, zlib.error) as err:
        raise VerificationFailed(f"slice {piece.key} is not gzip: {err}") from None
    if hashlib.sha256(raw).hexdigest() != piece.sha256:
        raise VerificationFailed(f"slice {piece.key}: sha256 differs from its manifest")
    try:
        count = sum(1 for _ in documents(raw))
    except ValueError as err:
        raise VerificationFailed(f"slice {piece.key} is not BSON: {err}") from None
    if count != piece.count:
        raise VerificationFailed(
            f"slice {piece.key} holds {count} ops, its manifest says {piece.count}"
        )
    return raw


def delete(store: s3.Store, doomed: Iterable[Slice]) -> None:
    """Delete slices, manifests first (a slice whose manifest is gone no longer exists,
    even if deleting its object then fails: it is cleaned up as incomplete)."""
    doomed = list(doomed)
    store.delete([s.manifest_key for s in doomed])
    store.delete([s.key for s in doomed])
