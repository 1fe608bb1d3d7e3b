"""What `contents.inspect` refuses before any database is touched: a table of small
tarballs, each named the way a human's tarball would be."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path

import bson
import pytest

from chatops.backup import layout
from chatops.backup.contents import Downloaded, inspect
from chatops.errors import RestoreFailed

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
