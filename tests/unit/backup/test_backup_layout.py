"""Names and files of a backup: what a human finds in S3 and in the tar."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest
from bson.binary import Binary
from bson.int64 import Int64

from chatops.backup import layout


def test_id_is_the_utc_start_time_to_the_second() -> None:
    paris = datetime.timezone(datetime.timedelta(hours=1))
    at = datetime.datetime(2026, 11, 26, 4, 15, 0, 999, tzinfo=paris)
    assert layout.backup_id(at) == "20261126_031500"
    assert layout.id_time("20261126_031500") == at.replace(microsecond=0)


@pytest.mark.parametrize("bad", ["20261126-031500", "2026112_031500", "latest", ""])
def test_id_time_refuses_what_is_not_an_id(bad: str) -> None:
    with pytest.raises(ValueError, match="not a backup id"):
        layout.id_time(bad)


def test_keys_are_the_runbooks_names() -> None:
    assert layout.tarball_key("prod/", "20261126_031500") == "prod/mongodb_20261126_031500.tar.gz"
    assert layout.manifest_key("", "20261126_031500") == "mongodb_20261126_031500.manifest.json"
    assert (
        layout.manifest_key_for("x/mongodb_20261126_031500.tar.gz")
        == "x/mongodb_20261126_031500.manifest.json"
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("p/mongodb_20261126_031500.tar.gz", layout.ObjectName("20261126_031500", "tarball")),
        (
            "p/mongodb_20261126_031500.manifest.json",
            layout.ObjectName("20261126_031500", "manifest"),
        ),
        ("p/sub/mongodb_20261126_031500.tar.gz", None),
        ("p/mongodb_20261126_031500.tar.gz.bak", None),
        ("q/mongodb_20261126_031500.tar.gz", None),
        ("p/notes.txt", None),
    ],
)
def test_parse_key_knows_only_backups_directly_under_the_prefix(
    key: str, expected: layout.ObjectName | None
) -> None:
    assert layout.parse_key("p/", key) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chat/messages.bson", layout.Entry("chat", "messages", "bson")),
        ("./chat/messages.bson", layout.Entry("chat", "messages", "bson")),
        ("dump/chat/users.metadata.json", layout.Entry("chat", "users", "metadata")),
        ("./dump/chat/a+b%2Fc.bson", layout.Entry("chat", "a+b%2Fc", "bson")),
        ("chat/system.views.bson", None),
        ("admin/$admin.system.users.bson", None),
        ("oplog.bson", None),
        ("chat/messages.bson.gz", None),
        ("./chat/", None),
        ("prelude.json", None),
    ],
)
def test_parse_entry_reads_mongodump_trees_however_they_were_tarred(
    name: str, expected: layout.Entry | None
) -> None:
    assert layout.parse_entry(name) == expected


LONG_PREFIX = "aVery" + "Very" * 44
# mongo-tools' own vector (mongodump/mongodump_test.go): the name, and the file it writes.
MONGO_TOOLS_NAME = LONG_PREFIX + "/Long/Collection/Name/Consisting/Of/Many/Characters"


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        # Go's url.QueryEscape: space as +, everything but [A-Za-z0-9-_.~] percent-encoded.
        ("a b/c$d~e", "a+b%2Fc%24d~e"),
        ("salons-☕", "salons-%E2%98%95"),
        ("x" * 238, "x" * 238),  # at the limit: as it is
        ("x" * 239, "x" * 208 + "%24" + "Nq75d-cu3iRxNs-ce3Tvf9gagoU"),
        (
            MONGO_TOOLS_NAME,
            LONG_PREFIX + "%2FLong%2FCollection%2FName%24FUVlwTrb2eHN1RUE1swI1fFzWmA",
        ),
    ],
)
def test_file_names_are_mongodumps_byte_for_byte(name: str, stem: str) -> None:
    assert layout.escape_collection(name) == stem
    assert layout.bson_entry("chat", name) == f"chat/{stem}.bson"
    assert len(f"{stem}.metadata.json.gz".encode()) <= 255
    entry = layout.parse_entry(layout.metadata_entry("chat", name))
    assert entry == layout.Entry("chat", stem, "metadata")
    assert entry.file_name == (None if len(stem) == 238 and "%24" in stem else name)


@pytest.mark.parametrize(
    ("database", "name", "problem"),
    [
        ("chat", "messages", None),
        ("chat", "a b/c", None),
        ("chat", "", "empty"),
        ("chat", "a$b", "'$'"),
        ("chat", "a\0b", "NUL"),
        ("chat", "system.js", "system."),
        ("chat", ".hidden", "'.'"),
        ("chat", "x" * 250, None),
        ("chat", "x" * 251, "over MongoDB's 255"),
        ("chat", "é" * 126, "over MongoDB's 255"),  # bytes, not characters
    ],
)
def test_invalid_names_are_found_before_anything_is_restored(
    database: str, name: str, problem: str | None
) -> None:
    found = layout.invalid_name(database, name)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_shortened_file_name_needs_the_metadatas_collection_name() -> None:
    named = layout.parse_metadata(b'{"indexes":[],"collectionName":"long name"}', None)
    assert named.collection_name == "long name"
    with pytest.raises(ValueError, match="shortened file name has no collectionName"):
        layout.parse_metadata(b'{"indexes":[]}', None)


def test_metadata_is_mongodumps_canonical_extended_json_byte_for_byte() -> None:
    meta = layout.CollectionMetadata(
        collection_name="messages",
        type="collection",
        options={},
        indexes=[
            {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            {"v": 2, "key": {"roomId": 1, "createdAt": -1}, "name": "roomId_1_createdAt_-1"},
        ],
        uuid="5fcf78532b074d14a03474130a072b4e",
    )
    assert layout.metadata_json(meta) == (
        b'{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},'
        b'{"v":{"$numberInt":"2"},"key":{"roomId":{"$numberInt":"1"},"createdAt":'
        b'{"$numberInt":"-1"}},"name":"roomId_1_createdAt_-1"}],'
        b'"uuid":"5fcf78532b074d14a03474130a072b4e","collectionName":"messages",'
        b'"type":"collection"}'
    )


def test_metadata_keeps_options_first_types_and_unicode() -> None:
    meta = layout.CollectionMetadata(
        collection_name="salons",
        type="view",
        options={"viewOn": "rooms", "pipeline": [{"$match": {"n": Int64(5), "x": 1.5}}]},
    )
    text = layout.metadata_json(meta).decode()
    assert text.startswith('{"options":{"viewOn":"rooms"')
    assert '"n":{"$numberLong":"5"}' in text and '"x":{"$numberDouble":"1.5"}' in text
    assert '"uuid"' not in text  # a server without UUIDs gets none, as mongodump does
    back = layout.parse_metadata(text.encode(), "ignored")
    assert back.is_view and back.options["pipeline"][0]["$match"]["n"] == 5
    assert isinstance(back.options["pipeline"][0]["$match"]["n"], Int64)


def test_parse_metadata_of_an_old_mongodump_uses_the_file_name() -> None:
    back = layout.parse_metadata(b'{"options":{},"indexes":[]}', "rooms")
    assert (back.collection_name, back.type, back.indexes) == ("rooms", "collection", ())


def test_parse_metadata_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="rooms"):
        layout.parse_metadata(b"{not json", "rooms")
    for garbage in ({"indexes": 3}, {"indexes": [5]}, {"indexes": [], "options": [1]}):
        with pytest.raises(ValueError, match="rooms"):
            layout.parse_metadata(json.dumps(garbage).encode(), "rooms")


def test_secondary_indexes_leave_out_id_ns_and_v() -> None:
    meta = layout.CollectionMetadata(
        "users",
        indexes=[
            {"v": 2, "key": {"_id": 1}, "name": "_id_", "ns": "chat.users"},
            {"v": 2, "key": {"username": 1}, "name": "username_1", "unique": True, "ns": "x"},
        ],
    )
    assert meta.secondary_indexes() == [
        {"key": {"username": 1}, "name": "username_1", "unique": True}
    ]


def test_uuid_hex_from_list_collections() -> None:
    value = uuid.UUID("5fcf7853-2b07-4d14-a034-74130a072b4e")
    assert layout.uuid_hex({"uuid": Binary(value.bytes, 4)}) == value.hex
    assert layout.uuid_hex({"uuid": value}) == value.hex
    assert layout.uuid_hex({}) is None
    assert layout.uuid_hex({"uuid": Binary(b"xx", 0)}) is None
