"""Random stories of a ChatRelease, told to the real `decide` (issue 8, "tests that find
the next such case"): Deployments that become Available or lose it, a router that does
or does not apply weights, Prometheus answering Pass, Fail, no data or nothing at all,
the spec moving to a new version or back, promote/abort/retry annotations, and the
operator killed between deciding and carrying out (the status written or not, only some
of the actions done). Whatever happens:

- no pause is passed, and no release promoted, past an analysis limit or on an error
  (unless a human asked with `chatops.dev/promote`), judged by an oracle that counts
  what Prometheus answered, not by status;
- no decision sends traffic to a color that is not Available;
- once a rollback has settled, all traffic is on the stable color, at full replicas.

The world is `release_world.World`; one look here is the runner's order: annotations,
then the status, then the actions, any of which a kill may cut short.
"""

from __future__ import annotations

import datetime
from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from chatops.api.analysis import Measurement
from chatops.metrics.analysis import QueryContext
from chatops.metrics.measure import measure
from chatops.release import revision as rev
from chatops.release.decide import decide
from chatops.release.model import (
    ClearAnnotation,
    Color,
    Decision,
    DeploymentState,
    Observation,
    SetTraffic,
    other,
)
from release_world import World, released, spec

STEPS = {
    "canary": {
        "steps": [
            {"setWeight": 20},
            {"pause": {"duration": "6s"}},
            {"setWeight": 50},
            {"pause": {"duration": "6s"}},
            {"setWeight": 100},
        ],
        "scaleDownDelaySeconds": 2,
        "abortScaleDownDelaySeconds": 2,
    }
}
ANALYSIS = {
    "interval": "1s",
    "failureLimit": 1,
    "inconclusiveLimit": 2,
    "consecutiveErrorLimit": 2,
    "metrics": [
        {"name": "error-rate", "query": 'errors{service="{{service}}"}', "max": 0.01},
    ],
}
ANSWERS: dict[str, float | Exception | None] = {
    "pass": 0.0,
    "fail": 0.5,
    "no data": None,
    "error": RuntimeError("connection refused"),
}


