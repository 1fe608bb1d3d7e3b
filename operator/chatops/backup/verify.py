"""Checking restored collections against the backup they came from.

Two checks, one guarantee: the collection holds exactly the backup's documents, byte for
byte, and its indexes.

- `restored`, the full read: every document read back from the server, counted and
  folded into the order-free digest, must equal the backup's (the manifest's, or the
  `.bson` file's when a tarball came without one). After a Merge the collection only
  has to hold at least the backup's documents. A restore drill runs it on its scratch
  database.
- `loaded`, what the restore runs before its commit, without a second full read:
  1. the count and order-free digest of the exact bytes the server *acknowledged*
     (`inserter.Written`) equal the backup's: every document was sent, once, unchanged,
     and accepted (a write error fails the load);
  2. the server holds exactly the backup's count of documents in the temporary
     collection (`Mongo.stored_count`, from its storage, not a scan; nothing else writes
     there: its name is the restore's own): none lost, none extra;
  3. the first documents the server stored (`inserter.SAMPLE`, read with a plain
     `find().limit(n)`, which every server answers without reading further) are
     byte-identical to the first ones sent (the loader sends a collection's first batch
     before any other); if the server returns others first, those documents are looked
     up by `_id` instead (one `$in` query): the server returns what it acknowledged;
  4. every index of the metadata exists.
  1 and 2 give what the full read's count and digest gave: the same documents, no more,
  no fewer. What the full read adds is a check of every stored document's bytes against
  what was sent; 3 checks a thousand per collection. The failure it is there for, a
  server that acknowledges a document and keeps something else (a type or a field order
  it does not keep), shows on documents of the same shape throughout a collection, hence
  in its first thousand; a server that corrupts one document in a million at random is
  not caught by 3, nor by anything short of reading everything again (a drill does that,
  `restored`). The first documents rather than a uniform sample because FerretDB has no
  index lookups (any filter reads the whole collection): a uniform sample read back
  costs there as much as the full read.

The ChatRecovery's Verify step checks the targets after the commit with `targets`: the
count, the indexes and a fresh sample from the tarball read back, so that the collections
in place are the ones loaded and proved (a rename moves a collection, it does not
change it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from bson.raw_bson import RawBSONDocument

from chatops.adapters.mongo import Mongo
from chatops.backup import inserter
from chatops.backup.bsonstream import DocumentDigest, Framer, documents
from chatops.backup.contents import READ_CHUNK, CollectionContents, Downloaded, entries
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
            problems += _indexes(mongo, db, name, check.shown, want)
        except ChatopsError as err:
            problems.append(str(err))
    _raise(problems)


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A collection just loaded (`database`.`collection`, its temporary name), the backup
    it must hold, and what the server acknowledged of it."""

    database: str
    collection: str
    backup: CollectionContents
    written: inserter.Written

    @property
    def shown(self) -> str:
        return f"{self.database}.{self.backup.name}"


def loaded(mongo: Mongo, checks: Sequence[Loaded]) -> None:
    """The load's own proof (see the module's docstring); VerificationFailed if one
    collection differs."""
    problems = []
    for check in checks:
        want, got = check.backup.tally, check.written
        try:
            if got.documents != want.documents or got.digest.hexdigest() != want.content_digest:
                problems.append(
                    f"{check.shown}: the server acknowledged {got.documents} documents that "
                    f"differ from the backup's {want.documents}"
                )
                continue
            problems += _held(mongo, check.database, check.collection, check.shown, want.documents)
            problems += _read_back(mongo, check.database, check.collection, check.shown,
                                   got.head)
            problems += _indexes(mongo, check.database, check.collection, check.shown,
                                 check.backup)
        except ChatopsError as err:
            problems.append(str(err))
    _raise(problems)


def targets(mongo: Mongo, downloaded: Downloaded, checks: Sequence[Check]) -> int:
    """The collections in place after the commit: count, indexes and the tarball's first
    documents of each read back (see the module's docstring). The documents read back."""
    firsts = heads(downloaded, [c.backup for c in checks])
    problems, read = [], 0
    for check in checks:
        want, db, name = check.backup, check.database, check.collection
        docs = firsts.get((want.database, want.stem), [])
        try:
            if check.exact:
                problems += _held(mongo, db, name, check.shown, want.tally.documents)
            else:
                count = mongo.stored_count(db, name)
                if count < want.tally.documents:
                    problems.append(
                        f"{check.shown} has {count} documents, fewer than the backup's "
                        f"{want.tally.documents}"
                    )
            problems += _read_back(mongo, db, name, check.shown, docs)
            read += len(docs)
            problems += _indexes(mongo, db, name, check.shown, want)
        except ChatopsError as err:
            problems.append(str(err))
    _raise(problems)
    return read


def heads(
    downloaded: Downloaded, collections: Iterable[CollectionContents],
    size: int = inserter.SAMPLE,
) -> dict[tuple[str, str], list[bytes]]:
    """The first `size` documents of each collection's `.bson` file, by (database, file
    stem): the ones a restore stored first."""
    wanted = {(c.database, c.stem) for c in collections}
    out: dict[tuple[str, str], list[bytes]] = {}
    for entry, reader in entries(downloaded.path):
        if entry.kind != "bson" or (entry.database, entry.stem) not in wanted:
            continue
        kept = out.setdefault((entry.database, entry.stem), [])
        framer = Framer()
        while len(kept) < size and (chunk := reader.read(READ_CHUNK)):
            kept += [bytes(d) for d in documents(framer.feed(chunk))][: size - len(kept)]
    return out


def _held(mongo: Mongo, db: str, name: str, shown: str, documents: int) -> list[str]:
    count = mongo.stored_count(db, name)
    if count != documents:
        return [f"{shown} holds {count} documents, the backup {documents}"]
    return []


def _read_back(mongo: Mongo, db: str, name: str, shown: str, docs: Sequence[bytes]) -> list[str]:
    """Each document of `docs` (the first ones stored) is stored byte for byte: read as
    the first of the collection, or else looked up by `_id`."""
    if not docs:
        return []
    if sorted(mongo.first_raw(db, name, len(docs))) == sorted(docs):
        return []
    stored = set(mongo.raw_by_ids(db, name, [RawBSONDocument(d)["_id"] for d in docs]))
    differ = sum(1 for d in docs if d not in stored)
    if differ:
        return [
            f"{shown}: {differ} of {len(docs)} documents read back by _id are missing or "
            "differ from the backup's bytes"
        ]
    return []


def _indexes(
    mongo: Mongo, db: str, name: str, shown: str, want: CollectionContents
) -> list[str]:
    if want.metadata is None:
        return []
    have = {str(i.get("name")) for i in mongo.indexes(db, name)}
    wanted = {str(i.get("name")) for i in want.metadata.indexes}
    if wanted - have:
        return [f"{shown} lacks index(es) {sorted(wanted - have)}"]
    return []


def _raise(problems: list[str]) -> None:
    if problems:
        raise VerificationFailed(
            "the restored data does not match the backup: " + "; ".join(problems[:5])
        )
