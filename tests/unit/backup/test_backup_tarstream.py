"""The archive a human gets: a gzip tar that tar, gzip and Python read, made from a
document stream without knowing its size in advance."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import bson
import pytest

from chatops.backup import tarstream
from chatops.backup.bsonstream import Framer, FramingError, Tally, documents


def fake_documents(n: int) -> list[bytes]:
    return [bson.encode({"_id": i, "roomId": i % 7, "text": f"message {i} " * (i % 5)})
            for i in range(n)]


def archive(collections: dict[str, list[bytes]], spool_memory: int = 1024) -> tuple[bytes, str]:
    out = io.BytesIO()
    writer = tarstream.TarGzWriter(out)
    writer.add_directory("chat", 1_700_000_000)
    for name, docs in collections.items():
        writer.add_file(f"chat/{name}.metadata.json", b'{"indexes":[]}', 1_700_000_000)
        body = tarstream.Body(memory=spool_memory)
        for start in range(0, len(docs), 100):  # in "batches", as the server sends them
            body.write(b"".join(docs[start : start + 100]))
        writer.add_body(f"chat/{name}.bson", body, 1_700_000_000)
        body.close()
    writer.close()
    return out.getvalue(), writer.sha256


def test_python_tarfile_reads_every_document_back() -> None:
    messages, users = fake_documents(2500), fake_documents(3)
    data, _ = archive({"messages": messages, "users": users, "empty": []})
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        assert names == [
            "chat", "chat/messages.metadata.json", "chat/messages.bson",
            "chat/users.metadata.json", "chat/users.bson",
            "chat/empty.metadata.json", "chat/empty.bson",
        ]
        assert tar.getmember("chat").isdir()
        got = tar.extractfile("chat/messages.bson").read()  # type: ignore[union-attr]
        assert got == b"".join(messages)
        assert tar.extractfile("chat/empty.bson").read() == b""  # type: ignore[union-attr]
    assert [bson.decode(bytes(d))["_id"] for d in documents(got)] == list(range(2500))


def test_it_is_one_gzip_stream_for_gzip_and_gnu_tar(tmp_path: Path) -> None:
    data, sha256 = archive({"messages": fake_documents(300)})
    assert hashlib.sha256(data).hexdigest() == sha256
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as plain:
        assert plain.getnames()[-1] == "chat/messages.bson"
    path = tmp_path / "mongodb_20261126_031500.tar.gz"
    path.write_bytes(data)
    listing = subprocess.run(["tar", "-tzf", str(path)], capture_output=True, text=True, check=True)
    assert listing.stdout.split() == ["chat/", "chat/messages.metadata.json", "chat/messages.bson"]
    subprocess.run(["tar", "-xzf", str(path), "-C", str(tmp_path)], check=True)
    assert (tmp_path / "chat" / "messages.bson").stat().st_size == sum(
        len(d) for d in fake_documents(300)
    )


def test_a_large_body_spills_to_disk_and_still_frames(tmp_path: Path) -> None:
    docs = [bson.encode({"_id": i, "blob": os.urandom(2000)}) for i in range(600)]
    body = tarstream.Body(memory=64 * 1024, directory=str(tmp_path))
    for d in docs:
        body.write(d)
    out = io.BytesIO()
    writer = tarstream.TarGzWriter(out)
    writer.add_body("db/blobs.bson", body, 0)
    writer.close()
    body.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as tar:
        member = tar.getmember("db/blobs.bson")
        assert member.size == sum(len(d) for d in docs)
        assert tar.extractfile(member).read() == b"".join(docs)  # type: ignore[union-attr]


def test_long_names_survive() -> None:
    name = "c" * 150
    data, _ = archive({name: fake_documents(2)})
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert f"chat/{name}.bson" in tar.getnames()


def test_tally_counts_hashes_and_is_order_free() -> None:
    docs = fake_documents(50)
    forward, backward = Tally(), Tally()
    forward.update(b"".join(docs))
    for d in reversed(docs):
        backward.update(d)
    assert forward.documents == backward.documents == 50
    assert forward.bytes == sum(len(d) for d in docs)
    assert forward.sha256 == hashlib.sha256(b"".join(docs)).hexdigest()
    assert forward.sha256 != backward.sha256  # the bytes' order matters to sha256 …
    assert forward.content_digest == backward.content_digest  # … not to the digest
    one_less = Tally()
    one_less.update(b"".join(docs[1:]))
    assert one_less.content_digest != forward.content_digest


def test_framer_cuts_a_chunked_stream_into_whole_documents() -> None:
    docs = fake_documents(40)
    stream = b"".join(docs)
    framer, whole = Framer(), b""
    for i in range(0, len(stream), 7):
        whole += framer.feed(stream[i : i + 7])
    framer.close()
    assert whole == stream


@pytest.mark.parametrize(
    "bad",
    [
        b"\x05\x00\x00",  # stray bytes
        b"\x03\x00\x00\x00\x00",  # a length below BSON's minimum
        b"\x06\x00\x00\x00\x00\x01",  # no NUL terminator
        b"\x10\x00\x00\x00\x00",  # claims more than there is
    ],
)
def test_bad_framing_is_refused(bad: bytes) -> None:
    with pytest.raises(FramingError):
        list(documents(bad))


def test_a_truncated_stream_is_refused() -> None:
    framer = Framer()
    framer.feed(fake_documents(1)[0][:-3])
    with pytest.raises(FramingError, match="truncated"):
        framer.close()
