"""What `contents.inspect` refuses before any database is touched: a table of small
tarballs, each named the way a human's tarball would be."""

from __future__ import annotations

import datetime
import hashlib
import io
import re
import tarfile
from pathlib import Path

import bson
import pytest

from chatops.backup import layout
from chatops.backup.contents import Downloaded, inspect
from chatops.backup.manifest import (
    CollectionManifest,
    Manifest,
    OplogManifest,
    OplogTime,
    TarballManifest,
)
from chatops.errors import RestoreFailed, VerificationFailed

LONG = "archive " + "é" * 120


def _metadata(name: str | None) -> bytes:
    if name is None:
        return b'{"indexes":[]}'
    return layout.metadata_json(layout.CollectionMetadata(collection_name=name))


def _tarball(path: Path, files: dict[str, bytes]) -> Downloaded:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    data = buffer.getvalue()
    return Downloaded(str(path), len(data), hashlib.sha256(data).hexdigest())


DOC = bson.encode({"_id": 1})


@pytest.mark.parametrize(
    ("files", "names", "problem"),
    [
        ({"chat/rooms.bson": DOC, "chat/rooms.metadata.json": _metadata("rooms")},
         ["rooms"], None),
        # mongodump's shortened file name: the true name is the metadata's.
        ({f"chat/{layout.escape_collection(LONG)}.bson": DOC,
          f"chat/{layout.escape_collection(LONG)}.metadata.json": _metadata(LONG)},
         [LONG], None),
        # An older mongodump wrote no collectionName: the file name tells it.
        ({"chat/a+b.bson": DOC, "chat/a+b.metadata.json": _metadata(None)}, ["a b"], None),
        ({"chat/rooms.bson": DOC}, [], "has no .metadata.json"),
        ({"chat/rooms.bson": DOC, "chat/rooms.metadata.json": b"{oops"}, [], "damaged"),
        ({f"chat/{layout.escape_collection(LONG)}.bson": DOC,
          f"chat/{layout.escape_collection(LONG)}.metadata.json": _metadata(None)},
         [], "no collectionName"),
        ({"chat/rooms.bson": DOC, "chat/rooms.metadata.json": _metadata("salons")},
         [], "whose file would be"),
        ({"chat/a%24b.bson": DOC, "chat/a%24b.metadata.json": _metadata("a$b")}, [], "'$'"),
        ({f"chat/{layout.escape_collection('x' * 251)}.bson": DOC,
          f"chat/{layout.escape_collection('x' * 251)}.metadata.json": _metadata("x" * 251)},
         [], "over MongoDB's 255"),
    ],
)
def test_a_tarball_is_refused_before_the_database_for_any_unusable_name(
    tmp_path: Path, files: dict[str, bytes], names: list[str], problem: str | None
) -> None:
    downloaded = _tarball(tmp_path / "t.tar.gz", files)
    if problem is None:
        assert [c.name for c in inspect(downloaded, None).collections] == names
        return
    with pytest.raises(RestoreFailed, match=re.escape(problem)) as err:
        inspect(downloaded, None)
    assert "nothing was restored" in str(err.value)


# -- a consistent backup's oplog.bson ------------------------------------------------

ENTRY = bson.encode({"ts": bson.Timestamp(1_800_000_000, 1), "op": "i", "ns": "chat.rooms",
                     "o": {"_id": 2}})


def _pit_manifest(downloaded: Downloaded, count: int, sha: str, size: int) -> Manifest:
    from chatops.backup.bsonstream import Tally

    rooms = Tally()
    rooms.update(DOC)
    when = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    position = OplogTime(t=1_800_000_000, i=1, time="2027-01-15T08:00:00Z")
    return Manifest(
        id="20261201_000000", server_version="7.0", databases=["chat"], started_at=when,
        finished_at=when,
        collections=[CollectionManifest(database="chat", name="rooms", documents=1,
                                        bson_bytes=len(DOC), sha256=rooms.sha256,
                                        content_digest=rooms.content_digest)],
        tarball=TarballManifest(key="k", size=downloaded.size, sha256=downloaded.sha256),
        point_in_time=True, consistent_time=position,
        oplog=OplogManifest(start=position, count=count, bson_bytes=size, sha256=sha),
    )


def test_the_oplog_of_a_consistent_backup_is_checked_against_its_manifest(
    tmp_path: Path,
) -> None:
    files = {"chat/rooms.bson": DOC, "chat/rooms.metadata.json": _metadata("rooms"),
             "oplog.bson": ENTRY}
    downloaded = _tarball(tmp_path / "a.tar.gz", files)
    sha = hashlib.sha256(ENTRY).hexdigest()
    good = _pit_manifest(downloaded, 1, sha, len(ENTRY))
    found = inspect(downloaded, good)
    assert found.oplog is not None and found.oplog.documents == 1
    assert [c.name for c in found.collections] == ["rooms"]  # oplog.bson is no collection

    with pytest.raises(VerificationFailed, match=r"oplog\.bson has 1 entries"):
        inspect(downloaded, _pit_manifest(downloaded, 2, sha, len(ENTRY)))
    missing = _tarball(tmp_path / "b.tar.gz",
                       {k: v for k, v in files.items() if k != "oplog.bson"})
    with pytest.raises(VerificationFailed, match=r"has no oplog\.bson"):
        inspect(missing, _pit_manifest(missing, 1, sha, len(ENTRY)))
