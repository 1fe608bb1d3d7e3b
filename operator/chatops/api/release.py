"""ChatRelease: progressive delivery of all the chat app's components together.

The spec is what a platform team writes; the status is what the operator observed and
decided. Cross-field rules the API server enforces live next to the fields they guard,
as CEL in `x-kubernetes-validations`, so a bad object is refused before it is stored.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from chatops.api import bounds
from chatops.api.analysis import Analysis
from chatops.api.bounds import Rule
from chatops.api.common import Model, Name
from chatops.api.cost import CostQueries
from chatops.api.drain import Drain
from chatops.api.header_route import HeaderRoute
from chatops.api.pod import PodTemplate
from chatops.api.webhooks import Webhook

# -- spec: components ----------------------------------------------------------------

REPLICAS_MAX = 1000
"""Pods of one component, and the largest count in a rolling update's maxSurge."""


class ServicePort(Model):
    """The port the component's Services expose."""

    port: int = Field(ge=1, le=65535)
    """Service port."""
    target_port: int | None = Field(default=None, ge=1, le=65535)
    """Container port traffic goes to (defaults to `port`)."""


class HealthCheck(Model):
    """How to ask a new version whether it is healthy before traffic moves to it."""

    path: bounds.HTTPPath = "/healthz"
    """HTTP path on the color's Service."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Port to probe (defaults to the component's service port)."""
    url: bounds.URLTemplate | None = None
    """A full URL template instead of path/port, e.g. `http://{{service}}.{{namespace}}:8080/ready`."""
    timeout_seconds: int = Field(default=5, ge=1, le=300)
    """How long one probe may take."""


class Component(Model):
    """One deployable part of the chat app (e.g. `api`, `frontend`). The operator owns
    the Deployments `<release>-<name>-blue|green`, one Service per color and the stable
    Service `<release>-<name>`."""

    name: Name
    """Component name, used in the names of the objects the operator owns."""
    replicas: int = Field(default=1, ge=0, le=REPLICAS_MAX)
    """Pods of the stable version; a new version starts with as many."""
    template: PodTemplate
    """Pod template of the component."""
    service: ServicePort
    """Port of the component's Services."""
    health_check: HealthCheck | None = None
    """HTTP health check gating traffic; none means Deployment availability alone."""


# -- spec: strategies ----------------------------------------------------------------


class BlueGreen(Model):
    """Start the new color next to the old, check it, switch traffic at once, watch it."""

    auto_promote: bool = True
    """False waits in phase Paused until `chatops.dev/promote` is set."""
    pre_promotion_analysis: bool = False
    """Run the analysis against the new color before switching traffic to it."""
    post_promotion_window: bounds.DayDuration = "10m"
    """How long the analysis watches the new color after the switch (the runbook's
    "monitor 10 minutes"), at most 24h; a failure in this window switches back."""
    scale_down_delay_seconds: bounds.Seconds = 30
    """How long the old color keeps running after the promotion, so established WebSocket
    connections drain; counted from when the router shows no new connections going to
    it, and never less than this long after the switch (at most a day)."""
    abort_scale_down_delay_seconds: bounds.Seconds = 30
    """After a rollback, how long the failed color keeps running before scale-down (at
    most a day)."""
    drain: Drain | None = None
    """Close the drained color's connections in waves gated on reconnect success; none:
    one cut when the delay has passed."""


class Pause(Model):
    """Wait at the current weight while the analysis runs."""

    duration: bounds.WeekDuration | None = None
    """How long to wait, counted from when the router shows the step's weight, at most
    168h (a week); none waits for `chatops.dev/promote`."""


_STEP_RULES = (
    Rule(
        "[has(self.setWeight), has(self.pause), has(self.headerRoute)]"
        ".filter(x, x).size() == 1",
        "each step sets exactly one of setWeight, pause or headerRoute",
        lambda s: bounds.exactly_one(s.set_weight, s.pause, s.header_route),
    ),
)


