"""The drain of a color in waves, as a pure state machine over `status.scaleDown`.

After a switch (or a rollback) the drained color keeps serving its open connections for
the drain window; then its Deployments are scaled down in `waves` batches. Each wave is
done once the cluster shows its pods gone; `interval` later the app's own WebSocket
metrics say whether the clients it closed reconnected (the share of connection attempts
the color now serving accepted). A share below the gate's `min` is a reconnect storm:
the drain pauses, checks again every interval, and goes on once an interval is back
above `min`. Prometheus unreachable holds it too: a drain never goes on blind. A human
may cut the rest at once (`chatops promote --full`).

Everything is in the state (`ScaleDown`), written in the same status patch as the
decision that acts on it, and every action is "the color's Deployments have N pods",
derived from the state: an operator killed at any line repeats the same wave, never a
second one.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chatops import clock
from chatops.api.analysis import Measurement, Metric
from chatops.api.common import seconds
from chatops.api.drain import Drain, ReconnectGate
from chatops.api.release_status import ScaleDown
from chatops.events import Event

BUSY = 2.0
"""Seconds between looks while pods are going away."""
CHECK_NAME = "reconnect-success"


@dataclass(frozen=True)
class Pods:
    """One component's Deployment of the drained color, as the cluster shows it."""

    replicas: int
    """Desired replicas (spec)."""
    available: int
    """Available replicas: a removed pod counts until it is gone."""


@dataclass(frozen=True)
class Look:
    """What one look at the drain saw."""

    components: Sequence[str]
    pods: Mapping[str, Pods]
    """Per component; a missing Deployment has no pods."""
    traffic_left: bool
    """The router shows no new connections going to the color."""
    checks: Sequence[Measurement]
    """The reconnect check taken for this look (one measurement per component); empty
    when none was taken."""
    cut: bool
    """A human asked to finish the drain now."""
    now: datetime.datetime


@dataclass(frozen=True)
class Step:
    """What the drain asks for after one look."""

    state: ScaleDown | None
    """The new state; None once the color has no pods left."""
    replicas: Mapping[str, int]
    """Pods each component's Deployment of the color should have now (empty: leave it)."""
    check: bool = False
    """A reconnect check is needed to decide."""
    requeue: float = BUSY
    events: tuple[Event, ...] = ()


def begin(color: str, at: datetime.datetime, delay: int, drain: Drain | None) -> ScaleDown:
    """The state of a drain of `color` that may begin at `at`, `delay` seconds after the
    router shows no new connections going to it."""
    drain = drain or Drain()
    return ScaleDown(
        color="green" if color == "green" else "blue",
        at=clock.rfc3339(at),
        delay_seconds=delay,
        waves=drain.waves,
        interval_seconds=seconds(drain.interval),
    )


def window(
    state: ScaleDown, unrouted: bool, now: datetime.datetime
) -> tuple[ScaleDown, datetime.datetime | None]:
    """The drain window of a color no wave has touched yet: `state` with `since` set by
    the first look to see the router send it no new connections (`unrouted`), and when
    the window ends — until then its pods stay as they are, serving what the router
    still sends them; None while the router sends it new connections (not begun)."""
    if not unrouted:
        return state, None
    if state.since is None:
        state = state.model_copy(update={"since": clock.rfc3339(now)})
    since = clock.parse(state.since or clock.rfc3339(now))
    return state, max(
        clock.parse(state.at), since + datetime.timedelta(seconds=state.delay_seconds)
    )


