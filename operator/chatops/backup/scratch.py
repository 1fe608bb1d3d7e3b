"""The scratch database a restore drill may write and drop, and only that: its names,
the guard before anything is written, and the marker (`chatops-drill`) the drill plants
before it writes, the only sign that lets it drop a database afterwards."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from chatops.adapters.mongo import Mongo
from chatops.api.backup import ChatBackupSpec
from chatops.backup import swap
from chatops.errors import ChatopsError, RestoreFailed

MARKER = "chatops-drill"
"""The collection a drill plants in its scratch database before it writes there."""
log = logging.getLogger("chatops.backup.drill")


def names(spec: ChatBackupSpec, databases: list[str]) -> dict[str, str]:
    """Backup database → scratch database (see `ScratchDatabase.database`)."""
    assert spec.verification is not None
    scratch = spec.verification.scratch.database
    if spec.mongodb.database is not None:
        return dict.fromkeys(databases, scratch)
    return {db: f"{scratch}_{db}" for db in databases}


def guard(
    source: Mongo, scratch: Mongo, spec: ChatBackupSpec, names: Mapping[str, str], uid: str
) -> None:
    """RestoreFailed unless every scratch database is one the drill may write and drop."""
    same = source.identity() == scratch.identity()
    targets = set(names.values())
    if same:
        if spec.mongodb.database is None:
            raise RestoreFailed(
                "spec.verification.scratch.uriSecretRef reaches the server backed up, whose "
                "every database is backed up: drill on a server of its own"
            )
        live = (set(names) | {spec.mongodb.database}) & targets
        if live:
            raise RestoreFailed(
                f"spec.verification.scratch.database: {', '.join(sorted(live))} is a live "
                "database of the server backed up; a drill never writes there"
            )
    for db in sorted(targets):
        if len(db.encode()) > 63:
            raise RestoreFailed(f"spec.verification.scratch.database: {db} is too long")
        present = scratch.namespaces(db)
        if not present or marked(scratch, db, uid):
            continue
        foreign = [n for n in present if n != MARKER and not swap.is_ours(n)]
        if foreign:
            raise RestoreFailed(
                f"spec.verification.scratch.database: {db} holds {len(foreign)} collection(s) "
                f"a drill did not create (e.g. {foreign[0][:60]}); a drill never writes to "
                "or drops a database it did not create: name an unused one"
            )


def marked(mongo: Mongo, db: str, uid: str) -> bool:
    return mongo.find_id(db, MARKER, uid) is not None


def remark(mongo: Mongo, databases: set[str], uid: str, resource: str) -> None:
    """Plant the marker again in the scratch databases this drill wrote (passed by
    `_guard`), so that `_drop` finds them; a server that cannot take it is logged."""
    for db in sorted(databases):
        try:
            mongo.upsert_id(db, MARKER, uid, {"chatbackup": resource})
        except ChatopsError as err:
            log.warning("%s: marking scratch database %s again: %s", resource, db, err)


def drop(mongo: Mongo, databases: set[str], uid: str) -> None:
    """Drop the scratch databases this ChatBackup's drills marked, and only those."""
    for db in sorted(databases):
        if marked(mongo, db, uid):
            mongo.drop_database(db)
