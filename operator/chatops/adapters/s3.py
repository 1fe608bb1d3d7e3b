"""S3 (or any S3-compatible store), as the backup engines see it: the only module that
calls boto3.

A `Store` is one bucket reached with one set of credentials. Every error leaves this
module as a `StorageError` naming the operation, bucket, key and the store's error code,
scrubbed of credentials. Multipart uploads choose their part size from the expected
size, so a large database never runs into S3's 10,000-part limit.

Writes never replace an object: every PutObject and CompleteMultipartUpload is
conditional (`If-None-Match: *`, which AWS, MinIO and moto honour), a multipart upload
first checks that its key is free, and once written the object is read back (HEAD) to
check it carries the metadata this writer gave it, for stores that ignore the condition.
A key that is taken raises `KeyTaken`, and nothing was overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from chatops.adapters.redact import redact
from chatops.api.backup import S3Endpoint
from chatops.errors import StorageError

MiB = 1024 * 1024
MIN_PART = 5 * MiB
"""S3's smallest part (all but the last)."""
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
PLANNED_PARTS = 9_000
"""Parts planned for the expected size; the rest is headroom for a database that grows
during the dump (see `part_size`)."""
DEFAULT_PART = 8 * MiB
CONTENT_TYPE = "application/gzip"


def choose_part_size(expected_bytes: int, minimum: int = DEFAULT_PART) -> int:
    """Part size for an upload of about `expected_bytes`, in whole MiB: the expected size
    (plus 10% for tar headers and incompressible data) fits in 9,000 parts."""
    need = math.ceil(max(0, expected_bytes) * 1.1 / PLANNED_PARTS)
    size = max(minimum, MIN_PART, need)
    size = math.ceil(size / MiB) * MiB
    if size > MAX_PART:
        raise ValueError(
            f"{expected_bytes} bytes do not fit in one S3 object (at most "
            f"{MAX_PARTS} parts of 5 GiB); back up fewer databases per ChatBackup"
        )
    return size


def part_size(planned: int, part_number: int) -> int:
    """Size of part `part_number` (1-based): the planned size for the first 9,000 parts,
    then 16 times it (at most 5 GiB), so an upload that outgrew its estimate still ends
    within 10,000 parts with 2.7 times the room it planned."""
    if part_number <= PLANNED_PARTS:
        return planned
    return min(MAX_PART, planned * 16)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """An access key pair read from a Secret. The secret never shows in a repr."""

    access_key_id: str
    secret_access_key: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime.datetime


@dataclasses.dataclass(frozen=True)
class PendingUpload:
    """A multipart upload never completed nor aborted (a crashed run)."""

    key: str
    upload_id: str
    initiated: datetime.datetime


class KeyTaken(StorageError):
    """The key already holds an object (someone else's): nothing was written over it."""


TAKEN = ("PreconditionFailed", "ConditionalRequestConflict")
"""Error codes of a conditional write that lost: the key is taken (or being taken)."""

WRITE_METADATA = "chatops-write"
"""A nonce of each conditional write, in the object's metadata. boto3 resends a request
whose reply it did not get (a timeout on a busy machine): when the first send did
write, the resend loses to it with PreconditionFailed. The object then carries this
write's own nonce, and the write is taken for what it is, done."""


