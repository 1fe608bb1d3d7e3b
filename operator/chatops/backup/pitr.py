"""The point-in-time archive's names and timeline, pure: what S3 holds (base backups and
oplog slices) → the recoverable windows and the gaps between them, the plan of a restore
to a time, and which slices retention and merging may delete.

A slice is one S3 object of oplog entries, with a manifest written after it (a slice
without its manifest does not exist):

    <prefix>pitr/<uid8>/<first.t>.<first.i>-<last.t>.<last.i>.oplog.bson.gz
    <prefix>pitr/<uid8>/<first.t>.<first.i>-<last.t>.<last.i>.manifest.json

`<uid8>` is the ChatBackup's uid prefix, as in its backup ids: two ChatBackups archiving
one database into one prefix never write the same key. The object is gzip of raw BSON
entries one after the other (what `bsondump` reads, `mongorestore --oplogFile` takes),
every entry of the backed-up database(s) with `previous < ts <= last`: `previous` is the
position the slice was read after (the last op of the slice before it, or the base
backup's consistent time it started from), `first` and `last` its own first and last op.
So a slice *covers* the oplog interval (previous, last], and slices chain when one's
`previous` is within the coverage of the one before (equal, normally; overlapping after
a merge that was interrupted, which replays the same ops twice, harmlessly: replay is
idempotent).

A base backup's manifest says what it holds: the database as of its `consistentTime`.
A restore to T takes the newest base whose consistent time is not after T and the
chain of slices from that time through T.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from typing import Literal

import pydantic

from chatops import clock
from chatops.api.common import Model
from chatops.api.pitr import Timestamp
from chatops.backup.manifest import ManifestSource
from chatops.backup.oplog import OpTime

MAX_ORDINAL = 2**32 - 1
DIRECTORY = "pitr/"
SLICE_SUFFIX = ".oplog.bson.gz"
MANIFEST_SUFFIX = ".manifest.json"
RUN_LENGTH = 8
_NAME = re.compile(
    r"^(?P<ft>[0-9]{1,10})\.(?P<fi>[0-9]{1,10})-(?P<lt>[0-9]{1,10})\.(?P<li>[0-9]{1,10})"
    r"(?P<suffix>\.oplog\.bson\.gz|\.manifest\.json)$"
)


def at(value: Timestamp) -> OpTime:
    """An oplog position as status and manifests write it (`{t, i}`)."""
    return OpTime(value.t, value.i)


def wire(position: OpTime) -> Timestamp:
    return Timestamp(t=position.t, i=position.i)


def rfc3339(position: OpTime) -> str:
    """The second of a position, as RFC 3339."""
    return clock.rfc3339(position.time)


def before(moment: datetime.datetime) -> OpTime:
    """The last position before `moment`'s second: no op of that second (a release that
    started then may have written in it) and none after. (`oplog.latest_at` is the last
    position *of* a second: a restore to a time is inclusive to its second, as PBM's
    `--time`.)"""
    return OpTime(math.floor(moment.timestamp()) - 1, MAX_ORDINAL)


def _name(position: OpTime) -> str:
    return f"{position.t}.{position.i}"


# -- names ------------------------------------------------------------------------------


def directory(prefix: str, uid: str) -> str:
    """Where one ChatBackup's slices are: `<prefix>pitr/<uid8>/`."""
    run = re.sub(r"[^0-9a-z]", "", uid.lower())[:RUN_LENGTH] or "unowned"
    return f"{prefix}{DIRECTORY}{run}/"


def slice_key(folder: str, first: OpTime, last: OpTime) -> str:
    return f"{folder}{_name(first)}-{_name(last)}{SLICE_SUFFIX}"


def manifest_key(folder: str, first: OpTime, last: OpTime) -> str:
    return f"{folder}{_name(first)}-{_name(last)}{MANIFEST_SUFFIX}"


@dataclasses.dataclass(frozen=True)
class SliceName:
    first: OpTime
    last: OpTime
    kind: Literal["slice", "manifest"]


def parse_key(folder: str, key: str) -> SliceName | None:
    """What a key directly in a slice folder is; None for anything else."""
    if not key.startswith(folder):
        return None
    match = _NAME.match(key[len(folder) :])
    if match is None:
        return None
    kind: Literal["slice", "manifest"] = (
        "slice" if match["suffix"] == SLICE_SUFFIX else "manifest"
    )
    first = OpTime(int(match["ft"]), int(match["fi"]))
    last = OpTime(int(match["lt"]), int(match["li"]))
    return SliceName(first, last, kind)


