"""A backup id is never reused (issue 8, its hypothesis property; case 10's root).

Random sequences of looks at several ChatBackups sharing one bucket and prefix: the
clock moves by random steps (often not at all, so runs fall in the same second), humans
ask for runs, schedules fire, and the operator dies between starting a run and finishing
it. The small world runs what the runner runs — `controller.decide`, then a write into a
store that refuses a key that is taken (as S3's `If-None-Match: *` does), then
`controller.finish` — and checks after every step that no run ever got an id its
ChatBackup used before, that no key ever records two successes, and that every
Succeeded run's object is still the one it wrote (even for two uids that begin alike).
"""

from __future__ import annotations

import datetime

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from chatops.api.backup import ChatBackupSpec, ChatBackupStatus
from chatops.backup import controller, layout
from chatops.backup.manifest import Manifest, ManifestSource, TarballManifest
from chatops.backup.retention import StoredBackup

UTC = datetime.UTC
START = datetime.datetime(2026, 12, 1, 2, 59, 58, tzinfo=UTC)
PREFIX = "shared/"
UIDS = [
    "3f9a2c1b-1111-4000-8000-000000000001",
    "7c0d5e2a-2222-4000-8000-000000000002",
    "3f9a2c1b-3333-4000-8000-000000000003",  # same first 8 characters as the first
]


def spec(schedule: str | None) -> ChatBackupSpec:
    return ChatBackupSpec.model_validate({
        "schedule": schedule,
        "mongodb": {"uriSecretRef": {"name": "mongo"}},
        "storage": {"s3": {"bucket": "chat-backups", "prefix": PREFIX}},
    })


class Backups(RuleBasedStateMachine):
    """Several ChatBackups, one prefix, one clock, an operator that may die."""

    @initialize(
        schedules=st.lists(st.sampled_from([None, "* * * * *", "*/2 * * * *"]),
                           min_size=2, max_size=3),
    )
    def create(self, schedules: list[str | None]) -> None:
        self.now = START
        self.specs = {UIDS[i]: spec(s) for i, s in enumerate(schedules)}
        self.statuses = {uid: ChatBackupStatus() for uid in self.specs}
        self.created = {uid: START for uid in self.specs}
        self.store: dict[str, str] = {}
        """key → uid of the writer (the tarball's uid metadata)."""
        self.ids: dict[str, list[str]] = {uid: [] for uid in self.specs}
        self.succeeded: dict[str, str] = {}
        """key of every Succeeded run → its ChatBackup's uid."""

    @rule(seconds=st.sampled_from([0.0, 0.0, 0.3, 0.7, 1.0, 1.5, 59.0, 3600.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)

    @rule(data=st.data(), on_demand=st.booleans(), dies=st.booleans())
    def look(self, data: st.DataObject, on_demand: bool, dies: bool) -> None:
        uid = data.draw(st.sampled_from(sorted(self.specs)))
        status = self.statuses[uid]
        leftover = None
        if status.last_backup is not None and status.last_backup.result == "Running":
            leftover = self._stored(status.last_backup.id, status.last_backup.key)
        seen = controller.Observation(
            namespace="chat", name=f"backup-{UIDS.index(uid)}", now=self.now,
            created_at=self.created[uid], generation=1, spec=self.specs[uid], status=status,
            on_demand=on_demand, leftover=leftover, uid=uid,
        )
        decision = controller.decide(seen)
        self.statuses[uid] = decision.status
        start = decision.start
        if start is None:
            return
        assert start.id not in self.ids[uid], f"{start.id} reused"
        self.ids[uid].append(start.id)
        if dies:  # the operator is killed mid-run: the status still says Running
            return
        if start.key in self.store:  # If-None-Match: * refuses it; nothing is overwritten
            # ...which only ever happens to two uids that begin alike (one in 4 billion).
            assert self.store[start.key][:8] == uid[:8], f"{start.key} taken by another"
            outcome = controller.Outcome(start.id, start.key, self.now, self.now, None,
                                         message="the key already holds another object")
        else:
            self.store[start.key] = uid
            outcome = controller.Outcome(start.id, start.key, self.now, self.now,
                                         self._manifest(uid, start.id, start.key))
        self.statuses[uid], _ = controller.finish(self.statuses[uid], outcome, self.now, 1)
        if outcome.manifest is not None:
            assert start.key not in self.succeeded, f"{start.key} succeeded twice"
            self.succeeded[start.key] = uid

    def _manifest(self, uid: str, backup: str, key: str) -> Manifest:
        return Manifest(
            id=backup, source=ManifestSource(namespace="chat", name="b", uid=uid),
            server_version="7.0", databases=["chat"], started_at=self.now,
            finished_at=self.now, collections=[],
            tarball=TarballManifest(key=key, size=1, sha256="0" * 64),
        )

    def _stored(self, backup: str, key: str | None) -> StoredBackup | None:
        """What a look finds under a Running run's id: only what that run wrote is there
        (the run died before the manifest)."""
        if key is None or key not in self.store:
            return None
        return StoredBackup(id=backup, tarball_key=key, tarball_size=1, uid=self.store[key])

    @invariant()
    def ids_of_one_chatbackup_only_grow(self) -> None:
        for ids in getattr(self, "ids", {}).values():
            assert ids == sorted(set(ids))

    @invariant()
    def every_succeeded_backup_is_still_its_own(self) -> None:
        for key, uid in getattr(self, "succeeded", {}).items():
            assert self.store[key] == uid


TestBackupIds = Backups.TestCase
TestBackupIds.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)


def test_ids_carry_the_uid_and_read_back_as_their_time() -> None:
    at = datetime.datetime(2026, 12, 1, 3, 0, 0, 250_000, tzinfo=UTC)
    backup = layout.backup_id(at, "3F9A2C1B-1111-4000-8000-000000000001")
    assert backup == "20261201_030000_3f9a2c1b"
    assert layout.id_time(backup) == at.replace(microsecond=0)
    key = layout.tarball_key("p/", backup)
    assert key == "p/mongodb_20261201_030000_3f9a2c1b.tar.gz"
    assert layout.parse_key("p/", key) == layout.ObjectName(backup, "tarball")
    # the runbook's own names still read
    assert layout.parse_key("p/", "p/mongodb_20261201_030000.tar.gz") == layout.ObjectName(
        "20261201_030000", "tarball"
    )
