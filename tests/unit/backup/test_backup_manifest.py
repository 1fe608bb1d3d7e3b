"""The manifest: written last, read before a restore touches anything."""

from __future__ import annotations

import datetime
import json

import pytest

from chatops.backup import manifest
from chatops.backup.manifest import (
    CollectionManifest,
    Manifest,
    ManifestSource,
    TarballManifest,
)

T0 = datetime.datetime(2026, 11, 26, 3, 15, tzinfo=datetime.UTC)


def sample() -> Manifest:
    return Manifest(
        id="20261126_031500",
        source=ManifestSource(namespace="chat", name="nightly", uid="u-1"),
        server_version="7.0.42",
        databases=["chat"],
        started_at=T0,
        finished_at=T0 + datetime.timedelta(seconds=42.5),
        collections=[
            CollectionManifest(
                database="chat",
                name="messages",
                documents=20000,
                bson_bytes=2_000_000,
                sha256="a" * 64,
                content_digest="b" * 64,
                indexes=3,
            ),
            CollectionManifest(
                database="chat",
                name="users",
                documents=50,
                bson_bytes=4000,
                sha256="c" * 64,
                content_digest="d" * 64,
                indexes=2,
            ),
        ],
        tarball=TarballManifest(key="p/mongodb_20261126_031500.tar.gz", size=123, sha256="e" * 64),
    )


def test_round_trip_keeps_everything() -> None:
    original = sample()
    back = manifest.parse(original.to_json())
    assert back == original
    assert back.documents == 20050
    assert back.duration_seconds == 42.5
    assert back.collection("chat", "users") is not None
    assert back.collection("chat", "rooms") is None


def test_wire_form_is_camel_case_and_readable() -> None:
    wire = json.loads(sample().to_json())
    assert wire["format"] == "chatops.dev/backup-manifest/v1"
    assert wire["serverVersion"] == "7.0.42"
    assert wire["collections"][0]["bsonBytes"] == 2_000_000
    assert wire["tarball"]["sha256"] == "e" * 64
    assert wire["startedAt"] == "2026-11-26T03:15:00Z"
    assert wire["source"] == {"namespace": "chat", "name": "nightly", "uid": "u-1"}


def test_manifest_holds_no_connection_string() -> None:
    text = sample().to_json().decode()
    assert "mongodb://" not in text and "uri" not in text.lower()


@pytest.mark.parametrize(
    "data",
    [b"", b"{}", b"[1]", b'{"id": "x"}', json.dumps({"format": "other/v9"}).encode()],
)
def test_parse_refuses_what_is_not_a_manifest(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a chatops backup manifest"):
        manifest.parse(data)