class Story(RuleBasedStateMachine):
    world: World

    @initialize()
    def first_release(self) -> None:
        self.world = released(World(spec(strategy=STEPS, analysis=ANALYSIS)))
        self.router_works = True
        self.violations: list[str] = []
        # Oracle: the verdicts Prometheus gave, per analysis run, in rounds whose
        # status was written; a run is named by the analysisStartedAt seen before it.
        self.rounds: dict[tuple[str | None, str | None], list[list[Measurement]]] = {}
        self.world.release("1.1")
        self.script: dict[str, list[float | Exception | None]] = {}
        self.round = 0

    # -- the world changes ----------------------------------------------------------

    @rule(
        color=st.sampled_from(["blue", "green"]),
        answers=st.lists(st.sampled_from(list(ANSWERS)), min_size=1, max_size=8),
    )
    def prometheus_answers(self, color: str, answers: list[str]) -> None:
        """From now on, round after round, `color` answers these in turn."""
        self.script[color] = [ANSWERS[a] for a in answers]

    @rule(version=st.sampled_from(["1.0", "1.1", "1.2"]))
    def spec_moves_to(self, version: str) -> None:
        self.world.release(version)

    @rule(broken=st.booleans(), version=st.sampled_from(["1.1", "1.2"]))
    def a_version_is_broken(self, broken: bool, version: str) -> None:
        revision = rev.revision(World(spec(version, STEPS, analysis=ANALYSIS)).parsed)
        (self.world.broken.add if broken else self.world.broken.discard)(revision)

    @rule(
        component=st.sampled_from(["api", "web"]),
        color=st.sampled_from(["blue", "green"]),
        available=st.booleans(),
    )
    def a_deployment_changes_availability(
        self, component: str, color: Color, available: bool
    ) -> None:
        d = self.world.deployments.get((component, color))
        if d is not None:
            self.world.deployments[(component, color)] = replace(
                d, available=d.replicas if available else 0
            )

    @rule(works=st.booleans())
    def the_router_applies_weights(self, works: bool) -> None:
        self.router_works = works

    @rule(key=st.sampled_from(["promote=step", "promote=full", "abort", "retry"]))
    def a_human_annotates(self, key: str) -> None:
        name, _, value = key.partition("=")
        self.world.annotations[f"chatops.dev/{name}"] = value

    @rule(seconds=st.sampled_from([0.5, 1, 2, 5]))
    def time_passes(self, seconds: float) -> None:
        self.world.now += datetime.timedelta(seconds=seconds)

    # -- the operator looks ----------------------------------------------------------

    @rule(
        looks=st.integers(min_value=1, max_value=8),
        killed=st.one_of(st.none(), st.integers(min_value=-1, max_value=6)),
        seconds=st.sampled_from([0.5, 1, 2]),
    )
    def the_operator_looks(self, looks: int, killed: int | None, seconds: float) -> None:
        """A few looks, `seconds` apart; the last is killed: None, it completes; -1,
        before the status patch; n, after the status and n actions."""
        for n in range(looks):
            self._look(killed if n == looks - 1 else None)
            self.world.now += datetime.timedelta(seconds=seconds)

    @rule()
    def everything_settles(self) -> None:
        """The faults stop; the operator looks until nothing moves. A rolled-back release
        then has all traffic on the stable color at full replicas."""
        w = self.world
        self.router_works = True
        w.broken.clear()
        for key, d in list(w.deployments.items()):
            w.deployments[key] = replace(d, available=d.replicas)
        w.annotations.clear()
        for _ in range(200):
            decision = self._look(None)
            w.now += datetime.timedelta(seconds=decision.requeue_after)
            if w.status.phase in ("RolledBack", "Succeeded") and w.status.scale_down is None:
                break
        if w.status.phase != "RolledBack":
            return
        active = w.status.active_color
        assert active is not None
        for c in w.parsed.components:
            assert w.weights.get(c.name, {}).get(active) == 100, (c.name, w.weights)
            d = w.deployments[(c.name, active)]
            assert (d.revision, d.replicas, d.available) == (
                w.status.stable_revision,
                c.replicas,
                c.replicas,
            ), d

    def _look(self, killed: int | None) -> Decision:
        w = self.world
        obs = w.observation()
        decision = decide(obs)
        if decision.needs.measure and obs.spec.analysis:
            color = decision.needs.measure
            self.round += 1
            for name, answers in self.script.items():
                w.prometheus.values[name] = answers[self.round % len(answers)]
            taken: list[Measurement] = []
            for c in obs.spec.components:
                context = QueryContext(f"chat-{c.name}-{color}", "ns", c.name, color, "r")
                taken += measure(w.prometheus, obs.spec.analysis, context, w.now)
            obs = replace(obs, measurements=tuple(taken))
            decision = decide(obs)
        self._check(obs, decision)
        for action in decision.actions:  # the runner clears annotations first
            if isinstance(action, ClearAnnotation):
                w.annotations.pop(action.key, None)
        if killed == -1:
            return decision
        if obs.measurements:
            run = (obs.status.canary_revision, obs.status.analysis_started_at)
            self.rounds.setdefault(run, []).append(list(obs.measurements))
        actions = decision.actions if killed is None else decision.actions[:killed]
        if not self.router_works:
            actions = tuple(a for a in actions if not isinstance(a, SetTraffic))
        w.apply(replace(decision, actions=actions))
        return decision

    # -- what must hold --------------------------------------------------------------

    def _check(self, obs: Observation, decision: Decision) -> None:
        new = decision.status
        if new.phase == "RolledBack" and new.active_color is not None:
            idle = other(new.active_color)
            if any(obs.weights.get(c.name, {}).get(idle) for c in obs.spec.components):
                self.violations.append(f"RolledBack while the router sends {idle} traffic: "
                                       f"{obs.weights}")
        for action in decision.actions:
            if (
                isinstance(action, SetTraffic)
                and action.weight
                and not _available(obs, action.canary)
            ):
                    self.violations.append(
                        f"{action.weight}% to {action.canary}, not Available: {obs.deployments}"
                    )
        if self._passed_a_pause(obs, decision):
            problem = self._over_a_limit(obs)
            if problem:
                self.violations.append(
                    f"passed step {obs.status.current_step} with {problem}; "
                    f"now {decision.status.phase}: {decision.status.message}"
                )

    def _passed_a_pause(self, obs: Observation, decision: Decision) -> bool:
        status, new = obs.status, decision.status
        k = status.current_step
        steps = obs.spec.strategy.canary.steps if obs.spec.strategy.canary else []
        return (
            status.canary_revision is not None
            and rev.revision(obs.spec) == status.canary_revision
            and obs.manual.promote is None
            and not obs.manual.abort
            and k is not None
            and k < len(steps)
            and steps[k].pause is not None
            and new.aborted_revision != status.canary_revision
            and (new.current_step is None or new.current_step > k)
        )

    def _over_a_limit(self, obs: Observation) -> str:
        """What the oracle's count of the run's verdicts holds against passing it."""
        run = (obs.status.canary_revision, obs.status.analysis_started_at)
        rounds = [*self.rounds.get(run, []), list(obs.measurements)]
        limits = obs.spec.analysis
        assert limits is not None
        verdicts: dict[tuple[str, str], list[str]] = {}
        for round_ in rounds:
            for m in round_:
                if m.dry_run:  # measured, never decides
                    continue
                verdicts.setdefault((m.metric, m.component), []).append(m.verdict)
        for key, seen in verdicts.items():
            errors_in_a_row = len(seen) - len("".join(v[0] for v in seen).rstrip("E"))
            if seen.count("Fail") > limits.failure_limit:
                return f"{seen.count('Fail')} failures of {key}"
            if seen.count("Inconclusive") > limits.inconclusive_limit:
                return f"{seen.count('Inconclusive')} inconclusive of {key}"
            if errors_in_a_row:
                return f"{errors_in_a_row} errors in a row of {key}"
        return ""

    @invariant()
    def nothing_was_violated(self) -> None:
        assert self.violations == [], self.violations[0]


def _available(obs: Observation, color: Color) -> bool:
    rev_ = obs.status.canary_revision if color != obs.status.active_color else None
    for c in obs.spec.components:
        d: DeploymentState | None = obs.deployments.get((c.name, color))
        if d is None or not d.ready or (rev_ is not None and d.revision != rev_):
            return False
    return True


Story.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_release_story = Story.TestCase
