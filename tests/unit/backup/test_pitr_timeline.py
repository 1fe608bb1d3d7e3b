"""The point-in-time timeline: which base and which slices a restore to T replays, what
can be restored at all, and which slices retention and merging may delete.

An archive is simulated as the archiver writes it: an oplog of ops, a base backup at a
consistent op, then slices cut at random flush points, some merged, some merges left
half done (parts beside the merged slice), and gaps where the oplog rolled over. The
outcome a user cares about: a restore to T replays exactly the ops after the base and
not after T, or is refused with the reason.
"""

from __future__ import annotations

import datetime
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatops.backup import oplog, pitr
from chatops.backup.oplog import OpTime
from chatops.backup.pitr import Base, Refused, Slice

T0 = 1_764_650_000


def make_slice(previous: OpTime, ops: list[OpTime]) -> Slice:
    first, last = ops[0], ops[-1]
    return Slice(
        key=f"pitr/abc/{first}-{last}.oplog.bson.gz",
        manifest_key=f"pitr/abc/{first}-{last}.manifest.json",
        previous=previous, first=first, last=last, count=len(ops), size=10 * len(ops),
        sha256="x", bson_bytes=100 * len(ops),
    )


def cut(previous: OpTime, ops: list[OpTime], cuts: list[int]) -> list[Slice]:
    """Slices of `ops` (all after `previous`) cut before the given indexes."""
    out, start = [], 0
    for end in [*sorted(set(c for c in cuts if 0 < c < len(ops))), len(ops)]:
        part = ops[start:end]
        if part:
            out.append(make_slice(previous, part))
            previous = part[-1]
        start = end
    return out


def replayed(plan: pitr.Plan, contents: dict[str, list[OpTime]]) -> list[OpTime]:
    """The ops a replay of the plan applies: each slice filtered to after < ts <= until,
    without repeats (replay is idempotent; an op seen twice is applied once)."""
    seen: list[OpTime] = []
    for s in plan.slices:
        for op in contents[s.key]:
            if plan.after < op <= plan.until and op not in seen:
                seen.append(op)
    return seen


@st.composite
def oplogs(draw: st.DrawFn) -> list[OpTime]:
    seconds = draw(st.lists(st.integers(0, 40), min_size=2, max_size=60))
    ops: list[OpTime] = []
    for t in sorted(seconds):
        i = ops[-1].i + 1 if ops and ops[-1].t == T0 + t else 1
        ops.append(OpTime(T0 + t, i))
    return ops


@given(
    ops=oplogs(),
    base_at=st.integers(0, 59),
    cuts=st.lists(st.integers(0, 60), max_size=10),
    target=st.integers(-2, 45),
)
def test_a_restore_replays_exactly_the_ops_after_the_base_through_the_target(
    ops: list[OpTime], base_at: int, cuts: list[int], target: int
) -> None:
    base_at %= len(ops)
    base = Base("b1", ops[base_at])
    slices = cut(base.consistent, ops[base_at + 1 :], cuts)
    contents = {s.key: [o for o in ops if s.previous < o <= s.last] for s in slices}
    until = OpTime(T0 + target, pitr.MAX_ORDINAL)
    newest = slices[-1].last if slices else base.consistent
    if until < base.consistent:
        with pytest.raises(Refused, match="before the oldest base backup"):
            pitr.plan([base], slices, until, "T")
        return
    if until.t > newest.t:
        with pytest.raises(Refused, match="after the newest archived op"):
            pitr.plan([base], slices, until, "T")
        return
    plan = pitr.plan([base], slices, until, "T")
    assert plan.base == base
    assert replayed(plan, contents) == [o for o in ops if base.consistent < o <= until]