class Store:
    """One bucket of an S3-compatible store."""

    def __init__(self, endpoint: S3Endpoint, credentials: Credentials | None = None) -> None:
        self.bucket = endpoint.bucket
        self._secrets = [credentials.secret_access_key] if credentials else []
        self.encryption: dict[str, str] = {}
        if endpoint.server_side_encryption:
            self.encryption["ServerSideEncryption"] = endpoint.server_side_encryption
        if endpoint.kms_key_id:
            self.encryption["SSEKMSKeyId"] = endpoint.kms_key_id
        keys: dict[str, str] = {}
        if credentials is not None:
            keys = {
                "aws_access_key_id": credentials.access_key_id,
                "aws_secret_access_key": credentials.secret_access_key,
            }
        config = Config(
            region_name=endpoint.region,
            s3={"addressing_style": "path" if endpoint.force_path_style else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        with self.errors("connect", ""):
            self.client: Any = boto3.session.Session().client(
                "s3", endpoint_url=endpoint.endpoint, config=config, **keys
            )

    @contextlib.contextmanager
    def errors(self, doing: str, key: str) -> Iterator[None]:
        """Turn boto3 errors into StorageError naming the operation and object."""
        where = f"s3://{self.bucket}/{key}"
        try:
            yield
        except botocore.exceptions.ClientError as err:
            error = err.response.get("Error", {})
            if error.get("Code") in TAKEN:
                raise self.taken(doing, key) from None
            text = f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
            raise StorageError(f"S3 {doing} {where}: {redact(text, self._secrets)}") from None
        except (botocore.exceptions.BotoCoreError, OSError) as err:
            text = redact(str(err), self._secrets)
            raise StorageError(f"S3 {doing} {where}: {type(err).__name__}: {text}") from None

    def taken(self, doing: str, key: str) -> KeyTaken:
        return KeyTaken(
            f"S3 {doing} s3://{self.bucket}/{key}: the key already holds another object; "
            "nothing was overwritten"
        )

    # -- objects ----------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Write a new object; KeyTaken if the key holds one already."""
        written = with_nonce(metadata or {})
        with self.conditional("PutObject", key, written):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata=written,
                IfNoneMatch="*",
                **self.encryption,
            )
        self.verify_written(key, written, "PutObject")

    @contextlib.contextmanager
    def conditional(self, doing: str, key: str, written: Mapping[str, str]) -> Iterator[None]:
        """`errors`, for a write with If-None-Match: a lost condition is KeyTaken unless
        the object there is this very write's (a resent request that lost to its first
        send: see WRITE_METADATA)."""
        try:
            with self.errors(doing, key):
                yield
        except KeyTaken:
            found = self.head(key)
            if found is None or found[1].get(WRITE_METADATA) != written[WRITE_METADATA]:
                raise

    def verify_written(self, key: str, metadata: Mapping[str, str], doing: str) -> None:
        """The object at `key` is the one just written: it carries `metadata` (a store that
        ignored If-None-Match and let another writer win shows theirs)."""
        found = self.head(key)
        if found is None:
            raise StorageError(f"S3 {doing} s3://{self.bucket}/{key}: not there after writing")
        if any(found[1].get(k) != v for k, v in metadata.items()):
            raise self.taken(doing, key)

    def get(self, key: str) -> bytes | None:
        """A small object's bytes; None if there is no such key."""
        with self.errors("GetObject", key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as err:
                if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            return bytes(response["Body"].read())

    def head(self, key: str) -> tuple[int, dict[str, str]] | None:
        """The object's size and user metadata; None if there is no such key."""
        with self.errors("HeadObject", key):
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as err:
                if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
            return int(response["ContentLength"]), dict(response.get("Metadata") or {})

    def size(self, key: str) -> int | None:
        """The object's size; None if there is no such key."""
        found = self.head(key)
        return None if found is None else found[0]

    def stream(self, key: str, chunk: int = MiB) -> Iterator[bytes]:
        """An object's bytes in chunks, without holding it whole."""
        with self.errors("GetObject", key):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                yield from body.iter_chunks(chunk)
            finally:
                body.close()

    def objects(self, prefix: str) -> list[StoredObject]:
        """Objects directly under `prefix` (not in sub-folders)."""
        found: list[StoredObject] = []
        with self.errors("ListObjectsV2", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(StoredObject(item["Key"], int(item["Size"]), item["LastModified"]))
        return found

    def delete(self, keys: Iterable[str]) -> None:
        """Delete objects (missing ones are fine); raise if the store refused any."""
        batch = list(keys)
        for start in range(0, len(batch), 1000):
            chunk = batch[start : start + 1000]
            with self.errors("DeleteObjects", chunk[0]):
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            refused = response.get("Errors", [])
            if refused:
                first = refused[0]
                raise StorageError(
                    f"S3 DeleteObjects s3://{self.bucket}/{first.get('Key')}: "
                    f"{first.get('Code')}: {first.get('Message', '')} "
                    f"({len(refused)} object(s) not deleted)"
                )

    # -- multipart uploads ------------------------------------------------------------

    def upload(
        self, key: str, planned_part_size: int, metadata: Mapping[str, str] | None = None
    ) -> MultipartUpload:
        """An upload of bytes to come; `metadata` becomes the object's user metadata."""
        return MultipartUpload(self, key, planned_part_size, metadata or {})

    def pending_uploads(self, prefix: str) -> list[PendingUpload]:
        found: list[PendingUpload] = []
        with self.errors("ListMultipartUploads", prefix):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Uploads", []):
                    found.append(PendingUpload(item["Key"], item["UploadId"], item["Initiated"]))
        return found

    def abort_upload(self, key: str, upload_id: str) -> None:
        with self.errors("AbortMultipartUpload", key):
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except botocore.exceptions.ClientError as err:
                if err.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise


def with_nonce(metadata: Mapping[str, str]) -> dict[str, str]:
    """`metadata` and a nonce of the write about to be made (WRITE_METADATA)."""
    return {**metadata, WRITE_METADATA: uuid.uuid4().hex}


class MultipartUpload:
    """Bytes written in order become one object: a single PUT if they fit in one part,
    else a multipart upload. Holds at most one part in memory."""

    def __init__(
        self, store: Store, key: str, planned_part_size: int, metadata: Mapping[str, str]
    ) -> None:
        self._store = store
        self._metadata = with_nonce(metadata)
        self.key = key
        self._planned = planned_part_size
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self.upload_id: str | None = None
        self.size = 0

    @property
    def parts_uploaded(self) -> int:
        return len(self._parts)

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= (want := part_size(self._planned, len(self._parts) + 1)):
            self._send(bytes(self._buffer[:want]))
            del self._buffer[:want]

    def _send(self, part: bytes) -> None:
        store, number = self._store, len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(f"S3 UploadPart s3://{store.bucket}/{self.key}: over 10,000 parts")
        if self.upload_id is None:
            if store.head(self.key) is not None:  # before uploading gigabytes for nothing
                raise store.taken("CreateMultipartUpload", self.key)
            with store.errors("CreateMultipartUpload", self.key):
                self.upload_id = str(
                    store.client.create_multipart_upload(
                        Bucket=store.bucket,
                        Key=self.key,
                        ContentType=CONTENT_TYPE,
                        Metadata=self._metadata,
                        **store.encryption,
                    )["UploadId"]
                )
        with store.errors(f"UploadPart {number}", self.key):
            response = store.client.upload_part(
                Bucket=store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=part,
            )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self.size += len(part)

    def complete(self) -> int:
        """Finish the object; its size in bytes."""
        store = self._store
        if self.upload_id is None:
            store.put(self.key, bytes(self._buffer), CONTENT_TYPE, self._metadata)
            self.size += len(self._buffer)
        else:
            if self._buffer:
                self._send(bytes(self._buffer))
            with store.conditional("CompleteMultipartUpload", self.key, self._metadata):
                store.client.complete_multipart_upload(
                    Bucket=store.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": self._parts},
                    IfNoneMatch="*",
                )
            store.verify_written(self.key, self._metadata, "CompleteMultipartUpload")
        self._buffer.clear()
        return self.size

    def abort(self) -> None:
        """Drop the parts uploaded so far (S3 keeps, and bills, them otherwise)."""
        self._buffer.clear()
        if self.upload_id is not None:
            self._store.abort_upload(self.key, self.upload_id)
