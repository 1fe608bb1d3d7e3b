"""Checking restored collections against the backup they came from.

Per collection: the documents read back from the server, counted and folded into the
order-free digest, must equal the backup's (the manifest's, or the `.bson` file's when a
tarball came without one), and every index of the metadata must exist. After a Merge the
collection only has to hold at least the backup's documents.

The restore checks its temporary collections this way before its commit (exactly), and
the ChatRecovery's Verify step checks the targets again after it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from chatops.adapters.mongo import Mongo
from chatops.backup.bsonstream import DocumentDigest, documents
from chatops.backup.contents import CollectionContents
from chatops.errors import ChatopsError, VerificationFailed


@dataclasses.dataclass(frozen=True)
class Check:
    """A collection on the server (`database`.`collection`) that must hold `backup`."""

    database: str
    collection: str
    backup: CollectionContents
    exact: bool = True
    """False after a Merge: at least the backup's documents."""

    @property
    def shown(self) -> str:
        """The collection as a user knows it (not its temporary name)."""
        return f"{self.database}.{self.backup.name}"


def restored(mongo: Mongo, checks: Sequence[Check]) -> None:
    """Compare restored collections with the backup; VerificationFailed if one differs."""
    problems = []
    for check in checks:
        want, db, name = check.backup, check.database, check.collection
        try:
            if not check.exact:
                count = mongo.count(db, name)
                if count < want.tally.documents:
                    problems.append(
                        f"{check.shown} has {count} documents, fewer than the backup's "
                        f"{want.tally.documents}"
                    )
            else:
                digest = DocumentDigest()
                seen = 0
                for batch in mongo.raw_batches(db, name, "primary"):
                    for doc in documents(batch):
                        digest.add(doc)
                        seen += 1
                if seen != want.tally.documents or digest.hexdigest() != want.tally.content_digest:
                    problems.append(
                        f"{check.shown} holds {seen} documents that differ from the "
                        f"backup's {want.tally.documents}"
                    )
            if want.metadata is not None:
                have = {str(i.get("name")) for i in mongo.indexes(db, name)}
                wanted = {str(i.get("name")) for i in want.metadata.indexes}
                if wanted - have:
                    problems.append(f"{check.shown} lacks index(es) {sorted(wanted - have)}")
        except ChatopsError as err:
            problems.append(str(err))
    if problems:
        raise VerificationFailed(
            "the restored data does not match the backup: " + "; ".join(problems[:5])
        )