class SliceManifest(Model):
    """A complete slice, written after its object."""

    format: Literal["chatops.dev/pitr-slice/v1"] = "chatops.dev/pitr-slice/v1"
    """Manifest format, for readers of later versions."""
    source: ManifestSource
    """The ChatBackup whose archiver wrote it (ownership is by uid)."""
    key: str
    """S3 key of the slice object."""
    databases: list[str]
    """Databases whose ops it holds."""
    previous: Timestamp
    """The position it was read after: the last op of the slice before it, or the
    consistent time of the base backup the archive started from."""
    first: Timestamp
    """Its first op."""
    last: Timestamp
    """Its last op."""
    count: int = pydantic.Field(ge=1)
    """Oplog entries in it."""
    bson_bytes: int = pydantic.Field(ge=0)
    """Bytes of its raw BSON, uncompressed."""
    sha256: str
    """SHA-256 of its raw BSON, uncompressed."""
    size: int = pydantic.Field(ge=0)
    """Bytes of the gzip object in S3."""
    created_at: datetime.datetime
    """When it was uploaded."""

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()


def parse_manifest(data: bytes) -> SliceManifest:
    """A slice manifest read back; ValueError (never a pydantic error) if it is not one."""
    try:
        return SliceManifest.model_validate_json(data)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ValueError(f"not a chatops slice manifest: {where}: {first['msg']}") from None


# -- the timeline -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Slice:
    """A complete slice: its manifest read and its object there with the size it says."""

    key: str
    manifest_key: str
    previous: OpTime
    first: OpTime
    last: OpTime
    count: int
    size: int
    sha256: str
    bson_bytes: int = 0

    @classmethod
    def of(cls, manifest: SliceManifest, manifest_key: str) -> Slice:
        return cls(
            key=manifest.key, manifest_key=manifest_key, previous=at(manifest.previous),
            first=at(manifest.first), last=at(manifest.last), count=manifest.count,
            size=manifest.size, sha256=manifest.sha256, bson_bytes=manifest.bson_bytes,
        )

    def covers(self, position: OpTime) -> bool:
        """Whether the op after `position` is in this slice's interval (previous, last]."""
        return self.previous <= position < self.last

    def within(self, other: Slice) -> bool:
        """Whether `other` covers all this slice covers (a merged slice its parts)."""
        return other.previous <= self.previous and self.last <= other.last and other != self


@dataclasses.dataclass(frozen=True)
class Base:
    """A complete, point-in-time base backup: the database as of `consistent`."""

    id: str
    consistent: OpTime
    key: str = ""


def chain(start: OpTime, slices: Iterable[Slice]) -> tuple[list[Slice], OpTime]:
    """The slices that carry the archive on from `start`, in order, and the position it
    reaches: from each position, the slice covering the next op that reaches furthest."""
    pool = sorted(slices, key=lambda s: (s.previous, s.last))
    out: list[Slice] = []
    position = start
    while True:
        nxt = max(
            (s for s in pool if s.covers(position)), key=lambda s: s.last, default=None
        )
        if nxt is None:
            return out, position
        out.append(nxt)
        position = nxt.last


@dataclasses.dataclass(frozen=True)
class Window:
    """Times a restore can target: from the consistent time of its oldest base backup to
    the last op its slices reach (both inclusive)."""

    start: OpTime
    end: OpTime
    bases: tuple[str, ...]
    """Ids of the base backups inside it, oldest first."""
    slices: int
    """Slices that carry it."""


@dataclasses.dataclass(frozen=True)
class Gap:
    """Between two windows: no restore can target a time after `after` and before
    `before` (the last op archived, and the consistent time of the next base)."""

    after: OpTime
    before: OpTime


@dataclasses.dataclass(frozen=True)
class Timeline:
    windows: tuple[Window, ...]
    gaps: tuple[Gap, ...]

    @property
    def end(self) -> OpTime | None:
        return self.windows[-1].end if self.windows else None