class CanaryStep(Model):
    """One step: set the canary's weight, pause, or route a header to the canary."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_STEP_RULES))

    @model_validator(mode="after")
    def _rules(self) -> CanaryStep:
        return bounds.enforce(self, _STEP_RULES)

    set_weight: int | None = Field(default=None, ge=1, le=100)
    """Percent of new connections sent to the canary (1..100)."""
    pause: Pause | None = None
    """Wait here, analysing, for a duration or until promoted."""
    header_route: HeaderRoute | None = None
    """Requests carrying these headers go to the canary whatever its weight (Gateway API
    only), until the release ends or another headerRoute step replaces it."""


DEFAULT_CANARY_STEPS: tuple[CanaryStep, ...] = (
    *(
        step
        for weight in (10, 25, 50)
        for step in (CanaryStep(set_weight=weight), CanaryStep(pause=Pause(duration="5m")))
    ),
    CanaryStep(set_weight=100),
)


def _increasing(steps: list[CanaryStep]) -> list[CanaryStep]:
    weights = [s.set_weight for s in steps if s.set_weight is not None]
    if any(a >= b for a, b in itertools.pairwise(weights)):
        raise ValueError("setWeight values must increase strictly from step to step")
    return steps


_STEPS_INCREASING = (
    "self.map(s, has(s.setWeight), s.setWeight).isSorted() && "
    "self.map(s, has(s.setWeight), s.setWeight).all(w, "
    "self.map(s, has(s.setWeight), s.setWeight).indexOf(w) == "
    "self.map(s, has(s.setWeight), s.setWeight).lastIndexOf(w))"
)


class Canary(Model):
    """Shift a growing share of traffic to the new version, analysing at every pause."""

    steps: Annotated[
        list[CanaryStep],
        Field(
            min_length=1,
            max_length=40,
            json_schema_extra={
                "x-kubernetes-validations": [
                    {
                        "rule": _STEPS_INCREASING,
                        "message": "setWeight values must increase strictly from step to step",
                    }
                ]
            },
        ),
        AfterValidator(_increasing),
    ] = Field(default_factory=lambda: list(DEFAULT_CANARY_STEPS))
    """Steps in order (at most 40); the default is 10 → 25 → 50 → 100 with 5-minute
    pauses."""
    scale_down_delay_seconds: bounds.Seconds = 30
    """After promotion, how long the old version keeps running so connections drain,
    counted from when the router shows no new connections going to it (at most a
    day)."""
    abort_scale_down_delay_seconds: bounds.Seconds = 30
    """After a rollback, how long the canary keeps running before scale-down (at most a
    day)."""
    drain: Drain | None = None
    """Close the drained color's connections in waves gated on reconnect success; none:
    one cut when the delay has passed."""


_PERCENT = r"^(100|[1-9]?[0-9])%$"
_INT_OR_PERCENT = (
    f"type(self) == int ? (self >= 0 && self <= {REPLICAS_MAX}) : "
    f"self.matches({bounds.cel_string(_PERCENT)})"
)
IntOrPercent = Annotated[
    Annotated[int, Field(ge=0, le=REPLICAS_MAX)] | Annotated[str, Field(pattern=_PERCENT)],
    Field(
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                {
                    "rule": _INT_OR_PERCENT,
                    "message": f"must be a count from 0 to {REPLICAS_MAX} or a percent "
                    "from 0% to 100%",
                }
            ],
        }
    ),
]
"""A count of pods or a percent of them, as a Deployment's rolling update takes it."""


def _zero(value: int | str) -> bool:
    return str(value) in ("0", "0%")


_ROLLING_RULES = (
    Rule(
        "!(string(self.maxSurge) in ['0', '0%'] && string(self.maxUnavailable) in ['0', '0%'])",
        "maxSurge and maxUnavailable must not both be zero: the update could never make "
        "progress",
        lambda r: not (_zero(r.max_surge) and _zero(r.max_unavailable)),
    ),
)


class Rolling(Model):
    """Update the Deployments in place, gated by the same analysis."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_ROLLING_RULES))

    @model_validator(mode="after")
    def _rules(self) -> Rolling:
        return bounds.enforce(self, _ROLLING_RULES)

    max_surge: IntOrPercent = "25%"
    """Extra pods during the update (count or percent)."""
    max_unavailable: IntOrPercent = 0
    """Pods that may be unavailable during the update (count or percent)."""
    analysis_window: bounds.DayDuration = "5m"
    """How long the analysis watches the updated version after the rollout before the
    release counts as Succeeded, at most 24h; a failure in this window rolls back."""


_STRATEGY_RULES = (
    Rule(
        "[has(self.blueGreen), has(self.canary), has(self.rolling)].filter(x, x).size() == 1",
        "set exactly one of strategy.blueGreen, strategy.canary, strategy.rolling",
        lambda s: bounds.exactly_one(s.blue_green, s.canary, s.rolling),
    ),
)


class Strategy(Model):
    """How a new version replaces the old: exactly one of blueGreen, canary, rolling."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_STRATEGY_RULES))

    @model_validator(mode="after")
    def _rules(self) -> Strategy:
        return bounds.enforce(self, _STRATEGY_RULES)

    blue_green: BlueGreen | None = None
    """Blue-green: new color beside the old, one switch of traffic."""
    canary: Canary | None = None
    """Canary: weights in steps, analysed at every pause."""
    rolling: Rolling | None = None
    """Rolling update in place."""


# -- spec: traffic --------------------------------------------------------------------


class GatewayAPIRouting(Model):
    """Weights on the backendRefs of a Gateway API HTTPRoute."""

    http_route: Name
    """HTTPRoute (same namespace) whose backendRefs name the components' Services."""


class NginxRouting(Model):
    """A generated canary Ingress `<ingress>-<release>-canary` with NGINX canary
    annotations, one per release, owned by the ChatRelease (deleted with it)."""

    ingress: Name
    """The stable Ingress (same namespace) to mirror as a canary Ingress."""


class ServiceRouting(Model):
    """Switch the stable Service's selector from one color to the other."""


