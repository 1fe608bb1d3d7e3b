"""The update of an oplog `u` entry applied to a document, as the server's oplog
applier does it. Pure: a document in, the new document out.

An update entry's `o` is one of:

- a **replacement**: a whole document, no `$` field (`replaceOne`, and every update
  before MongoDB 5.0 that rewrote the document);
- **`$v: 1` modifiers** (MongoDB ≤ 4.4, and FerretDB 1.x): `$set` of dotted paths and
  `$unset`. FerretDB logs every update as `{$v: 1, $set: <the whole new document>}`:
  a `$set` that carries `_id` is such a whole document, and is applied as the
  replacement it is (a plain `$set` would keep the fields the update removed; a real
  server never logs `_id` in a `$set`, since `_id` cannot change);
- a **`$v: 2` diff** (MongoDB ≥ 5.0), `{$v: 2, diff: D}` where D has the sections
  `d` (fields deleted), `u` (fields updated in place), `i` (fields inserted at the
  end), `b` (binary fields: truncate at `o`, append `d`) and `s<field>` (a sub-diff of
  an embedded document, or of an array when it holds `a: true`: then `l` is the new
  length, and `u<index>` / `s<index>` update or diff one element). Semantics follow
  mongo's `document_diff_applier.cpp`, including what makes a diff idempotent: a
  sub-diff whose field is missing does nothing, one whose field has another type sets
  it to null (a later entry rewrites it), an array shorter than the diff expects is
  padded with nulls.

Every one of these is idempotent: applying it to its own result changes nothing, so a
replay may start before the state it is applied to (a fuzzy dump) and may be repeated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson.binary import Binary

Document = dict[str, Any]


class UpdateError(ValueError):
    """An update this applier does not understand (an operator no oplog holds)."""


def apply(document: Mapping[str, Any], update: Mapping[str, Any]) -> Document:
    """`document` after the update `update` (an oplog entry's `o`)."""
    version = update.get("$v")
    if version == 2 or ("diff" in update and "$v" in update):
        diff = update.get("diff")
        if not isinstance(diff, Mapping):
            raise UpdateError("a $v: 2 update without a diff document")
        return apply_diff(document, diff)
    operators = [k for k in update if k.startswith("$")]
    if not operators:
        return replace(document, update)
    unknown = sorted(set(operators) - {"$v", "$set", "$unset"})
    if unknown:
        raise UpdateError(f"update operator(s) {', '.join(unknown)} never appear in an oplog")
    sets = update.get("$set") or {}
    if not isinstance(sets, Mapping) or not isinstance(update.get("$unset") or {}, Mapping):
        raise UpdateError("$set and $unset must be documents")
    if "_id" in sets and "$unset" not in update:  # FerretDB: the whole new document
        return replace(document, sets)
    out: Document = _copy(document)
    for path, value in sets.items():
        _set_path(out, path.split("."), value)
    for path in update.get("$unset") or {}:
        _unset_path(out, path.split("."))
    return out


def replace(document: Mapping[str, Any], replacement: Mapping[str, Any]) -> Document:
    """The replacement, keeping the document's `_id` first, as the server does."""
    out: Document = {"_id": replacement.get("_id", document.get("_id"))}
    out.update((k, v) for k, v in replacement.items() if k != "_id")
    return out


# -- $v: 2 diffs --------------------------------------------------------------------


def apply_diff(document: Mapping[str, Any], diff: Mapping[str, Any]) -> Document:
    """A document after a `$v: 2` diff (see the module's docstring)."""
    deletes = _section(diff, "d")
    updates = _section(diff, "u")
    inserts = _section(diff, "i")
    binaries = _section(diff, "b")
    subdiffs = {k[1:]: v for k, v in diff.items() if k.startswith("s") and len(k) > 1}
    for key in diff:
        if key not in ("d", "u", "i", "b") and not (key.startswith("s") and len(key) > 1):
            raise UpdateError(f"unknown section {key!r} in a $v: 2 diff")
    out: Document = {}
    written: set[str] = set()
    for field, value in document.items():
        if field in deletes or field in inserts:
            continue  # deleted, or re-inserted at the end
        if field in updates:
            out[field] = updates[field]
            written.add(field)
        elif field in binaries:
            out[field] = _binary(value, binaries[field])
        elif field in subdiffs:
            out[field] = _subdiff(value, subdiffs[field])
        else:
            out[field] = value
    for field, value in (*updates.items(), *inserts.items()):
        if field not in written:
            out[field] = value
    return out


def _section(diff: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = diff.get(name) or {}
    if not isinstance(section, Mapping):
        raise UpdateError(f"section {name!r} of a $v: 2 diff is not a document")
    return section


def _is_array_diff(diff: Mapping[str, Any]) -> bool:
    return diff.get("a") is True


def _subdiff(value: Any, diff: Any) -> Any:
    if not isinstance(diff, Mapping):
        raise UpdateError("a sub-diff is not a document")
    if _is_array_diff(diff):
        return _apply_array_diff(value, diff) if isinstance(value, list) else None
    return apply_diff(value, diff) if isinstance(value, Mapping) else None


def _apply_array_diff(array: list[Any], diff: Mapping[str, Any]) -> list[Any]:
    size = diff.get("l")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise UpdateError(f"array diff length {size!r} is not a count")
    changes: dict[int, tuple[str, Any]] = {}
    for key, value in diff.items():
        if key in ("a", "l"):
            continue
        kind, index = key[:1], key[1:]
        if kind not in ("u", "s") or not index.isdigit():
            raise UpdateError(f"unknown entry {key!r} in an array diff")
        changes[int(index)] = (kind, value)
    length = size if size is not None else len(array)
    if changes:
        length = max(length, max(changes) + 1) if size is None else length
    out: list[Any] = []
    for position in range(length):
        before = array[position] if position < len(array) else None
        change = changes.get(position)
        if change is None:
            out.append(before)
        elif change[0] == "u":
            out.append(change[1])
        elif position >= len(array):
            out.append(None)  # the array was shorter than the diff expects
        else:
            out.append(_subdiff(before, change[1]))
    return out


def _binary(value: Any, change: Any) -> Any:
    """A binary field truncated at `o` with `d` appended, its subtype kept."""
    if not isinstance(change, Mapping) or not isinstance(change.get("o"), int):
        raise UpdateError("a binary diff needs an offset o and data d")
    data = bytes(change.get("d") or b"")
    if not isinstance(value, bytes | Binary):
        return None
    subtype = value.subtype if isinstance(value, Binary) else 0
    return Binary(bytes(value)[: change["o"]] + data, subtype)


# -- $v: 1 modifiers ----------------------------------------------------------------


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _set_path(node: Any, parts: list[str], value: Any) -> None:
    """`$set` of one dotted path: missing documents are created on the way, an array
    element past the end pads the array with nulls. A path through a scalar is left
    alone: the oplog applier skips it, and a later entry rewrites that field."""
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        if not head.isdigit():
            return
        index = int(head)
        node.extend([None] * (index + 1 - len(node)))
        if rest:
            if node[index] is None:
                node[index] = {}
            _set_path(node[index], rest, value)
        else:
            node[index] = _copy(value)
        return
    if not isinstance(node, dict):
        return
    if not rest:
        node[head] = _copy(value)
        return
    if head not in node or node[head] is None:
        node[head] = {}
    _set_path(node[head], rest, value)


def _unset_path(node: Any, parts: list[str]) -> None:
    """`$unset` of one dotted path; an array element becomes null, as the server does."""
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        if not head.isdigit() or int(head) >= len(node):
            return
        if rest:
            _unset_path(node[int(head)], rest)
        else:
            node[int(head)] = None
    elif isinstance(node, dict) and head in node:
        if rest:
            _unset_path(node[head], rest)
        else:
            del node[head]