@given(ops=oplogs(), cuts=st.lists(st.integers(0, 60), max_size=12), data=st.data())
def test_merged_and_half_merged_slices_restore_the_same(
    ops: list[OpTime], cuts: list[int], data: st.DataObject
) -> None:
    base = Base("b1", ops[0])
    small = cut(base.consistent, ops[1:], cuts)
    runs = pitr.merges(small, base.consistent, length_seconds=5, max_bytes=10**9)
    merged = list(small)
    for run in runs:
        whole = make_slice(run[0].previous, [o for o in ops if run[0].previous < o <= run[-1].last])
        merged.append(whole)
        if data.draw(st.booleans(), label="parts deleted"):  # else: the merge was interrupted
            merged = [s for s in merged if s not in run]
    contents = {s.key: [o for o in ops if s.previous < o <= s.last] for s in merged}
    for s in pitr.redundant(merged):
        assert any(s.within(o) for o in merged)
    tidy = [s for s in merged if s not in pitr.redundant(merged)]
    for target in range(0, 42, 3):
        until = OpTime(T0 + target, pitr.MAX_ORDINAL)
        if until < base.consistent or until.t > ops[-1].t:
            continue
        want = [o for o in ops if base.consistent < o <= until]
        assert replayed(pitr.plan([base], merged, until, "T"), contents) == want
        assert replayed(pitr.plan([base], tidy, until, "T"), contents) == want


def test_a_run_of_short_slices_merges_once_it_spans_the_slice_length() -> None:
    ops = [OpTime(T0 + s, 1) for s in range(0, 13)]
    small = cut(OpTime(T0 - 1, 1), ops, list(range(1, 13)))  # one slice a second
    runs = pitr.merges(small, OpTime(T0 - 1, 1), length_seconds=5, max_bytes=10**9)
    assert [(r[0].first.t - T0, r[-1].last.t - T0) for r in runs] == [(0, 5), (6, 11)]
    # the open run (second 12) waits for more; a merged slice alone is never merged again
    whole = [make_slice(r[0].previous, [o for o in ops if r[0].previous < o <= r[-1].last])
             for r in runs]
    assert pitr.merges([*whole, small[-1]], OpTime(T0 - 1, 1), 5, 10**9) == []


def test_the_size_cap_closes_a_run_before_its_length() -> None:
    ops = [OpTime(T0 + s, 1) for s in range(4)]
    small = cut(OpTime(T0 - 1, 1), ops, [1, 2, 3])  # 100 bytes each
    runs = pitr.merges(small, OpTime(T0 - 1, 1), length_seconds=600, max_bytes=200)
    assert [len(r) for r in runs] == [2, 2]


def test_a_gap_splits_the_timeline_and_a_restore_inside_it_is_refused() -> None:
    before = [OpTime(T0 + s, 1) for s in range(0, 10)]
    after = [OpTime(T0 + s, 1) for s in range(30, 40)]
    old, new = Base("b1", before[0]), Base("b2", after[0])
    slices = cut(old.consistent, before[1:], [3, 6]) + cut(new.consistent, after[1:], [4])
    line = pitr.timeline([old, new], slices)
    assert [(w.start, w.end, w.bases) for w in line.windows] == [
        (before[0], before[-1], ("b1",)), (after[0], after[-1], ("b2",))
    ]
    assert line.gaps == (pitr.Gap(before[-1], after[0]),)
    with pytest.raises(Refused, match="inside an archive gap") as refused:
        pitr.plan([old, new], slices, OpTime(T0 + 20, pitr.MAX_ORDINAL), "2026-12-02T04:33:40Z")
    message = str(refused.value)
    assert "2026-12-02T04:33:40Z" in message and pitr.rfc3339(before[-1]) in message
    assert pitr.rfc3339(after[0]) in message
    # either side of the gap restores, from the base of its own side
    assert pitr.plan([old, new], slices, OpTime(T0 + 5, pitr.MAX_ORDINAL), "T").base == old
    assert pitr.plan([old, new], slices, OpTime(T0 + 35, pitr.MAX_ORDINAL), "T").base == new


def test_the_newest_base_not_after_the_target_is_the_one_restored() -> None:
    ops = [OpTime(T0 + s, 1) for s in range(0, 20)]
    first, second = Base("b1", ops[2]), Base("b2", ops[12])  # b2 mid-chain: one window
    slices = cut(first.consistent, ops[3:], [4, 8, 14])
    line = pitr.timeline([first, second], slices)
    assert [(w.start, w.end, w.bases) for w in line.windows] == [
        (ops[2], ops[-1], ("b1", "b2"))
    ]
    at_11 = pitr.plan([first, second], slices, OpTime(T0 + 11, pitr.MAX_ORDINAL), "T")
    at_15 = pitr.plan([first, second], slices, OpTime(T0 + 15, pitr.MAX_ORDINAL), "T")
    assert at_11.base == first and at_15.base == second
    assert at_15.after == ops[12] and all(s.last > ops[12] for s in at_15.slices)
    exactly = pitr.plan([first, second], slices, second.consistent, "T")
    assert exactly.base == second and exactly.slices == ()