_ROUTING_RULES = (
    Rule(
        "[has(self.gatewayAPI), has(self.nginx), has(self.service)].filter(x, x).size() == 1",
        "set exactly one of trafficRouting.gatewayAPI, trafficRouting.nginx, "
        "trafficRouting.service",
        lambda t: bounds.exactly_one(t.gateway_api, t.nginx, t.service),
    ),
)


class TrafficRouting(Model):
    """How traffic moves between versions: exactly one of gatewayAPI, nginx, service."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_ROUTING_RULES))

    @model_validator(mode="after")
    def _rules(self) -> TrafficRouting:
        return bounds.enforce(self, _ROUTING_RULES)

    gateway_api: GatewayAPIRouting | None = Field(default=None, alias="gatewayAPI")
    """Gateway API HTTPRoute weights (recommended)."""
    nginx: NginxRouting | None = None
    """NGINX Ingress canary annotations (legacy)."""
    service: ServiceRouting | None = None
    """Service selector switch (blue-green only)."""


class SmokeTest(Model):
    """A Job that must succeed against the new version before traffic moves to it."""

    template: PodTemplate
    """Pod template of the Job; `{{service}}` etc. are available as env CHATOPS_*."""
    timeout_seconds: bounds.PositiveSeconds = 300
    """Longest the Job may run (at most a day)."""


_SPEC_RULES = (
    Rule(
        "!has(self.trafficRouting) || !has(self.trafficRouting.service) "
        "|| has(self.strategy.blueGreen)",
        "trafficRouting.service works only with strategy.blueGreen",
        lambda s: s.traffic_routing is None
        or s.traffic_routing.service is None
        or s.strategy.blue_green is not None,
    ),
    Rule(
        "!has(self.strategy.canary) || (has(self.trafficRouting) && "
        "(has(self.trafficRouting.gatewayAPI) || has(self.trafficRouting.nginx)))",
        "strategy.canary needs trafficRouting.gatewayAPI or trafficRouting.nginx to split "
        "traffic by weight",
        lambda s: s.strategy.canary is None
        or (
            s.traffic_routing is not None
            and (s.traffic_routing.gateway_api is not None or s.traffic_routing.nginx is not None)
        ),
    ),
    Rule(
        "!has(self.strategy.rolling) || !has(self.webhooks) "
        "|| self.webhooks.all(w, w.type != 'pre-rollout')",
        "webhooks of type pre-rollout need strategy.canary or strategy.blueGreen: a rolling "
        "update sends traffic to each new pod as it starts, so nothing comes before traffic",
        lambda s: s.strategy.rolling is None or all(w.type != "pre-rollout" for w in s.webhooks),
    ),
    Rule(
        "!has(self.strategy.canary) || !has(self.strategy.canary.steps) || "
        "!self.strategy.canary.steps.exists(s, has(s.headerRoute)) || "
        "(has(self.trafficRouting) && has(self.trafficRouting.gatewayAPI))",
        "strategy.canary.steps[].headerRoute needs trafficRouting.gatewayAPI (an HTTPRoute "
        "rule matches the headers; nginx and service routing cannot)",
        lambda s: s.strategy.canary is None
        or not any(step.header_route for step in s.strategy.canary.steps)
        or (s.traffic_routing is not None and s.traffic_routing.gateway_api is not None),
    ),
)


class ChatReleaseSpec(Model):
    """A release of the chat app: its components, how the new version replaces the old,
    how traffic moves and what must stay true while it does."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_SPEC_RULES))

    @model_validator(mode="after")
    def _rules(self) -> ChatReleaseSpec:
        return bounds.enforce(self, _SPEC_RULES)

    components: Annotated[
        list[Component],
        Field(
            min_length=1,
            max_length=10,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ]
    """The components released together; one fails, all revert."""
    strategy: Strategy
    """Exactly one of blueGreen, canary, rolling."""
    traffic_routing: TrafficRouting | None = None
    """How traffic moves; blue-green without it switches the stable Service's selector."""
    analysis: Analysis | None = None
    """Prometheus checks gating each step; none means availability and health checks only."""
    smoke_test: SmokeTest | None = None
    """A Job that must succeed before traffic moves."""
    webhooks: Annotated[
        list[Webhook],
        Field(
            max_length=8,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = Field(default_factory=list)
    """HTTP gates of every release: pre-rollout, confirm-promotion and rollback."""
    cost: CostQueries | None = None
    """How what a release cost its users is counted (`status.cost`); none: the default
    queries of the label contract."""
    paused: bool = False
    """Hold the release where it is."""
    progress_deadline_seconds: bounds.PositiveSeconds = 600
    """A new version not Available within this time is rolled back (at most a day)."""
    history_limit: int = Field(default=10, ge=1, le=100)
    """How many past releases status.history keeps."""
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """What deleting the ChatRelease does to the app. `Retain` (the default): traffic
    goes back to the stable color, the other color is deleted, and the stable color's
    Deployments and all Services keep serving, released from the ChatRelease and
    labelled `chatops.dev/released-from`; a ChatRelease created again with the same name
    adopts them. `Delete`: every Deployment and Service of the release is deleted."""
