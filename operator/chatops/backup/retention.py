"""Which backups to delete: `keepLast` and `maxAge`, counting only good backups.

Pure: `RetentionPolicy.expired(backups, now)` reads what is in S3 (see `catalog`) and
says what to delete. The complaints users have of other backup tools are the rules:

- Only *good* backups of *this* ChatBackup count: manifest present and readable, made by
  this ChatBackup (by uid: a re-created ChatBackup of the same name, or one of the same
  name in another cluster writing into the same bucket, is someone else), its tarball
  present with the size the manifest says. A failed run never pushes a good backup out
  of `keepLast`.
- The newest good backup is never deleted, whatever `maxAge` says.
- An incomplete upload (a tarball this ChatBackup wrote that never got its manifest, or a
  manifest whose tarball is gone) is cleaned up once older than `incomplete_after`
  (longer than a run may take, so a run finishing right now is left alone). A tarball
  with no owner uid, like the runbook's own backups, is never touched.
- A backup's tarball and manifest are deleted together.
"""

from __future__ import annotations

import dataclasses
import datetime

from chatops.backup import layout
from chatops.backup.manifest import Manifest


@dataclasses.dataclass(frozen=True)
class StoredBackup:
    """What S3 holds under one backup id."""

    id: str
    tarball_key: str | None = None
    tarball_size: int | None = None
    manifest_key: str | None = None
    manifest: Manifest | None = None
    """The manifest parsed; None when absent or unreadable."""
    owner: str | None = None
    """`namespace/name` of the ChatBackup that wrote it (manifest or tarball metadata), to
    tell a human; ownership is by `uid`."""
    uid: str | None = None
    """uid of the ChatBackup that wrote it; None for objects not written by chatops."""
    last_modified: datetime.datetime | None = None
    """When the newest of its objects was written."""

    @property
    def started_at(self) -> datetime.datetime:
        return layout.id_time(self.id)

    @property
    def complete(self) -> bool:
        """Manifest and tarball both there, and the tarball as big as the manifest says."""
        return (
            self.manifest is not None
            and self.tarball_key is not None
            and self.tarball_size == self.manifest.tarball.size
        )

    @property
    def keys(self) -> tuple[str, ...]:
        """Its objects, tarball first: what deleting it deletes."""
        return tuple(k for k in (self.tarball_key, self.manifest_key) if k is not None)


@dataclasses.dataclass(frozen=True)
class Expiry:
    """The verdict on a ChatBackup's backups."""

    kept: tuple[StoredBackup, ...]
    """Good backups kept, newest first."""
    expired: tuple[StoredBackup, ...]
    """Good backups past keepLast or maxAge."""
    incomplete: tuple[StoredBackup, ...]
    """Leftovers of failed runs, old enough to clean up."""

    @property
    def keys(self) -> list[str]:
        """Every key to delete, each backup's tarball and manifest together."""
        return [k for b in (*self.expired, *self.incomplete) for k in b.keys]


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    uid: str
    """uid of the ChatBackup whose backups this policy governs."""
    keep_last: int = 30
    max_age: datetime.timedelta | None = None
    incomplete_after: datetime.timedelta = datetime.timedelta(hours=2)

    def owns(self, backup: StoredBackup) -> bool:
        """Whether this ChatBackup wrote it: its uid, never its name."""
        return bool(self.uid) and backup.uid == self.uid

    def good(self, backups: list[StoredBackup]) -> list[StoredBackup]:
        """This ChatBackup's complete backups, newest first."""
        mine = [b for b in backups if self.owns(b) and b.complete]
        return sorted(mine, key=lambda b: b.id, reverse=True)

    def expired(self, backups: list[StoredBackup], now: datetime.datetime) -> Expiry:
        good = self.good(backups)
        kept, expired = good[: max(1, self.keep_last)], good[max(1, self.keep_last) :]
        if self.max_age is not None:
            oldest = now - self.max_age
            young = [b for i, b in enumerate(kept) if i == 0 or b.started_at >= oldest]
            expired = [b for b in kept if b not in young] + expired
            kept = young
        incomplete = [
            b
            for b in backups
            if self.owns(b)
            and not b.complete
            and b.last_modified is not None
            and now - b.last_modified > self.incomplete_after
        ]
        return Expiry(tuple(kept), tuple(expired), tuple(incomplete))
