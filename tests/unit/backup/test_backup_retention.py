"""Retention: keepLast and maxAge count only good backups, and never the newest one."""

from __future__ import annotations

import datetime

from chatops.backup import layout
from chatops.backup.manifest import Manifest, ManifestSource, TarballManifest
from chatops.backup.retention import RetentionPolicy, StoredBackup

OWNER = "chat/nightly"
UID = "uid-of-chat/nightly"


def uid_of(owner: str | None) -> str | None:
    return None if owner is None else f"uid-of-{owner}"
T0 = datetime.datetime(2026, 1, 1, 3, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def good(
    day: int, owner: str = OWNER, size: int = 100, uid: str | None = None
) -> StoredBackup:
    at = T0 + day * DAY
    backup = layout.backup_id(at)
    namespace, name = owner.split("/")
    m = Manifest(
        id=backup,
        source=ManifestSource(namespace=namespace, name=name, uid=uid or uid_of(owner)),
        server_version="7.0",
        databases=["chat"],
        started_at=at,
        finished_at=at,
        collections=[],
        tarball=TarballManifest(key=layout.tarball_key("p/", backup), size=100, sha256="0" * 64),
    )
    return StoredBackup(
        id=backup,
        tarball_key=layout.tarball_key("p/", backup),
        tarball_size=size,
        manifest_key=layout.manifest_key("p/", backup),
        manifest=m,
        owner=owner,
        uid=uid or uid_of(owner),
        last_modified=at,
    )


def failed(day: int, owner: str | None = OWNER) -> StoredBackup:
    """A run whose tarball was uploaded but which never wrote its manifest."""
    at = T0 + day * DAY
    backup = layout.backup_id(at)
    return StoredBackup(
        id=backup,
        tarball_key=layout.tarball_key("p/", backup),
        tarball_size=100,
        owner=owner,
        uid=uid_of(owner),
        last_modified=at,
    )


def ids(backups: tuple[StoredBackup, ...]) -> list[str]:
    return sorted(b.id for b in backups)


def test_35_runs_keep_last_30_keeps_exactly_the_30_newest() -> None:
    runs = [good(d) for d in range(35)]
    verdict = RetentionPolicy(UID, keep_last=30).expired(runs, T0 + 40 * DAY)
    assert ids(verdict.kept) == ids(tuple(runs[5:]))
    assert ids(verdict.expired) == ids(tuple(runs[:5]))
    assert verdict.incomplete == ()


def test_failed_runs_in_between_do_not_count() -> None:
    runs = [good(d) if d % 3 else failed(d) for d in range(45)]  # 30 good, 15 failed
    verdict = RetentionPolicy(UID, keep_last=30).expired(runs, T0 + 46 * DAY)
    assert len(verdict.kept) == 30
    assert verdict.expired == ()
    assert len(verdict.incomplete) == 15  # old failures are cleaned up, not counted


def test_expired_backups_lose_tarball_and_manifest_together() -> None:
    runs = [good(d) for d in range(3)]
    verdict = RetentionPolicy(UID, keep_last=1).expired(runs, T0 + 4 * DAY)
    assert sorted(verdict.keys) == sorted(
        [*runs[0].keys, *runs[1].keys]
    )
    assert all(len(b.keys) == 2 for b in verdict.expired)


def test_max_age_never_deletes_the_newest_good_backup() -> None:
    runs = [good(0), good(1), failed(5), failed(6)]  # the last good one is old
    policy = RetentionPolicy(UID, keep_last=30, max_age=datetime.timedelta(days=2))
    verdict = policy.expired(runs, T0 + 10 * DAY)
    assert ids(verdict.kept) == [runs[1].id]
    assert ids(verdict.expired) == [runs[0].id]


def test_max_age_expires_old_good_backups_within_keep_last() -> None:
    runs = [good(d) for d in range(10)]
    policy = RetentionPolicy(UID, keep_last=30, max_age=datetime.timedelta(days=3))
    verdict = policy.expired(runs, T0 + 9 * DAY + datetime.timedelta(hours=1))
    # 3 days before now (day 9, 04:00) is day 6, 04:00: day 6's 03:00 backup is older.
    assert ids(verdict.kept) == ids(tuple(runs[7:]))
    assert ids(verdict.expired) == ids(tuple(runs[:7]))


def test_other_chatbackups_and_human_files_are_never_touched() -> None:
    mine = [good(d) for d in range(5)]
    theirs = [good(d, owner="chat/hourly") for d in range(10, 20)]
    runbook = [failed(d, owner=None) for d in range(20, 25)]  # no owner metadata
    verdict = RetentionPolicy(UID, keep_last=2).expired(mine + theirs + runbook, T0 + 99 * DAY)
    touched = {b.id for b in (*verdict.expired, *verdict.incomplete)}
    assert touched == {b.id for b in mine[:3]}


def test_a_same_named_chatbackup_of_another_uid_is_someone_else() -> None:
    """Case 10: a re-created ChatBackup, or one of the same name in another cluster, never
    adopts (counts, restores) nor deletes the backups of the one before it."""
    before = [good(d, uid="uid-of-the-first-one") for d in range(5)]
    mine = [good(d) for d in range(10, 12)]
    policy = RetentionPolicy(UID, keep_last=1)
    verdict = policy.expired(before + mine, T0 + 99 * DAY)
    assert {b.id for b in verdict.expired} == {mine[0].id}
    assert policy.good(before) == []
    assert RetentionPolicy("", keep_last=1).good(before + mine) == []  # no uid owns nothing


def test_a_run_finishing_now_is_not_incomplete_yet() -> None:
    just_now = failed(1)
    verdict = RetentionPolicy(UID, incomplete_after=datetime.timedelta(hours=2)).expired(
        [just_now], T0 + DAY + datetime.timedelta(minutes=30)
    )
    assert verdict.incomplete == ()


def test_a_truncated_tarball_is_not_a_good_backup() -> None:
    runs = [good(0), good(1, size=99)]  # the newest lost bytes in S3
    policy = RetentionPolicy(UID, keep_last=1)
    assert policy.good(runs) == [runs[0]]
    verdict = policy.expired(runs, T0 + 5 * DAY)
    assert ids(verdict.kept) == [runs[0].id]
    assert ids(verdict.incomplete) == [runs[1].id]


def test_nothing_is_good_without_good_backups() -> None:
    assert RetentionPolicy(UID).good([failed(0)]) == []
