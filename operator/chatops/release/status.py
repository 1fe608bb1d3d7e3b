"""Status bookkeeping shared by the decision core: history, conditions, delays."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from chatops.api.analysis import Measurement
from chatops.api.common import Condition, ConditionStatus, condition, set_condition
from chatops.api.drain import Drain
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus, HistoryEntry

ACCEPTED = "Accepted"
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


def drain(spec: ChatReleaseSpec) -> Drain | None:
    """How the drained color's connections are closed (none: one cut)."""
    strategy = spec.strategy.canary or spec.strategy.blue_green
    return strategy.drain if strategy else None


def abort_scale_down_delay(spec: ChatReleaseSpec) -> int:
    """Seconds a rolled-back version keeps running (for a look at it) before scale-down."""
    strategy = spec.strategy.canary or spec.strategy.blue_green
    return strategy.abort_scale_down_delay_seconds if strategy else 0


_PROGRESSING = {"Progressing", "Paused", "Promoting"}
_SERVING_DESIRED = {"Succeeded", "Promoting"}

COMPLETE, READY, RECONCILED = "Complete", "Ready", "Reconciled"
"""Condition types a user waits on: `Complete` (the release of this generation finished,
whatever the outcome: the reason says which), `Ready` (the spec's version is live and
serves all traffic), `Reconciled` (False while an action on the cluster fails)."""


def with_conditions(
    status: ChatReleaseStatus, now: datetime.datetime, generation: int
) -> ChatReleaseStatus:
    """`Progressing` while a release or its rollback is in flight; `Complete` once it
    ended, with the outcome as its reason (`kubectl wait --for=condition=Complete`
    returns after a rollback too, once the cluster shows it); `Ready` only while the
    spec's version serves all traffic. Each names the generation it was computed from,
    so a wait on a new spec never passes on the old."""
    phase = status.phase or "Progressing"
    message = status.message or phase
    # a rollback is in flight until the cluster shows it (Degraded "rolling back …")
    rolling_back = phase == "Degraded" and status.aborted_revision is not None
    in_flight = phase in _PROGRESSING or rolling_back
    conditions = status.conditions
    for new in (
        condition(ACCEPTED, "True", "SpecValid", "the spec is valid", now, generation),
        condition("Progressing", _true(in_flight), phase, message, now, generation),
        condition(COMPLETE, _true(not in_flight), phase, message, now, generation),
        condition(READY, _true(phase in _SERVING_DESIRED), phase, message, now, generation),
    ):
        conditions = set_condition(conditions, new)
    return status.model_copy(update={"conditions": conditions})


def refused(
    conditions: list[Condition], message: str, now: datetime.datetime, generation: int
) -> list[Condition]:
    """A spec the operator cannot act on: nothing will happen for this generation, so
    `Complete` (reason InvalidSpec: waiting is over) and not `Ready`."""
    for new in (
        condition(COMPLETE, "True", "InvalidSpec", message, now, generation),
        condition(READY, "False", "InvalidSpec", message, now, generation),
        condition("Progressing", "False", "InvalidSpec", message, now, generation),
    ):
        conditions = set_condition(conditions, new)
    return conditions


def action_problem(status: ChatReleaseStatus) -> str | None:
    """What the last failed action said (the `Reconciled=False` message), if one failed."""
    found = next((c for c in status.conditions if c.type == RECONCILED), None)
    return found.message if found is not None and found.status == "False" else None


def stuck(
    status: ChatReleaseStatus, reason: str, problem: str, now: datetime.datetime, generation: int
) -> ChatReleaseStatus:
    """`status` while `problem` keeps the release from going on: `Reconciled=False`
    naming it, and the message says so instead of what the release waits for."""
    conditions = set_condition(
        status.conditions, condition(RECONCILED, "False", reason, problem, now, generation)
    )
    return status.model_copy(
        update={"conditions": conditions, "message": f"cannot carry out the release: {problem}"}
    )


def reconciled(
    status: ChatReleaseStatus, now: datetime.datetime, generation: int
) -> ChatReleaseStatus:
    """`status` once every action of a look went through."""
    ok = condition(RECONCILED, "True", "ActionsApplied", "every action went through", now,
                   generation)
    return status.model_copy(update={"conditions": set_condition(status.conditions, ok)})


def _true(value: bool) -> ConditionStatus:
    return "True" if value else "False"
