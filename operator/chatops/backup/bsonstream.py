"""Raw BSON documents one after the other, as in a `.bson` file: framing and tallies.

A `.bson` file is documents back to back, each starting with its own int32 length and
ending in a NUL byte. The dump and the restore never decode a document: they only need
to know where each one ends, to count them, hash them and batch them.

The content digest is order-free: the sum of each document's SHA-256 modulo 2**256. Two
collections have the same digest exactly when they hold the same multiset of documents
(short of a SHA-256 collision), whatever order the server returns them in, and it is
computed in constant memory, unlike a hash of the sorted documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

MIN_DOCUMENT = 5
MAX_DOCUMENT = 16 * 1024 * 1024 + 16 * 1024
"""BSON's 16 MiB limit, plus the slack servers allow for internal fields."""
_MOD = 1 << 256


class FramingError(ValueError):
    """Bytes that are not a sequence of BSON documents."""


def documents(buffer: bytes | memoryview) -> Iterator[memoryview]:
    """The documents of a buffer that holds whole documents only."""
    view = memoryview(buffer)
    offset, end = 0, len(view)
    while offset < end:
        if end - offset < MIN_DOCUMENT:
            raise FramingError(f"{end - offset} stray bytes after the last document")
        length = int.from_bytes(view[offset : offset + 4], "little", signed=True)
        if not MIN_DOCUMENT <= length <= MAX_DOCUMENT or offset + length > end:
            raise FramingError(f"document at byte {offset} claims {length} bytes")
        if view[offset + length - 1] != 0:
            raise FramingError(f"document at byte {offset} does not end in a NUL byte")
        yield view[offset : offset + length]
        offset += length


class Framer:
    """Cuts a stream of chunks (as read from a tar entry) into whole documents."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        """The whole documents completed by `chunk`, as one buffer (maybe empty)."""
        self._pending += chunk
        view = memoryview(self._pending)
        offset, end = 0, len(view)
        while end - offset >= 4:
            length = int.from_bytes(view[offset : offset + 4], "little", signed=True)
            if not MIN_DOCUMENT <= length <= MAX_DOCUMENT:
                raise FramingError(f"a document claims {length} bytes")
            if offset + length > end:
                break
            offset += length
        view.release()
        whole = bytes(self._pending[:offset])
        del self._pending[:offset]
        return whole

    def close(self) -> None:
        """Raise if the stream ended inside a document."""
        if self._pending:
            raise FramingError(f"the last {len(self._pending)} bytes are a truncated document")


class DocumentDigest:
    """Order-free digest of a multiset of documents (see the module's docstring)."""

    def __init__(self) -> None:
        self._sum = 0

    def add(self, document: bytes | memoryview) -> None:
        self._sum = (self._sum + int.from_bytes(hashlib.sha256(document).digest(), "big")) % _MOD

    def merge(self, other: DocumentDigest) -> None:
        """Add the documents `other` has seen (the digest of a union of multisets)."""
        self._sum = (self._sum + other._sum) % _MOD

    def hexdigest(self) -> str:
        return self._sum.to_bytes(32, "big").hex()


class Tally:
    """What a collection's documents add up to: count, bytes, sha256 of the bytes in
    order, and the order-free digest. Fed whole documents only."""

    def __init__(self) -> None:
        self.documents = 0
        self.bytes = 0
        self._sha256 = hashlib.sha256()
        self._digest = DocumentDigest()

    def update(self, buffer: bytes | memoryview) -> None:
        """Add a buffer of whole documents; FramingError if it is not one."""
        for document in documents(buffer):
            self._digest.add(document)
            self.documents += 1
        self._sha256.update(buffer)
        self.bytes += len(buffer)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def content_digest(self) -> str:
        return self._digest.hexdigest()
