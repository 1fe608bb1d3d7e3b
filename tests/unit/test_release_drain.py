"""The drain's wave machine, one look per row: what a user sees of the old color (its
pods per wave), whether the drain waits, checks reconnects, pauses or goes on."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import pytest

from chatops.api.analysis import Measurement, Verdict
from chatops.api.drain import Drain
from chatops.api.release_status import ScaleDown
from chatops.release import drain as drains

T0 = datetime.datetime(2026, 12, 2, 6, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> str:
    return (T0 + datetime.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def state(**fields: Any) -> ScaleDown:
    base: dict[str, Any] = {
        "color": "blue", "at": at(30), "delay_seconds": 30, "since": at(0),
        "waves": 3, "interval_seconds": 10,
    }
    return ScaleDown.model_validate({**base, **fields})


def check(verdict: Verdict, component: str = "api", message: str = "") -> Measurement:
    return Measurement(metric=drains.CHECK_NAME, component=component, query="q",
                       verdict=verdict, time=at(0), message=message or verdict)


@dataclass(frozen=True)
class Row:
    why: str
    state: ScaleDown
    now: float
    pods: dict[str, tuple[int, int]] = field(default_factory=lambda: {"api": (6, 6)})
    traffic_left: bool = True
    checks: tuple[Measurement, ...] = ()
    cut: bool = False
    # expected
    replicas: dict[str, int] | None = None
    done: bool = False
    wave: int | None = None
    needs_check: bool = False
    paused: bool = False
    events: tuple[str, ...] = ()

    def look(self) -> drains.Look:
        return drains.Look(
            components=["api"],
            pods={c: drains.Pods(*p) for c, p in self.pods.items()},
            traffic_left=self.traffic_left,
            checks=self.checks,
            cut=self.cut,
            now=T0 + datetime.timedelta(seconds=self.now),
        )


ROWS = [
    Row("traffic still reaches the old color: nothing is scaled down under it",
        state(), now=100, traffic_left=False, replicas={}, wave=0),
    Row("within the drain window every open connection keeps its pod",
        state(), now=29, replicas={}, wave=0),
    Row("window over: wave 1 of 3 takes 2 of 6 pods",
        state(), now=30, replicas={"api": 4}, wave=1, events=("DrainWave",)),
    Row("one wave is today's single cut, to zero and no event",
        state(waves=1), now=30, replicas={"api": 0}, wave=1),
    Row("wave 1 ordered but its pods still there: wait for them, no check yet",
        state(wave=1, replicas={"api": 6}), now=31, pods={"api": (4, 6)},
        replicas={"api": 4}, wave=1),
    Row("wave 1 done: the interval to the check starts when the pods are gone",
        state(wave=1, replicas={"api": 6}), now=32, pods={"api": (4, 4)},
        replicas={"api": 4}, wave=1),
    Row("interval not over since the wave was done",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32)), now=41, pods={"api": (4, 4)},
        replicas={"api": 4}, wave=1),
    Row("interval over: the reconnect check is needed",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32)), now=42, pods={"api": (4, 4)},
        replicas={"api": 4}, wave=1, needs_check=True),
    Row("reconnects passed: wave 2 takes 2 more",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32)), now=42, pods={"api": (4, 4)},
        checks=(check("Pass"),), replicas={"api": 2}, wave=2, events=("DrainWave",)),
    Row("a reconnect storm pauses the drain: no more pods go",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32)), now=42, pods={"api": (4, 4)},
        checks=(check("Fail", message="0.8 < min 0.99"),), replicas={"api": 4}, wave=1,
        paused=True, events=("DrainPaused",)),
    Row("no data judged Inconclusive (onNoData) holds as a storm does",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32)), now=42, pods={"api": (4, 4)},
        checks=(check("Inconclusive"),), replicas={"api": 4}, wave=1, paused=True,
        events=("DrainPaused",)),
    Row("Prometheus unreachable holds the drain: it never goes on blind",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32)), now=42, pods={"api": (4, 4)},
        checks=(check("Error", message="unreachable"),), replicas={"api": 4}, wave=1,
        paused=True, events=("DrainPaused",)),
    Row("paused: the next check waits an interval after the last one",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32), checked_at=at(42),
              paused="reconnect storm on api: 0.8"), now=51, pods={"api": (4, 4)},
        replicas={"api": 4}, wave=1, paused=True),
    Row("still a storm at the next check: paused, and said once only",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32), checked_at=at(42),
              paused="reconnect storm on api: 0.8"), now=52, pods={"api": (4, 4)},
        checks=(check("Fail"),), replicas={"api": 4}, wave=1, paused=True),
    Row("the storm is over: resumed, wave 2",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32), checked_at=at(42),
              paused="reconnect storm on api: 0.8"), now=52, pods={"api": (4, 4)},
        checks=(check("Pass"),), replicas={"api": 2}, wave=2,
        events=("DrainResumed", "DrainWave")),
    Row("a human cuts the rest at once, storm or not",
        state(wave=1, replicas={"api": 6}, wave_done_at=at(32), checked_at=at(42),
              paused="reconnect storm on api: 0.8"), now=43, pods={"api": (4, 4)},
        cut=True, replicas={"api": 0}, wave=3, events=("DrainWave", "DrainCut")),
    Row("the last wave done: the drain is over",
        state(wave=3, replicas={"api": 6}), now=60, pods={"api": (0, 0)},
        replicas={"api": 0}, done=True),
    Row("the last wave ordered, a pod still terminating: not over",
        state(wave=3, replicas={"api": 6}), now=60, pods={"api": (0, 1)},
        replicas={"api": 0}, wave=3),
    Row("more waves than pods: waves that remove none are skipped",
        state(waves=5), now=30, pods={"api": (2, 2)}, replicas={"api": 1}, wave=3,
        events=("DrainWave",)),
    Row("a Deployment deleted meanwhile has no pods: its wave is done",
        state(wave=1, replicas={"api": 6}), now=31, pods={}, replicas={"api": 4}, wave=1),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.why for r in ROWS])
def test_a_look_at_the_drain(row: Row) -> None:
    step = drains.advance(row.state, row.look())
    assert dict(step.replicas) == (row.replicas or {})
    assert (step.state is None) == row.done
    if step.state is not None:
        assert step.state.wave == row.wave
        assert (step.state.paused is not None) == row.paused
    assert step.check == row.needs_check
    assert tuple(e.reason for e in step.events) == row.events


@pytest.mark.parametrize(
    ("initial", "waves", "left"),
    [
        (6, 3, [6, 4, 2, 0]),
        (5, 2, [5, 3, 0]),
        (1, 4, [1, 1, 1, 1, 0]),
        (10, 1, [10, 0]),
        (0, 3, [0, 0, 0, 0]),
    ],
)
def test_pods_left_after_each_wave(initial: int, waves: int, left: list[int]) -> None:
    assert [drains.target(initial, waves, k) for k in range(waves + 1)] == left


def test_begin_takes_the_waves_and_interval_of_the_spec() -> None:
    begun = drains.begin("green", T0, 45, Drain(waves=4, interval="1m"))
    assert (begun.color, begun.waves, begun.interval_seconds, begun.delay_seconds) == (
        "green", 4, 60, 45,
    )
    assert drains.begin("blue", T0, 30, None).waves == 1  # no drain: the single cut


def test_the_storm_pause_is_said_in_the_events_with_what_was_seen() -> None:
    row = ROWS[9]
    step = drains.advance(row.state, row.look())
    assert step.state is not None and step.state.paused is not None
    assert "0.8 < min 0.99" in step.state.paused
    assert "wave 1/3" in step.events[0].message


def test_the_check_looks_back_to_the_waves_start_then_to_the_last_check() -> None:
    # Clients reconnect as soon as the pods close, which may be before the cluster shows
    # them gone: the first check covers the whole wave, not just the interval after it.
    begun = state(wave=1, wave_started_at=at(30), wave_done_at=at(33))
    assert drains.check_window(begun, T0 + datetime.timedelta(seconds=43)) == 13
    again = begun.model_copy(update={"checked_at": at(43)})
    assert drains.check_window(again, T0 + datetime.timedelta(seconds=53)) == 10
    assert drains.check_window(state(wave=1), T0) == 10  # never less than the interval
    step = drains.advance(state(), ROWS[2].look())
    assert step.state is not None and step.state.wave_started_at == at(30)


def test_a_field_cleared_inside_a_status_object_is_cleared_on_the_server_too() -> None:
    # A merge patch merges nested objects: the next wave's `waveDoneAt: None` must be an
    # explicit null, or the server keeps the last wave's and the next check comes at once.
    from chatops.adapters.kube import merge_patch

    before = {"phase": "Promoting", "scaleDown": {"wave": 1, "waveDoneAt": "t1", "replicas":
                                                  {"api": 3, "web": 2}}, "message": "m"}
    after = {"phase": "Promoting", "scaleDown": {"wave": 2, "replicas": {"api": 3}}}
    assert merge_patch(before, after) == {
        "phase": "Promoting",
        "message": None,
        "scaleDown": {"wave": 2, "waveDoneAt": None, "replicas": {"api": 3, "web": None}},
    }