def timeline(bases: Sequence[Base], slices: Sequence[Slice]) -> Timeline:
    """The recoverable windows, oldest first, and the gaps between them."""
    windows: list[Window] = []
    for base in sorted(bases, key=lambda b: (b.consistent, b.id)):
        carried, end = chain(base.consistent, slices)
        if windows and base.consistent <= windows[-1].end:
            last = windows[-1]
            used = last.slices + sum(1 for s in carried if s.last > last.end)
            windows[-1] = Window(last.start, max(last.end, end), (*last.bases, base.id), used)
        else:
            windows.append(Window(base.consistent, end, (base.id,), len(carried)))
    gaps = tuple(Gap(a.end, b.start) for a, b in itertools.pairwise(windows))
    return Timeline(tuple(windows), gaps)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A restore to `until`: the base backup, then the slices to replay in order, each
    filtered to `after < ts <= until`."""

    base: Base
    slices: tuple[Slice, ...]
    after: OpTime
    until: OpTime

    @property
    def ops_at_most(self) -> int:
        return sum(s.count for s in self.slices)


class Refused(ValueError):
    """No restore can reach the time asked for; the message says why and what can."""


def plan(bases: Sequence[Base], slices: Sequence[Slice], until: OpTime, asked: str) -> Plan:
    """How to restore to `until` (`asked` is how the user wrote it, for messages):
    the newest base backup not after it and the slices from its consistent time through
    it. Refused when there is no such base, or the slices do not reach it."""
    line = timeline(bases, slices)
    older = [b for b in bases if b.consistent <= until]
    if not older:
        first = min((b.consistent for b in bases), default=None)
        if first is None:
            raise Refused(f"{asked}: the ChatBackup has no point-in-time base backup yet")
        raise Refused(
            f"{asked} is before the oldest base backup, consistent at {first}; "
            f"{_windows(line)}"
        )
    base = max(older, key=lambda b: (b.consistent, b.id))
    carried, end = chain(base.consistent, slices)
    if end.t < until.t:  # the archive has ops of until's second: all of them replay
        later = [s for s in slices if s.previous > end]
        if later and min(s.previous for s in later) < until:
            resumes = min(s.previous for s in later)
            raise Refused(
                f"{asked}: the archive is broken after {end}: no slice "
                f"holds the ops after it, the next one starts after {resumes} "
                f"— a slice is missing or was deleted; {_windows(line)}"
            )
        gap = next((g for g in line.gaps if g.after < until < g.before), None)
        if gap is not None:
            raise Refused(
                f"{asked} is inside an archive gap: the oplog from {gap.after} "
                f"to {gap.before} was lost; "
                f"{_windows(line)}"
            )
        raise Refused(
            f"{asked} is after the newest archived op, {end}; "
            f"{_windows(line)}"
        )
    needed: list[Slice] = []
    position = base.consistent
    for s in carried:
        if position >= until:
            break
        needed.append(s)
        position = s.last
    return Plan(base, tuple(needed), base.consistent, until)


def _windows(line: Timeline) -> str:
    if not line.windows:
        return "nothing can be restored to a point in time yet"
    said = ", ".join(f"{rfc3339(w.start)} to {rfc3339(w.end)}" for w in line.windows)
    return f"restorable: {said}"


# -- what may go ------------------------------------------------------------------------


def needed(bases: Sequence[Base], slices: Sequence[Slice]) -> set[str]:
    """Keys of the slices a restore from one of `bases` (the kept ones) could replay:
    every other slice can be deleted."""
    keep: set[str] = set()
    for base in bases:
        carried, _ = chain(base.consistent, slices)
        keep.update(s.key for s in carried)
    return keep


def redundant(slices: Sequence[Slice]) -> list[Slice]:
    """Slices whose whole interval another slice covers (the parts of a merged slice,
    left by a merge the operator was stopped in)."""
    return [s for s in slices if any(s.within(o) for o in slices)]


def merges(
    slices: Sequence[Slice], start: OpTime, length_seconds: float, max_bytes: int
) -> list[tuple[Slice, ...]]:
    """Runs of short slices (uploaded every flushInterval) to merge into one, following
    the chain from `start`: a run closes once it spans `length_seconds` from its first
    op, or holds `max_bytes`; closed runs of two or more are merged. The open run at the
    end keeps growing."""
    carried, _ = chain(start, slices)
    out: list[tuple[Slice, ...]] = []
    run: list[Slice] = []
    size = 0
    for s in carried:
        if run and s.previous != run[-1].last:  # an overlap: start over from here
            run, size = [], 0
        run.append(s)
        size += s.bson_bytes
        if s.last.t - run[0].first.t >= length_seconds or size >= max_bytes:
            if len(run) > 1:
                out.append(tuple(run))
            run, size = [], 0
    return out
