"""Random stories of a canary with a header-route step and all three webhooks, told to the
real `decide` through the runner's probing rounds: the webhooks answer 2xx, fail or time
out at random, Prometheus passes or fails the canary, the spec moves between versions,
humans promote, abort and retry, and the operator is killed between deciding and
carrying out (the webhook already called, the status written or not, only some of the
actions done). Whatever happens, what a user relies on holds:

- no traffic (no weight, no header route) reaches a new version before its pre-rollout
  webhook answered 2xx for it;
- all traffic reaches it only once its confirm-promotion webhook answered 2xx (or a
  human said `promote=full`);
- a gate is never called again while the status it read records it passed (a restart
  resumes from the status);
- once things settle, every rolled-back revision's rollback webhook was called, until it
  answered 2xx or failureLimit + 1 times; and no header route is left behind.

The oracle counts what the endpoints really answered, not what status says.
"""

from __future__ import annotations

import datetime
from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from chatops.release import probes
from chatops.release.model import (
    ClearAnnotation,
    Decision,
    Needs,
    Observation,
    SetHeaderRoute,
    SetTraffic,
    WebhookRequest,
)
from release_world import World, released, spec
from test_release_stateful import STEPS as STORY_STEPS

STEPS = {"canary": {
    **STORY_STEPS["canary"],  # the plain story's weights and pauses, after a header route
    "steps": [{"headerRoute": {"match": [{"name": "X-Canary", "value": "dogfood"}]}},
              *STORY_STEPS["canary"]["steps"]],
}}
ANALYSIS = {
    "interval": "1s",
    "failureLimit": 1,
    "metrics": [{"name": "error-rate", "query": 'errors{service="{{service}}"}', "max": 0.01}],
}
ROLLBACK_LIMIT = 2
HOOKS = [
    {"name": "gate", "type": "pre-rollout", "url": "http://hooks.test/gate", "failureLimit": 3},
    {"name": "approve", "type": "confirm-promotion", "url": "http://hooks.test/approve"},
    {"name": "page", "type": "rollback", "url": "http://hooks.test/page",
     "failureLimit": ROLLBACK_LIMIT},
]
ANSWERS = [None, "HTTP 503", "no answer within 10 s"]
"""What an endpoint answers: None a 2xx."""


