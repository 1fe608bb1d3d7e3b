"""Random drains told to the real wave machine: pods that take their time to go, a
router that is late to move traffic, reconnect checks that pass, storm, find no data or
no Prometheus, a human who cuts the rest, and the operator killed before its status is
written or before its actions are carried out. Whatever happens, a user of the old
color sees:

- no pod removed while new connections may still reach it, nor before the drain window;
- pods removed only in batches (at most a wave's share of each component at a time),
  never added back;
- no batch removed unless the reconnect check after the previous one passed, or a human
  cut the drain;
- and the drain ending (no pods, state cleared) once checks pass and pods go.
"""

from __future__ import annotations

import datetime
import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chatops import clock
from chatops.api.analysis import Measurement
from chatops.api.release_status import ScaleDown
from chatops.release import drain as drains

T0 = datetime.datetime(2026, 12, 2, 6, 0, tzinfo=datetime.UTC)
COMPONENTS = ("api", "web")
VERDICTS = {"pass": "Pass", "storm": "Fail", "no data": "Inconclusive", "down": "Error"}


class Drain(RuleBasedStateMachine):
    @initialize(
        waves=st.integers(1, 6),
        pods=st.tuples(st.integers(0, 7), st.integers(0, 7)),
        delay=st.integers(0, 20),
        interval=st.integers(1, 15),
    )
    def begin(self, waves: int, pods: tuple[int, int], delay: int, interval: int) -> None:
        self.now = T0
        self.waves, self.delay = waves, delay
        self.state: ScaleDown | None = ScaleDown(
            color="blue", at=clock.rfc3339(T0 + datetime.timedelta(seconds=delay)),
            delay_seconds=delay, waves=waves, interval_seconds=interval,
        )
        self.initial = dict(zip(COMPONENTS, pods, strict=True))
        self.replicas = dict(self.initial)
        self.available = dict(self.initial)
        self.traffic_left = False
        self.traffic_left_at: datetime.datetime | None = None
        self.answer = "pass"
        self.passed_since_removal = True  # nothing to reconnect before the first wave
        self.cut = False
        self.violations: list[str] = []

    @rule(seconds=st.floats(0.1, 20))
    def time_passes(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)

    @rule()
    def router_moves_traffic_away(self) -> None:
        if not self.traffic_left:
            self.traffic_left, self.traffic_left_at = True, self.now

    @rule()
    def removed_pods_go(self) -> None:
        self.available = {c: min(self.available[c], self.replicas[c]) for c in COMPONENTS}

    @rule(answer=st.sampled_from(sorted(VERDICTS)))
    def reconnects_look(self, answer: str) -> None:
        self.answer = answer

    @rule()
    def a_human_cuts_the_drain(self) -> None:
        self.cut = True

    @precondition(lambda self: self.state is not None)
    @rule(
        kill=st.sampled_from(["none", "none", "before status", "before actions"]),
        answer=st.sampled_from(sorted(VERDICTS)),
        later=st.sampled_from([0.0, 0.5, 5.0, 16.0]),
    )
    def look_later(self, kill: str, answer: str, later: float) -> None:
        """Time passes, removed pods go, Prometheus answers `answer`, and a look."""
        if later:
            self.time_passes(later)
        self.removed_pods_go()
        self.answer = answer
        self.look(kill)

    @precondition(lambda self: self.state is not None)
    @rule(kill=st.sampled_from(["none", "before status", "before actions"]))
    def look(self, kill: str) -> None:
        assert self.state is not None
        look = self._look(checks=())
        step = drains.advance(self.state, look)
        checked = False
        if step.check:  # the runner takes the check and decides again
            checked = True
            step = drains.advance(self.state, self._look(checks=self._checks()))
        if kill == "before status":
            return
        before = dict(self.replicas)
        self.state = step.state
        if kill == "before actions":
            return
        for component, replicas in step.replicas.items():
            self.replicas[component] = replicas
        self._judge(before, checked)

    def _look(self, checks: tuple[Measurement, ...]) -> drains.Look:
        return drains.Look(
            components=COMPONENTS,
            pods={c: drains.Pods(self.replicas[c], self.available[c]) for c in COMPONENTS},
            traffic_left=self.traffic_left,
            checks=checks,
            cut=self.cut,
            now=self.now,
        )

    def _checks(self) -> tuple[Measurement, ...]:
        verdict = VERDICTS[self.answer]
        self.passed_since_removal = self.passed_since_removal or verdict == "Pass"
        return tuple(
            Measurement(metric=drains.CHECK_NAME, component=c, query="q", verdict=verdict,
                        time=clock.rfc3339(self.now), message=self.answer)
            for c in COMPONENTS
        )

    def _judge(self, before: dict[str, int], checked: bool) -> None:
        removed = {c: before[c] - self.replicas[c] for c in COMPONENTS}
        if any(n < 0 for n in removed.values()):
            self.violations.append(f"pods added back: {before} -> {self.replicas}")
        if not any(removed.values()):
            return
        if not self.traffic_left:
            self.violations.append("pods removed while new connections may reach them")
        assert self.traffic_left_at is not None
        window = self.traffic_left_at + datetime.timedelta(seconds=self.delay)
        if self.now < window:
            self.violations.append("pods removed within the drain window")
        for c, n in removed.items():
            if not self.cut and n > math.ceil(self.initial[c] / self.waves):
                self.violations.append(f"{n} pods of {c} at once, more than a wave's share")
        first = all(before[c] == self.initial[c] for c in COMPONENTS)
        if not first and not self.cut and not self.passed_since_removal:
            self.violations.append("a wave began without a passed reconnect check")
        self.passed_since_removal = False

    @invariant()
    def nothing_a_user_would_mind(self) -> None:
        assert not getattr(self, "violations", []), self.violations

    @invariant()
    def over_means_no_pods(self) -> None:
        if hasattr(self, "replicas") and self.state is None:
            assert self.replicas == dict.fromkeys(COMPONENTS, 0)
            assert self.available == dict.fromkeys(COMPONENTS, 0)

    def teardown(self) -> None:
        """Liveness: with traffic gone, checks passing and pods going, the drain ends."""
        if not hasattr(self, "replicas"):
            return
        self.router_moves_traffic_away()
        self.answer = "pass"
        for _ in range(200):
            if self.state is None:
                break
            self.removed_pods_go()
            self.look("none")
            self.time_passes(20)
        assert self.state is None, f"drain never ended: {self.state}"
        assert not self.violations, self.violations


TestDrain = Drain.TestCase
TestDrain.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
