"""What a release cost its users, as pure bookkeeping: which window to count now, and
what a count changes in status.

A release's window opens when it starts (`status.cost`) and moves with it into its
history entry when it ends; it closes when the release is complete — its drained color
gone, or at once when nothing drains. While open, the figures so far are counted every
`REFRESH` seconds; once closed and `settle` has passed (Prometheus has scraped past the
end), the window is counted once more, at its end, and the figures are final. A count
Prometheus could not answer leaves the figures as they were (unknown before any count,
never zero), says why, and is tried again at the next look `REFRESH` later.
"""

from __future__ import annotations

import datetime

from chatops import clock
from chatops.api.common import seconds
from chatops.api.cost import CostQueries, ReleaseCost
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus, HistoryEntry
from chatops.release.model import Color, CostCount, CostWindow, other

REFRESH = 60.0
"""Seconds between two counts of the same window (the figures so far, or a retry): each
is a query per figure and a status write, per release (with 200 releases at 30 s they
were most of the operator's Prometheus queries)."""


def opened(color: Color, since: str) -> ReleaseCost:
    """The cost of a release starting at `since` on `color`: nothing counted yet."""
    return ReleaseCost(color=color, since=since)


def account(
    status: ChatReleaseStatus,
    spec: ChatReleaseSpec,
    now: datetime.datetime,
    counted: CostCount | None,
) -> tuple[ChatReleaseStatus, CostWindow | None, float | None]:
    """`status` with the window of a complete release closed and `counted` recorded if
    it is the count due; the window to count now (if one is due and was not counted);
    and when a closed window will be due (seconds), if one waits to settle."""
    status = _closed(status, now)
    settle = seconds((spec.cost or CostQueries()).settle)
    due = _due(status, now, settle)
    if due is not None and counted is not None and counted.window == due[1]:
        return _recorded(status, due[0], counted, now), None, _settling(status, now, settle)
    return status, due[1] if due is not None else None, _settling(status, now, settle)


def _closed(status: ChatReleaseStatus, now: datetime.datetime) -> ChatReleaseStatus:
    """The newest history entry's window closes once nothing of its release drains (no
    `scaleDown`); an older one still open (a status from before) closes where it ended."""
    history = list(status.history)
    changed = False
    for i, entry in enumerate(history):
        if entry.cost is None or entry.cost.until is not None:
            continue
        newest = i == len(history) - 1
        if newest and status.scale_down is not None:
            continue
        until = clock.rfc3339(now) if newest else entry.finished_at or clock.rfc3339(now)
        history[i] = entry.model_copy(
            update={"cost": entry.cost.model_copy(update={"until": until})}
        )
        changed = True
    return status.model_copy(update={"history": history}) if changed else status


def _due(
    status: ChatReleaseStatus, now: datetime.datetime, settle: float
) -> tuple[int | None, CostWindow] | None:
    """(history index, or None for the release in flight; its window) of the count due
    now: first a closed window that settled, then an open one."""
    candidates: list[tuple[int | None, ReleaseCost, HistoryEntry | None]] = [
        (i, e.cost, e) for i, e in enumerate(status.history) if e.cost is not None
    ]
    if status.cost is not None:
        candidates.append((None, status.cost, None))
    closed = [c for c in candidates if c[1].until is not None]
    opened_ = [c for c in candidates if c[1].until is None]
    for index, cost, entry in (*closed, *opened_):
        if cost.final or not _rested(cost, now):
            continue
        if cost.until is not None:
            end = clock.parse(cost.until)
            if now < end + datetime.timedelta(seconds=settle):
                continue
        else:
            end = now
        revision = entry.revision if entry is not None else status.canary_revision or ""
        drained: Color | None = None
        if entry is not None:
            drained = other(cost.color) if entry.result == "Succeeded" else cost.color
        return index, CostWindow(cost.color, clock.parse(cost.since), end, revision, drained)
    return None


def _rested(cost: ReleaseCost, now: datetime.datetime) -> bool:
    """Not counted (or tried) in the last `REFRESH` seconds; a closed window that was
    never counted at its end is due at once."""
    if cost.counted_at is None:
        return True
    if cost.until is not None and cost.counted_until != cost.until and cost.problem is None:
        return True
    return now - clock.parse(cost.counted_at) >= datetime.timedelta(seconds=REFRESH)


def _settling(status: ChatReleaseStatus, now: datetime.datetime, settle: float) -> float | None:
    """Seconds until the first closed window that is not final settles, if one waits."""
    waits = [
        (clock.parse(e.cost.until) + datetime.timedelta(seconds=settle) - now).total_seconds()
        for e in status.history
        if e.cost is not None and e.cost.until is not None and not e.cost.final
    ]
    ahead = [w for w in waits if w > 0]
    return min(ahead) if ahead else None


def _recorded(
    status: ChatReleaseStatus, index: int | None, counted: CostCount, now: datetime.datetime
) -> ChatReleaseStatus:
    cost = status.cost if index is None else status.history[index].cost
    assert cost is not None
    at = clock.rfc3339(now)
    if counted.problem is not None:
        new = cost.model_copy(update={"problem": counted.problem[:512], "counted_at": at})
    else:
        until = clock.rfc3339(counted.window.until)
        new = cost.model_copy(
            update={
                "requests": counted.requests,
                "failed_requests": counted.failed_requests,
                "websockets_moved": counted.websockets_moved,
                "websockets_dropped": counted.websockets_dropped,
                "counted_until": until,
                "counted_at": at,
                "problem": None,
                "final": cost.until is not None,
            }
        )
    if index is None:
        return status.model_copy(update={"cost": new})
    history = list(status.history)
    history[index] = history[index].model_copy(update={"cost": new})
    return status.model_copy(update={"history": history})
