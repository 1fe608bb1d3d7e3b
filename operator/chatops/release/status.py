"""Status bookkeeping shared by the decision core: history, conditions, delays."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from chatops.api.analysis import Measurement
from chatops.api.common import Condition, now_rfc3339, set_condition
from chatops.api.release import ChatReleaseSpec, ChatReleaseStatus, HistoryEntry

KEEP_MEASUREMENTS = 60
"""Measurements kept in status.analysis for people to read: enough to explain the last
rounds. Nothing is judged from them (the limits use `status.analysisRun`'s counters)."""


def kept_measurements(
    measurements: Sequence[Measurement], spec: ChatReleaseSpec
) -> list[Measurement]:
    """What `status.analysis` keeps of `measurements` (oldest first): the latest of
    every metric of every component in the spec, so each one shows whatever the number
    of components and metrics, then the most recent others, `KEEP_MEASUREMENTS` in all
    (or one per metric and component when there are more: at most 10 x 20 = 200)."""
    wanted = {
        (m.name, c.name)
        for m in (spec.analysis.metrics if spec.analysis else [])
        for c in spec.components
    }
    latest = {(m.metric, m.component): i for i, m in enumerate(measurements)}
    keep = {i for key, i in latest.items() if key in wanted}
    room = KEEP_MEASUREMENTS - len(keep)
    for i in reversed(range(len(measurements))):
        if room <= 0:
            break
        if i not in keep:
            keep.add(i)
            room -= 1
    return [m for i, m in enumerate(measurements) if i in keep]


def append_history(
    history: list[HistoryEntry], entry: HistoryEntry, limit: int
) -> list[HistoryEntry]:
    return [*history, entry][-limit:]


def scale_down_delay(spec: ChatReleaseSpec) -> int:
    """Seconds the old version keeps serving open connections after a promotion."""
    strategy = spec.strategy.canary or spec.strategy.blue_green
    return strategy.scale_down_delay_seconds if strategy else 0


def abort_scale_down_delay(spec: ChatReleaseSpec) -> int:
    """Seconds a rolled-back version keeps running (for a look at it) before scale-down."""
    strategy = spec.strategy.canary or spec.strategy.blue_green
    return strategy.abort_scale_down_delay_seconds if strategy else 0


_PROGRESSING = {"Progressing", "Paused", "Promoting"}
_SERVING_DESIRED = {"Succeeded", "Promoting"}


def with_conditions(
    status: ChatReleaseStatus, now: datetime.datetime, generation: int
) -> ChatReleaseStatus:
    """`Progressing` while a release is in flight; `Ready` once the spec's version serves
    all traffic (`kubectl wait --for=condition=Ready` waits for a release to finish)."""
    phase = status.phase or "Progressing"
    at = now_rfc3339(now)
    message = status.message or phase
    progressing = Condition(
        type="Progressing",
        status="True" if phase in _PROGRESSING else "False",
        reason=phase,
        message=message,
        last_transition_time=at,
        observed_generation=generation,
    )
    ready = Condition(
        type="Ready",
        status="True" if phase in _SERVING_DESIRED else "False",
        reason=phase,
        message=message,
        last_transition_time=at,
        observed_generation=generation,
    )
    accepted = Condition(
        type="Accepted",
        status="True",
        reason="SpecValid",
        message="the spec is valid",
        last_transition_time=at,
        observed_generation=generation,
    )
    conditions = status.conditions
    for condition in (accepted, progressing, ready):
        conditions = set_condition(conditions, condition)
    return status.model_copy(update={"conditions": conditions})