class GatedStory(RuleBasedStateMachine):
    world: World

    @initialize()
    def first_release(self) -> None:
        self.world = released(World(spec(strategy=STEPS, analysis=ANALYSIS, webhooks=HOOKS)))
        self.world.calls.clear()
        self.answered: list[tuple[str, str, str | None]] = []
        """Every call made: (webhook, revision, what it answered)."""
        self.full_promotes: set[str] = set()
        self.rolled_back: set[str] = set()
        self.violations: list[str] = []
        self.world.release("1.1")

    # -- the world changes ----------------------------------------------------------

    @rule(name=st.sampled_from(["gate", "approve", "page"]), answer=st.sampled_from(ANSWERS))
    def an_endpoint_answers(self, name: str, answer: str | None) -> None:
        self.world.hooks[name] = answer

    @rule(fails=st.booleans())
    def prometheus_judges_the_canary(self, fails: bool) -> None:
        self.world.prometheus.values["green" if self.world.status.active_color == "blue"
                                     else "blue"] = 0.5 if fails else 0.0

    @rule(version=st.sampled_from(["1.0", "1.1", "1.2"]))
    def spec_moves_to(self, version: str) -> None:
        self.world.release(version)

    @rule(key=st.sampled_from(["promote=step", "promote=full", "abort", "retry"]))
    def a_human_annotates(self, key: str) -> None:
        name, _, value = key.partition("=")
        self.world.annotations[f"chatops.dev/{name}"] = value

    @rule(seconds=st.sampled_from([1, 3, 6]))
    def time_passes(self, seconds: float) -> None:
        self.world.now += datetime.timedelta(seconds=seconds)

    # -- the operator looks ----------------------------------------------------------

    @rule(
        looks=st.integers(min_value=1, max_value=8),
        killed=st.one_of(st.none(), st.integers(min_value=-1, max_value=4)),
        seconds=st.sampled_from([0.5, 2, 6]),
    )
    def the_operator_looks(self, looks: int, killed: int | None, seconds: float) -> None:
        """A few looks, `seconds` apart; the last is killed: None, it completes; -1,
        after its webhook calls but before the status patch; n, after the status and n
        actions."""
        for n in range(looks):
            self._look(killed if n == looks - 1 else None)
            self.world.now += datetime.timedelta(seconds=seconds)

    @rule()
    def everything_settles(self) -> None:
        """The faults stop (every endpoint and the canary pass, no annotations); the
        operator looks until nothing moves."""
        w = self.world
        w.hooks.clear()
        w.prometheus.values.clear()
        w.annotations.clear()
        for _ in range(300):
            decision = self._look(None)
            w.now += datetime.timedelta(seconds=decision.requeue_after)
            if (w.status.phase in ("RolledBack", "Succeeded") and w.status.scale_down is None
                    and w.status.canary_revision is None and not self._owed()):
                break
        assert w.status.phase in ("RolledBack", "Succeeded"), (w.status.phase, w.status.message)
        assert all(not routes for routes in w.header_routes.values()), w.header_routes
        for revision in self.rolled_back:
            answers = [a for name, r, a in self.answered if name == "page" and r == revision]
            assert answers, f"rollback of {revision} never told"
            assert None in answers or len(answers) >= ROLLBACK_LIMIT + 1, answers

    def teardown(self) -> None:
        """Every story ends settled, so its rollbacks are checked told."""
        if hasattr(self, "world"):
            self.everything_settles()

    def _owed(self) -> bool:
        return any(c.type == "rollback" and not c.passed and c.calls <= ROLLBACK_LIMIT
                   for c in self.world.status.webhooks)

    def _look(self, killed: int | None) -> Decision:
        w = self.world

        def probe(obs: Observation, needs: Needs) -> Observation:
            self._check_calls(obs, needs.webhooks)
            answered = w._probed(obs, needs)
            self.answered += [(r.hook.name, r.revision, w.hooks.get(r.hook.name))
                              for r in needs.webhooks]
            return answered

        obs, decision = probes.answered(w.observation(), probe)  # as the runner does
        self._check(obs, decision)
        for action in decision.actions:  # the runner clears annotations first
            if isinstance(action, ClearAnnotation):
                w.annotations.pop(action.key, None)
        if killed == -1:
            return decision
        new = decision.status
        if new.aborted_revision is not None:
            self.rolled_back.add(new.aborted_revision)
        self.rolled_back |= {h.revision for h in new.history if h.result == "RolledBack"}
        actions = decision.actions if killed is None else decision.actions[:killed]
        w.apply(replace(decision, actions=actions))
        return decision

    # -- what must hold --------------------------------------------------------------

    def _passed(self, name: str, revision: str | None) -> bool:
        return any(n == name and r == revision and a is None for n, r, a in self.answered)

    def _check_calls(self, obs: Observation, calls: tuple[WebhookRequest, ...]) -> None:
        for request in calls:
            if request.hook.type == "rollback":
                continue
            if any(c.name == request.hook.name and c.revision == request.revision and c.passed
                   for c in obs.status.webhooks):
                self.violations.append(
                    f"{request.hook.name} called again for {request.revision}, which the "
                    "status records passed")

    def _check(self, obs: Observation, decision: Decision) -> None:
        status = obs.status
        revision = status.canary_revision or decision.status.canary_revision
        if obs.manual.promote == "full" and revision is not None:
            self.full_promotes.add(revision)
        stable = status.active_color
        for action in decision.actions:
            new_traffic = (
                isinstance(action, SetTraffic) and action.weight > 0 and action.canary != stable
            ) or (isinstance(action, SetHeaderRoute) and action.matches)
            if not new_traffic or revision is None:
                continue
            if not self._passed("gate", revision):
                self.violations.append(f"{action} for {revision} before pre-rollout answered 2xx")
            if (isinstance(action, SetTraffic) and action.weight == 100
                    and not self._passed("approve", revision)
                    and revision not in self.full_promotes):
                self.violations.append(
                    f"all traffic to {revision} without confirm-promotion or promote=full")

    @invariant()
    def nothing_was_violated(self) -> None:
        assert self.violations == [], self.violations[0]


GatedStory.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_gated_release_story = GatedStory.TestCase