def target(initial: int, waves: int, wave: int) -> int:
    """Pods left after `wave` of `waves` (0: before the first), of `initial`: the first
    waves take the larger batches, the last leaves none."""
    wave = min(max(wave, 0), waves)
    return -(-initial * (waves - wave) // waves)


def next_wave(state: ScaleDown) -> int:
    """The next wave that removes at least one pod of some component (waves that would
    remove none are skipped), or the last."""
    now = {c: target(n, state.waves, state.wave) for c, n in state.replicas.items()}
    for k in range(state.wave + 1, state.waves):
        if any(target(n, state.waves, k) < now[c] for c, n in state.replicas.items()):
            return k
    return state.waves


def check_metric(gate: ReconnectGate) -> Metric:
    """The reconnect check as an analysis metric, so it is judged as measurements are."""
    return Metric(name=CHECK_NAME, query=gate.query, min=gate.min, on_no_data=gate.on_no_data)


def advance(state: ScaleDown, look: Look) -> Step:
    """One look at a drain: wait for the window, begin a wave, wait for its pods to go,
    check the reconnects, begin the next — or pause."""
    now = look.now
    if state.wave == 0:
        state, due = window(state, look.traffic_left, now)
        if due is None:
            return Step(state, {})  # never scale down under new connections
        if now < due:
            return Step(state, {}, requeue=(due - now).total_seconds())
        initial = {c: look.pods[c].replicas if c in look.pods else 0 for c in look.components}
        state = state.model_copy(update={"replicas": initial})
        return _begin_wave(state, next_wave(state), "", now)
    wanted = _targets(state, look.components)
    if not all(_shown(look.pods.get(c), n) for c, n in wanted.items()):
        return Step(state, wanted)
    if state.wave_done_at is None:
        state = state.model_copy(update={"wave_done_at": clock.rfc3339(now)})
    if state.wave >= state.waves:
        return Step(None, wanted)
    if look.cut:
        cut = _begin_wave(state, state.waves, "", now)
        note = Event("Normal", "DrainCut", f"the rest of the drain of {state.color} cut at "
                     "once, as chatops.dev/promote asked")
        return Step(cut.state, cut.replicas, requeue=cut.requeue, events=(*cut.events, note))
    last = clock.parse(state.wave_done_at or clock.rfc3339(now))
    if state.checked_at is not None:
        last = max(last, clock.parse(state.checked_at))
    due = last + datetime.timedelta(seconds=state.interval_seconds)
    if now < due:
        return Step(state, wanted, requeue=(due - now).total_seconds())
    if not look.checks:
        return Step(state, wanted, check=True)
    return _judged(state, wanted, look.checks, now)


def _targets(state: ScaleDown, components: Sequence[str]) -> dict[str, int]:
    names = dict.fromkeys([*state.replicas, *components])
    return {c: target(state.replicas.get(c, 0), state.waves, state.wave) for c in names}


def _shown(pods: Pods | None, wanted: int) -> bool:
    """The cluster shows the wave done for a component: no more pods asked for than
    `wanted`, and none beyond it still available (removed pods gone)."""
    return pods is None or (pods.replicas == wanted and pods.available <= wanted)


def _begin_wave(state: ScaleDown, wave: int, check: str, now: datetime.datetime) -> Step:
    new = state.model_copy(
        update={"wave": wave, "wave_started_at": clock.rfc3339(now), "wave_done_at": None,
                "checked_at": None, "paused": None, "check": check or state.check}
    )
    wanted = _targets(new, list(new.replicas))
    events: tuple[Event, ...] = ()
    if new.waves > 1:
        pods = ", ".join(f"{c} to {n}" for c, n in wanted.items())
        after = f" ({check})" if check else ""
        events = (Event("Normal", "DrainWave",
                        f"wave {wave}/{new.waves} of the drain of {new.color}: {pods} "
                        f"pod(s){after}"),)
    return Step(new, wanted, events=events)


def check_window(state: ScaleDown, now: datetime.datetime) -> float:
    """Seconds the reconnect check looks back over: since the last check of this wave,
    else since the wave began — its clients start reconnecting as soon as its pods close,
    which may be before the cluster shows them gone — and at least an interval."""
    since = state.checked_at or state.wave_started_at or state.wave_done_at
    looked = (now - clock.parse(since)).total_seconds() if since else 0.0
    return max(looked, state.interval_seconds)


def verdict(checks: Sequence[Measurement]) -> tuple[str, str]:
    """`go`, `storm` or `hold` (the check could not be taken), and what it saw."""
    errors = [m for m in checks if m.verdict == "Error"]
    if errors:
        return "hold", f"cannot check reconnects on {errors[0].component}: {errors[0].message}"
    bad = [m for m in checks if m.verdict in ("Fail", "Inconclusive")]
    if bad:
        return "storm", f"reconnect storm on {bad[0].component}: {bad[0].message}"
    seen = ", ".join(f"{m.component} {m.message}" for m in checks)
    return "go", f"reconnects {seen}"


def _judged(
    state: ScaleDown, wanted: dict[str, int], checks: Sequence[Measurement],
    now: datetime.datetime,
) -> Step:
    outcome, seen = verdict(checks)
    if outcome == "go":
        step = _begin_wave(state, next_wave(state), seen, now)
        if state.paused is not None:
            resumed = Event("Normal", "DrainResumed", f"drain of {state.color} goes on: {seen}")
            return Step(step.state, step.replicas, requeue=step.requeue,
                        events=(resumed, *step.events))
        return step
    held = state.model_copy(
        update={"checked_at": clock.rfc3339(now), "paused": seen, "check": seen}
    )
    events: tuple[Event, ...] = ()
    if state.paused is None or _storm(state.paused) != (outcome == "storm"):
        events = (Event("Warning", "DrainPaused",
                        f"drain of {state.color} paused after wave {state.wave}/{state.waves}: "
                        f"{seen}"),)
    return Step(held, wanted, requeue=max(state.interval_seconds, 0.5), events=events)


def _storm(paused: str) -> bool:
    return paused.startswith("reconnect storm")


def summary(state: ScaleDown) -> str:
    """The drain in a phrase, for messages: `wave 2/4 of blue; paused: …`."""
    where = f"wave {state.wave}/{state.waves} of {state.color}" if state.wave else (
        f"{state.color} waiting for its drain window"
    )
    return f"{where}; paused: {state.paused}" if state.paused else where
