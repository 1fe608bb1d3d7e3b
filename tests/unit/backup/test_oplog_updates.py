"""Oplog updates applied as the server applies them: the documented examples of mongo's
`document_diff_applier_test.cpp` ($v: 2 diffs, written here as the diff documents the
server logs), classic `$set`/`$unset` entries, replacements, and FerretDB's whole-document
`$set`. Every example is also applied to its own result, which must not change it:
BSON bytes compared, field order included, as the server compares replica members."""

from __future__ import annotations

from typing import Any

import bson
import pytest
from bson.binary import Binary

from chatops.backup import updates


def check(pre: dict[str, Any], update: dict[str, Any], post: dict[str, Any]) -> None:
    once = updates.apply(pre, update)
    assert bson.encode(once) == bson.encode(post), once
    twice = updates.apply(once, update)
    assert bson.encode(twice) == bson.encode(post), twice


def v2(diff: dict[str, Any]) -> dict[str, Any]:
    return {"$v": 2, "diff": diff}


# (name, pre-image, diff, post-image): mongo's DiffApplierTest cases.
DIFF_EXAMPLES = [
    ("DeleteSimple", {"f1": 1, "foo": 2, "f2": 3}, {"d": {"f1": False, "f2": False, "f3": False}},
     {"foo": 2}),
    ("InsertSimple", {"f1": 1, "foo": 2, "f2": 3}, {"i": {"f1": 1, "newField": 2}},
     {"foo": 2, "f2": 3, "f1": 1, "newField": 2}),
    ("UpdateSimple", {"f1": 0, "foo": 2, "f2": 3}, {"u": {"f1": 1, "newField": 2}},
     {"f1": 1, "foo": 2, "f2": 3, "newField": 2}),
    ("SubObjDiffSimple",
     {"obj": {"dField": 0, "iField": 0, "uField": 0}, "otherField": 0},
     {"sobj": {"d": {"dField": False}, "i": {"iField": 1}, "u": {"uField": 2}}},
     {"obj": {"uField": 2, "iField": 1}, "otherField": 0}),
    ("SubArrayDiffSimpleWithAppend", {"arr": [999, 999, 999, 999]},
     {"sarr": {"a": True, "u1": 1, "u4": 2}}, {"arr": [999, 1, 999, 999, 2]}),
    ("SubArrayDiffSimpleWithTruncate", {"arr": [999, 999, 999, 999]},
     {"sarr": {"a": True, "l": 3, "u1": 1}}, {"arr": [999, 1, 999]}),
    ("SubArrayDiffSimpleWithNullPadding", {"arr": [0]},
     {"sarr": {"a": True, "u3": 1}}, {"arr": [0, None, None, 1]}),
    ("NestedSubObjUpdateScalar", {"subObj": {"subObj": {"a": 0}}},
     {"ssubObj": {"ssubObj": {"u": {"a": 1}}}}, {"subObj": {"subObj": {"a": 1}}}),
    ("NestedSubObjUpdateScalar: no such field, a no-op", {"someOtherField": 1},
     {"ssubObj": {"ssubObj": {"u": {"a": 1}}}}, {"someOtherField": 1}),
    ("NestedSubObjUpdateScalar: a scalar where a document was, null",
     {"dummyA": 1, "dummyB": 2, "subObj": "scalar!", "dummyC": 3, "dummyD": 4},
     {"ssubObj": {"ssubObj": {"u": {"a": 1}}}},
     {"dummyA": 1, "dummyB": 2, "subObj": None, "dummyC": 3, "dummyD": 4}),
    ("BinaryAppendSimple", {"b1": Binary(b"abc", 7)}, {"b": {"b1": {"o": 3, "d": Binary(b"def")}}},
     {"b1": Binary(b"abcdef", 7)}),
    ("BinaryOverwriteSimple", {"b1": Binary(b"abc", 7)},
     {"b": {"b1": {"o": 2, "d": Binary(b"def")}}}, {"b1": Binary(b"abdef", 7)}),
]

