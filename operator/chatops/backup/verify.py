"""Checking a restored database against the backup it came from.

Per collection: the documents read back from the server, counted and folded into the
order-free digest, must equal the backup's (the manifest's, or the `.bson` file's when a
tarball came without one), and every index of the metadata must exist. After a Merge the
collection only has to hold at least the backup's documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from chatops.adapters.mongo import Mongo
from chatops.backup.bsonstream import DocumentDigest, documents
from chatops.errors import ChatopsError, VerificationFailed

if TYPE_CHECKING:
    from chatops.backup.restore import CollectionContents


def restored(
    mongo: Mongo,
    collections: list[CollectionContents],
    mode: str,
    rename: Mapping[str, str],
) -> None:
    """Compare the restored database with the backup; VerificationFailed if it differs."""
    problems = []
    for c in collections:
        db = rename.get(c.database, c.database)
        try:
            if mode == "Merge":
                count = mongo.count(db, c.name)
                if count < c.tally.documents:
                    problems.append(
                        f"{db}.{c.name} has {count} documents, fewer than the backup's "
                        f"{c.tally.documents}"
                    )
            else:
                digest = DocumentDigest()
                seen = 0
                for batch in mongo.raw_batches(db, c.name, "primary"):
                    for doc in documents(batch):
                        digest.add(doc)
                        seen += 1
                if seen != c.tally.documents or digest.hexdigest() != c.tally.content_digest:
                    problems.append(
                        f"{db}.{c.name} holds {seen} documents that differ from the "
                        f"backup's {c.tally.documents}"
                    )
            if c.metadata is not None:
                have = {str(i.get("name")) for i in mongo.indexes(db, c.name)}
                want = {str(i.get("name")) for i in c.metadata.indexes}
                if want - have:
                    problems.append(f"{db}.{c.name} lacks index(es) {sorted(want - have)}")
        except ChatopsError as err:
            problems.append(str(err))
    if problems:
        raise VerificationFailed(
            "the restored data does not match the backup: " + "; ".join(problems[:5])
        )
