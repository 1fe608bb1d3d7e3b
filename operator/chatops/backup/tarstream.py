"""A gzip tar written as a stream, in bounded memory, with entries of unknown size.

A tar header carries its entry's size, so a collection cannot be streamed straight into
a tar before it has been read to the end. Holding it in memory is not bounded; reading
it twice is not consistent on a live database (documents come and go between passes).
Instead each collection's `.bson` body is compressed, as it is read, into a gzip
*member* of its own, spooled to a temporary file (in memory while small). When the
collection ends its size is known: the writer closes the member it was writing, writes
the header in a member of its own, and copies the spooled member through unchanged.

A gzip file may be any number of members back to back (RFC 1952 §2.2); gunzip,
`tar -xz`, Python's gzip and tarfile, and Go's gzip reader read them as one stream. So
every byte is compressed exactly once, the temporary disk holds at most one compressed
collection, and memory holds one spool threshold plus the compressor's window.

Compression is ISA-L's deflate (PyPI `isal`, level 1: ~24x zlib's default speed at
about zlib level 1's ratio), zlib level 1 when isal is missing. Both release the GIL.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from typing import IO, Protocol, cast

try:
    from isal import igzip, isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the safety net
    igzip = isal_zlib = None  # type: ignore[assignment]

ENGINE = "zlib" if isal_zlib is None else "isal"
LEVEL = 1
"""isal level 1 compresses ~24x faster than zlib's default, at zlib level 1's ratio."""
DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (
    (zlib.error, gzip.BadGzipFile)
    if isal_zlib is None
    else (zlib.error, gzip.BadGzipFile, cast(type[Exception], isal_zlib.error))
)
"""What a damaged gzip stream raises while it is read."""

BLOCK = tarfile.BLOCKSIZE
_GZIP_WBITS = 16 + 15
COPY_CHUNK = 1024 * 1024


class Sink(Protocol):
    """Where the compressed bytes go (an S3 multipart upload, a file, a buffer)."""

    def write(self, data: bytes, /) -> object: ...


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self, mode: int = ..., /) -> bytes: ...


def _member() -> _Compressor:
    """A compressor that writes one complete gzip member."""
    if isal_zlib is None:
        return zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return isal_zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP_WBITS)


def open_gzip(path: str) -> IO[bytes]:
    """A gzip file (of any number of members) opened for streaming reads."""
    if igzip is None:
        return gzip.open(path, "rb")
    return cast(IO[bytes], igzip.open(path, "rb"))  # type: ignore[no-untyped-call]


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def header(name: str, size: int, mtime: float, directory: bool = False) -> bytes:
    """A POSIX (pax) tar header, as `tar` writes for a file or directory of the dump."""
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = int(mtime)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


class Body:
    """One entry's body, compressed as it is written into a gzip member of its own,
    spooled to a temporary file that stays in memory up to `memory` bytes."""

    def __init__(self, memory: int = 8 * 1024 * 1024, directory: str | None = None) -> None:
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=memory, dir=directory
        )
        self._compressor = _member()
        self.size = 0
        self.finished = False

    def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        self._spool.write(self._compressor.compress(bytes(data)))

    def finish(self) -> None:
        """Pad the body to a tar block and close its gzip member."""
        self._spool.write(self._compressor.compress(_padding(self.size)))
        self._spool.write(self._compressor.flush(zlib.Z_FINISH))
        self.finished = True

    def copy_to(self, write: Callable[[bytes], object]) -> None:
        self._spool.seek(0)
        while chunk := self._spool.read(COPY_CHUNK):
            write(chunk)

    def close(self) -> None:
        self._spool.close()


class TarGzWriter:
    """Writes a gzip tar to `sink`, counting and hashing every byte it writes."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._member: _Compressor | None = None
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def _out(self, data: bytes) -> None:
        if data:
            self._sha256.update(data)
            self.size += len(data)
            self._sink.write(data)

    def _compress(self, data: bytes) -> None:
        if self._member is None:
            self._member = _member()
        self._out(self._member.compress(data))

    def _end_member(self) -> None:
        if self._member is not None:
            self._out(self._member.flush(zlib.Z_FINISH))
            self._member = None

    def add_directory(self, name: str, mtime: float) -> None:
        self._compress(header(name.rstrip("/") + "/", 0, mtime, directory=True))

    def add_file(self, name: str, data: bytes, mtime: float) -> None:
        """A small entry whose bytes are at hand (a metadata.json)."""
        self._compress(header(name, len(data), mtime) + data + _padding(len(data)))

    def add_body(self, name: str, body: Body, mtime: float) -> None:
        """An entry spooled by `Body`: its header now that its size is known, then its
        compressed member copied through."""
        if not body.finished:
            body.finish()
        self._compress(header(name, body.size, mtime))
        self._end_member()
        body.copy_to(self._out)

    def close(self) -> None:
        """End of archive: two zero blocks, then the last member's trailer."""
        self._compress(b"\0" * (2 * BLOCK))
        self._end_member()
        self.closed = True

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()