ARRAY_OF_OBJECTS = {  # UpdateArrayOfObjectsSubDiff's diff
    "d": {"dFieldA": False, "dFieldB": False},
    "u": {"uField": 999},
    "sarr": {"a": True, "s1": {"u": {"a": 1}}, "s2": {"u": {"b": 2}}, "s3": {"u": {"c": 3}},
             "u4": {"x": 1}},
}
ARRAY_OF_OBJECTS_CASES = [
    ({"uField": 1, "dFieldA": 1, "arr": [None, {"a": 0}, {"b": 0}, {"c": 0}], "dFieldB": 1},
     {"uField": 999, "arr": [None, {"a": 1}, {"b": 2}, {"c": 3}, {"x": 1}]}),
    ({"uField": 1, "dFieldA": 1, "arr": [{"a": 0}, {"b": 0}, {"c": 0}, {}], "dFieldB": 1},
     {"uField": 999, "arr": [{"a": 0}, {"b": 0, "a": 1}, {"c": 0, "b": 2}, {"c": 3}, {"x": 1}]}),
    ({"arr": [None, {"a": 1}, {"b": 2}, {"c": 3}, {"x": 1}], "uField": 999},
     {"arr": [None, {"a": 1}, {"b": 2}, {"c": 3}, {"x": 1}], "uField": 999}),
    ({"arr": [0, 0, 0, 0, {"x": 2}], "uField": 1},
     {"arr": [0, None, None, None, {"x": 1}], "uField": 999}),
    ({"arr": [], "uField": 1}, {"arr": [None, None, None, None, {"x": 1}], "uField": 999}),
    ({"arr": [0, {}, {}, {}, 4, 5, 6], "uField": 1},
     {"arr": [0, {"a": 1}, {"b": 2}, {"c": 3}, {"x": 1}, 5, 6], "uField": 999}),
    ({"dummyA": 1, "arr": {"foo": 1}, "dummyB": 1},
     {"dummyA": 1, "arr": None, "dummyB": 1, "uField": 999}),
    ({"dummyA": 1, "arr": 1, "dummyB": 1}, {"dummyA": 1, "arr": None, "dummyB": 1, "uField": 999}),
]


@pytest.mark.parametrize(("name", "pre", "diff", "post"), DIFF_EXAMPLES, ids=lambda v: str(v)[:40])
def test_documented_diffs(name: str, pre: dict[str, Any], diff: dict[str, Any],
                          post: dict[str, Any]) -> None:
    check(pre, v2(diff), post)


@pytest.mark.parametrize(("pre", "post"), ARRAY_OF_OBJECTS_CASES)
def test_array_of_objects_subdiffs_whatever_the_pre_image(
    pre: dict[str, Any], post: dict[str, Any]
) -> None:
    check(pre, v2(ARRAY_OF_OBJECTS), post)


def test_classic_set_and_unset_with_dotted_paths() -> None:
    pre = {"_id": 1, "room": "a", "meta": {"edits": 0}, "tags": ["x"], "draft": True}
    update = {"$set": {"meta.edits": 1, "meta.by.name": "ann", "tags.2": "z"},
              "$unset": {"draft": True}}
    check(pre, update, {"_id": 1, "room": "a", "meta": {"edits": 1, "by": {"name": "ann"}},
                        "tags": ["x", None, "z"]})


def test_classic_v1_entry_from_mongodb_4_4() -> None:
    # `$v: 1` as MongoDB 4.4 logs `{$set: {st: "read"}, $unset: {draft: ""}}`
    pre = {"_id": 7, "st": "sent", "draft": "hi"}
    check(pre, {"$v": 1, "$set": {"st": "read"}, "$unset": {"draft": True}},
          {"_id": 7, "st": "read"})


def test_unset_of_an_array_element_leaves_null() -> None:
    check({"_id": 1, "tags": ["a", "b"]}, {"$unset": {"tags.0": 1}},
          {"_id": 1, "tags": [None, "b"]})


def test_a_set_through_a_scalar_is_skipped() -> None:
    check({"_id": 1, "meta": 5}, {"$set": {"meta.edits": 1}}, {"_id": 1, "meta": 5})


def test_ferretdb_logs_the_whole_document_as_a_set() -> None:
    # FerretDB 1.24: an update that removed `draft` logs {$v: 1, $set: <whole new doc>}
    pre = {"_id": 3, "text": "hello", "draft": True}
    check(pre, {"$v": 1, "$set": {"_id": 3, "text": "hello!"}}, {"_id": 3, "text": "hello!"})


def test_replacement_keeps_the_id_first() -> None:
    check({"_id": 9, "a": 1}, {"b": 2}, {"_id": 9, "b": 2})
    check({"_id": 9, "a": 1}, {"b": 2, "_id": 9}, {"_id": 9, "b": 2})


@pytest.mark.parametrize("update", [
    {"$inc": {"a": 1}},
    {"$v": 2, "diff": {"x": {}}},
    {"$v": 2, "diff": {"sarr": {"a": True, "q1": 1}}},
    {"$v": 2},
])
def test_an_update_no_oplog_holds_is_refused(update: dict[str, Any]) -> None:
    with pytest.raises(updates.UpdateError):
        updates.apply({"_id": 1, "a": 0, "arr": [1]}, update)