def test_retention_keeps_the_slices_of_kept_bases_and_only_those() -> None:
    ops = [OpTime(T0 + s, 1) for s in range(0, 30)]
    b1, b2 = Base("b1", ops[0]), Base("b2", ops[15])
    slices = cut(b1.consistent, ops[1:], [5, 10, 15, 20, 25])
    keep = pitr.needed([b2], slices)  # b1 expired
    assert keep == {s.key for s in slices if s.last > b2.consistent}
    kept = [s for s in slices if s.key in keep]
    for target in range(15, 30):
        until = OpTime(T0 + target, pitr.MAX_ORDINAL)
        assert pitr.plan([b2], kept, until, "T").slices == pitr.plan(
            [b2], slices, until, "T"
        ).slices


def test_no_base_at_all_is_refused_saying_so() -> None:
    with pytest.raises(Refused, match="no point-in-time base backup"):
        pitr.plan([], [], OpTime(T0, 1), "T")


def test_slice_keys_round_trip_and_other_keys_are_not_slices() -> None:
    folder = pitr.directory("chat/", "3F9A2C1B-0000-4000-8000-000000000000")
    assert folder == "chat/pitr/3f9a2c1b/"
    key = pitr.slice_key(folder, OpTime(T0, 1), OpTime(T0 + 5, 12))
    assert key == f"chat/pitr/3f9a2c1b/{T0}.1-{T0 + 5}.12.oplog.bson.gz"
    assert pitr.parse_key(folder, key) == pitr.SliceName(OpTime(T0, 1), OpTime(T0 + 5, 12), "slice")
    manifest = pitr.manifest_key(folder, OpTime(T0, 1), OpTime(T0 + 5, 12))
    assert pitr.parse_key(folder, manifest).kind == "manifest"  # type: ignore[union-attr]
    for other in (f"{folder}notes.txt", f"{folder}sub/{T0}.1-{T0}.2.oplog.bson.gz",
                  "chat/mongodb_20261202_050000.tar.gz"):
        assert pitr.parse_key(folder, other) is None


@settings(max_examples=50)
@given(
    st.datetimes(
        min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1),
        timezones=st.just(datetime.UTC),
    )
)
def test_a_time_is_inclusive_to_its_second_and_a_release_start_exclusive(
    at: datetime.datetime,
) -> None:
    second = int(at.replace(microsecond=0).timestamp())
    assert OpTime(second, 1) <= oplog.latest_at(at) < OpTime(second + 1, 0)
    assert OpTime(second - 1, 7) <= pitr.before(at) < OpTime(second, 0)


def test_a_manifest_round_trips_and_a_foreign_file_is_refused() -> None:
    from chatops.backup.manifest import ManifestSource

    manifest = pitr.SliceManifest(
        source=ManifestSource(namespace="chat", name="nightly", uid="u1"),
        key="chat/pitr/u1/1.1-2.1.oplog.bson.gz", databases=["chat"],
        previous=pitr.wire(OpTime(1, 0)), first=pitr.wire(OpTime(1, 1)),
        last=pitr.wire(OpTime(2, 1)), count=2,
        bson_bytes=200, sha256="ab" * 32, size=120,
        created_at=datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC),
    )
    assert pitr.parse_manifest(manifest.to_json()) == manifest
    with pytest.raises(ValueError, match="not a chatops slice manifest"):
        pitr.parse_manifest(b'{"format": "something else"}')
    assert set(string.hexdigits) >= set(manifest.sha256)


def test_a_missing_slice_is_named_as_a_break_not_as_the_end_of_the_archive() -> None:
    ops = [OpTime(T0 + s, 1) for s in range(0, 20)]
    base = Base("b1", ops[0])
    slices = cut(base.consistent, ops[1:], [5, 10, 15])
    holed = [s for i, s in enumerate(slices) if i != 1]
    with pytest.raises(Refused, match="a slice is missing") as refused:
        pitr.plan([base], holed, OpTime(T0 + 17, pitr.MAX_ORDINAL), "T")
    assert pitr.rfc3339(slices[0].last) in str(refused.value)
    assert pitr.plan([base], holed, OpTime(T0 + 3, pitr.MAX_ORDINAL), "T").slices == (slices[0],)
