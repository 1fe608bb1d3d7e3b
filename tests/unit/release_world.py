"""A small world for the release decision core: a cluster that does what the actions
ask (Deployments become Available at once unless their revision is broken, routers take
their weights), a Prometheus whose answers a test sets per color, and a clock. Each
`tick()` is what the handler does: decide, look at what the decision needs, decide
again, apply the actions, advance the clock."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chatops.api.analysis import Measurement
from chatops.api.drain import Drain
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.errors import MetricsUnavailable
from chatops.metrics import window as window_queries
from chatops.metrics.analysis import QueryContext, WindowContext
from chatops.metrics.measure import measure
from chatops.release import drain as drains
from chatops.release import probes
from chatops.release import status as st
from chatops.release.model import (
    ApplyDeployment,
    ClearAnnotation,
    Color,
    CostCount,
    CostWindow,
    Decision,
    DeploymentState,
    Manual,
    Needs,
    Observation,
    RestoreRevision,
    ScaleDeployment,
    SetHeaderRoute,
    SetTraffic,
    WebhookRequest,
    other,
)
from chatops.traffic.router import HeaderMatch

T0 = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def component(name: str, image: str, replicas: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "replicas": replicas,
        "template": {"spec": {"containers": [{"name": name, "image": image}]}},
        "service": {"port": 8080},
        **extra,
    }


CANARY = {
    "canary": {
        "steps": [
            {"setWeight": 10},
            {"pause": {"duration": "60s"}},
            {"setWeight": 50},
            {"pause": {"duration": "60s"}},
            {"setWeight": 100},
        ]
    }
}


def spec(
    version: str = "1.0", strategy: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "components": [
            component("api", f"chat-api:{version}"),
            component("web", f"chat-web:{version}"),
        ],
        "strategy": strategy or CANARY,
        "trafficRouting": {"gatewayAPI": {"httpRoute": "chat"}},
        "analysis": {
            "interval": "20s",
            "metrics": [
                {"name": "error-rate", "query": 'errors{service="{{service}}"}', "max": 0.01},
            ],
        },
        **extra,
    }


@dataclass
class Prometheus:
    """Answers per color; a callable can stand for an outage (raise) or no data (None)."""

    values: dict[str, float | Exception | None] = field(default_factory=dict)
    queries: int = 0

    def query(self, promql: str) -> float | None:
        self.queries += 1
        color = "green" if "-green" in promql else "blue"
        value = self.values.get(color, 0.0)
        if isinstance(value, Exception):
            raise MetricsUnavailable("http://prometheus", str(value))
        return value


@dataclass
class World:
    spec: dict[str, Any]
    status: ChatReleaseStatus = field(default_factory=ChatReleaseStatus)
    now: datetime.datetime = T0
    deployments: dict[tuple[str, Color], DeploymentState] = field(default_factory=dict)
    weights: dict[str, dict[Color, int]] = field(default_factory=dict)
    header_routes: dict[str, frozenset[tuple[Color, tuple[HeaderMatch, ...]]]] = field(
        default_factory=dict
    )
    """Per component, the header routes the router holds (as it reads them back)."""
    prometheus: Prometheus = field(default_factory=Prometheus)
    broken: set[str] = field(default_factory=set)
    """Revisions whose pods never become Available."""
    sick: set[Color] = field(default_factory=set)
    """Colors whose health checks fail."""
    smoke: str | None = "Succeeded"
    annotations: dict[str, str] = field(default_factory=dict)
    templates: dict[tuple[str, Color], list[str]] = field(default_factory=dict)
    kept: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    """(component, revision) → container images, as chatops' ControllerRevisions keep them."""
    events: list[tuple[str, str]] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    generation: int = 1
    routable: bool = True
    """False: the router applies nothing (a missing route): weights stay unknown."""
    reconnect_success: float | Exception | None = 1.0
    """What Prometheus answers to the drain's reconnect check."""
    cost_answer: int | Exception = 100
    """Per component, the requests Prometheus counts for a cost window (failed a tenth,
    moved half); an Exception: unreachable."""
    cost_windows: list[CostWindow] = field(default_factory=list)
    hooks: dict[str, str | None] = field(default_factory=dict)
    """Webhook name → what its endpoint answers: None a 2xx, else the failure
    (`HTTP 503`); a webhook not named here answers 2xx."""
    calls: list[WebhookRequest] = field(default_factory=list)
    """Every webhook call made, in order."""
    breach: bool = False
    """The sweep saw the analysis out of bounds: the next look's observation says so
    (once, as the daemon hands it over)."""

    @property
    def parsed(self) -> ChatReleaseSpec:
        return ChatReleaseSpec.model_validate(self.spec)

    def change(self, **spec: Any) -> None:
        self.spec = {**self.spec, **spec}
        self.generation += 1

    def release(self, version: str) -> None:
        self.spec = copy.deepcopy(self.spec)
        for c in self.spec["components"]:
            image = c["template"]["spec"]["containers"][0]["image"]
            c["template"]["spec"]["containers"][0]["image"] = image.split(":")[0] + ":" + version
        self.generation += 1

    def observation(self) -> Observation:
        manual = Manual.read(self.annotations)
        return Observation(
            name="chat",
            namespace="ns",
            generation=self.generation,
            spec=self.parsed,
            status=self.status,
            now=self.now,
            deployments=dict(self.deployments),
            weights=copy.deepcopy(self.weights),
            header_routes=dict(self.header_routes),
            manual=manual,
            smoke=self.smoke if self.status.smoke_test_job else None,
            breach=self.breach,
        )

    def tick(self, advance: bool = True) -> Decision:
        _, decision = probes.answered(self.observation(), self._probed)  # as the runner
        self.breach = False
        self.apply(decision)
        if advance:
            self.now += datetime.timedelta(seconds=decision.requeue_after)
        return decision

    def _probed(self, obs: Observation, needs: Needs) -> Observation:
        """`obs` with the answers to `needs`, as this world gives them."""
        found: dict[str, Any] = {}
        if needs.health:
            color = needs.health
            found["health"] = {
                c.name: ("HTTP 503" if color in self.sick else None) for c in obs.spec.components
            }
        if needs.measure and obs.spec.analysis:
            color = needs.measure
            measurements: tuple[Measurement, ...] = ()
            for c in obs.spec.components:
                context = QueryContext(
                    service=f"chat-{c.name}-{color}",
                    namespace="ns",
                    component=c.name,
                    color=color,
                    revision=obs.status.canary_revision or "",
                )
                stable = replace(context, service=f"chat-{c.name}-{other(color)}",
                                 color=other(color), revision=obs.status.stable_revision
                                 or "")
                measurements += tuple(
                    measure(self.prometheus, obs.spec.analysis, context, self.now, stable)
                )
            found["measurements"] = measurements
        if needs.reconnects:
            found["reconnects"] = self._reconnects(needs.reconnects)
        if needs.cost:
            found["cost"] = self._cost(needs.cost)
        if needs.webhooks:
            self.calls += needs.webhooks
            found["webhooks"] = {**obs.webhooks, **{(r.hook.name, r.revision):
                                                    self.hooks.get(r.hook.name)
                                                    for r in needs.webhooks}}
        return replace(obs, **found)

    def _reconnects(self, color: Color) -> tuple[Measurement, ...]:
        """The reconnect check as the runner takes it, Prometheus answering
        `reconnect_success` (an Exception: unreachable)."""
        gate = drains.check_metric((st.drain(self.parsed) or Drain()).reconnect)
        contexts = [
            WindowContext(f"chat-{c.name}-{color}", "ns", c.name, color, "", "10s")
            for c in self.parsed.components
        ]
        answers = Prometheus({color: self.reconnect_success})
        return window_queries.reconnect_check(answers, gate, contexts, self.now, "gate")

    def _cost(self, span: CostWindow) -> CostCount:
        """The cost count as the runner takes it: every figure is `cost_answers`' value per
        component of the new color (half of it per color for the WebSocket figures)."""
        self.cost_windows.append(span)
        if isinstance(self.cost_answer, Exception):
            return CostCount(window=span, problem=f"requests: {self.cost_answer}")
        per = self.cost_answer
        n = len(self.parsed.components)
        return CostCount(window=span, requests=n * per, failed_requests=n * per // 10,
                         websockets_moved=n * per // 2, websockets_dropped=0)

    def apply(self, decision: Decision) -> None:
        self.status = decision.status
        self.events += [(e.reason, e.message) for e in decision.events]
        self.actions += list(decision.actions)
        spec = self.parsed
        for action in decision.actions:
            if isinstance(action, ApplyDeployment):
                component = next(c for c in spec.components if c.name == action.component)
                images = {c.name: c.image for c in component.template.spec.containers}
                self._run(
                    action.component, action.color, action.revision, action.replicas, images
                )
            elif isinstance(action, ScaleDeployment):
                d = self.deployments.get((action.component, action.color))
                if d is not None:
                    self._run(
                        action.component, action.color, d.revision, action.replicas, d.images
                    )
            elif isinstance(action, RestoreRevision):
                d = self.deployments[(action.component, action.color)]
                kept = self.kept.get((action.component, action.revision), {})
                self._run(action.component, action.color, action.revision, d.replicas, kept)
            elif isinstance(action, SetTraffic) and self.routable:
                for c in spec.components:
                    self.weights[c.name] = {
                        action.canary: action.weight,
                        other(action.canary): 100 - action.weight,
                    }
            elif isinstance(action, SetHeaderRoute) and self.routable:
                for c in spec.components:
                    self.header_routes[c.name] = (
                        frozenset({(action.canary, action.matches)})
                        if action.matches else frozenset()
                    )
            elif isinstance(action, ClearAnnotation) and (
                # compare-and-remove, as the API server's JSON patch `test` does
                action.value is None or self.annotations.get(action.key) == action.value
            ):
                self.annotations.pop(action.key, None)

    def _run(
        self,
        name: str,
        color: Color,
        revision: str | None,
        replicas: int,
        images: Mapping[str, str],
    ) -> None:
        ok = revision not in self.broken
        if revision is not None and images:
            self.kept[(name, revision)] = dict(images)  # as the ControllerRevisions keep them
        self.deployments[(name, color)] = DeploymentState(
            component=name,
            color=color,
            revision=revision,
            replicas=replicas,
            available=replicas if ok else 0,
            updated=replicas,
            images=dict(images),
        )

    def run_until(self, done: Callable[[World], bool], ticks: int = 200) -> None:
        for _ in range(ticks):
            if done(self):
                return
            self.tick()
        raise AssertionError(
            f"not reached in {ticks} ticks; status: {self.status.phase} {self.status.message}"
        )

    def serving(self) -> dict[str, dict[Color, int]]:
        return {k: {c: w for c, w in v.items() if w} for k, v in self.weights.items()}

    def replicas(self, color: Color) -> dict[str, int]:
        return {name: d.replicas for (name, c), d in self.deployments.items() if c == color}

    def traffic_only_on_available(self) -> bool:
        return all(
            self.deployments.get((name, color)) is not None
            and self.deployments[(name, color)].ready
            for name, weights in self.weights.items()
            for color, w in weights.items()
            if w
        )


def released(world: World) -> World:
    """`world` after its first release reached Succeeded."""
    world.run_until(lambda w: w.status.phase == "Succeeded")
    return world
