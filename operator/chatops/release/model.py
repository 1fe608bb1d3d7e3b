"""The vocabulary of the release decision core: what it observes, what it may ask to
look at, and what it decides.

`decide(Observation) -> Decision` is pure. When it needs something only I/O can tell
(a health check, a metric), it says so in `Decision.needs`; the handler finds out and
calls it again with the answer in the observation. Actions are idempotent and say *what*
should be true, never *how* to get there, so a crash between two of them is repaired by
the next look.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chatops.annotations import ABORT, PROMOTE, RETRY, what
from chatops.api.analysis import Measurement
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.api.webhooks import Webhook
from chatops.events import Event
from chatops.traffic.router import HeaderMatch

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")


def other(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


# -- what the handler observed -----------------------------------------------------------


@dataclass(frozen=True)
class DeploymentState:
    """One Deployment `<release>-<component>-<color>` as the cluster shows it."""

    component: str
    color: Color
    revision: str | None
    """The `chatops.dev/revision` of its pod template."""
    replicas: int
    """Desired replicas (spec)."""
    available: int
    """Available replicas."""
    updated: int
    """Replicas of the newest ReplicaSet."""
    total: int = 0
    """Pods of every template it still runs (`status.replicas`): more than `replicas`
    while a rollout's old pods are still there."""
    current: bool = True
    """Whether the Deployment controller has seen the newest spec."""
    quiesced_by: str | None = None
    """The ChatRecovery that stopped it for a restore, if one did."""
    images: Mapping[str, str] = field(default_factory=dict)
    """Container name → image of its pod template: what the version runs, for history
    even after the spec moved on."""

    @property
    def ready(self) -> bool:
        """Rolled out, as `kubectl rollout status` says it: every replica of the newest
        template available and no pod of an older one left (a rollback in place is not
        back while a pod of the version it left still serves)."""
        return (
            self.current
            and self.updated >= self.replicas
            and self.available >= self.replicas
            and self.total <= self.replicas
        )


SmokeResult = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class Manual:
    """What a human asked for through annotations (the CLI sets them)."""

    promote: Literal["step", "full"] | None = None
    abort: bool = False
    retry: bool = False
    values: Mapping[str, str] = field(default_factory=dict)
    """The annotations' values as read: a request is cleared only if it still has the
    value acted on, so one written meanwhile survives for the next look."""

    @classmethod
    def read(cls, annotations: Mapping[str, str]) -> Manual:
        """The requests in a ChatRelease's annotations; `step@<time>` and a bare `step`
        ask the same, anything but `full` promotes one step."""
        values = {key: annotations[key] for key in (PROMOTE, ABORT, RETRY) if key in annotations}
        promote = what(values[PROMOTE]) if PROMOTE in values else None
        return cls(
            promote="full" if promote == "full" else "step" if promote is not None else None,
            abort=ABORT in values,
            retry=RETRY in values,
            values=values,
        )

    def clear(self, key: str) -> ClearAnnotation:
        """Remove the request `key`, the one that was read (compare-and-remove)."""
        return ClearAnnotation(key, self.values.get(key))


@dataclass(frozen=True)
class Observation:
    """Everything one decision may depend on."""

    name: str
    namespace: str
    generation: int
    spec: ChatReleaseSpec
    status: ChatReleaseStatus
    now: datetime.datetime
    deployments: Mapping[tuple[str, Color], DeploymentState] = field(default_factory=dict)
    weights: Mapping[str, Mapping[Color, int]] = field(default_factory=dict)
    """Percent of new connections per component and color, as the router reads it."""
    header_routes: Mapping[str, frozenset[tuple[Color, tuple[HeaderMatch, ...]]]] = field(
        default_factory=dict
    )
    """Per component, the (color, headers) of the release's header rules as the router
    reads them: empty when it has none."""
    manual: Manual = Manual()
    health: Mapping[str, str | None] | None = None
    """Component → None when healthy, else why not; None when not probed."""
    smoke: SmokeResult | None = None
    """The smoke-test Job's state; None when not looked at."""
    measurements: tuple[Measurement, ...] = ()
    """Measurements taken for this decision."""
    reconnects: tuple[Measurement, ...] = ()
    """The drain's reconnect check taken for this decision (one per component)."""
    cost: CostCount | None = None
    """The cost figures counted for this decision, over the window it asked for."""
    webhooks: Mapping[tuple[str, str], str | None] = field(default_factory=dict)
    """(webhook, revision) → None when it answered 2xx, else what went wrong: the calls
    made for this decision."""
    breach: bool = False
    """The sweep (`metrics/sweep.py`) saw a metric of the analysis in progress out of
    bounds since the last look: the next round is due now, not at the interval."""


# -- what the decision asks to look at ---------------------------------------------------


@dataclass(frozen=True)
class CostWindow:
    """A window over which to count what a release cost its users."""

    color: Color
    """The color the new version ran on."""
    since: datetime.datetime
    until: datetime.datetime
    """The window's end, and the time the queries are evaluated at."""
    revision: str
    """The release's revision (`{{revision}}`)."""
    drained: Color | None = None
    """The color whose pods the release's end drains (the old one after a promotion, the
    new one after a rollback); None while the release goes on."""


@dataclass(frozen=True)
class CostCount:
    """The figures counted over `window`; a figure Prometheus did not give is None."""

    window: CostWindow
    requests: int | None = None
    failed_requests: int | None = None
    websockets_moved: int | None = None
    websockets_dropped: int | None = None
    problem: str | None = None
    """Why a figure is missing."""


@dataclass(frozen=True)
class WebhookRequest:
    """POST `payload` to `hook` for the release of `revision`."""

    hook: Webhook
    revision: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Needs:
    """I/O the decision cannot do without."""

    health: Color | None = None
    """Probe every component's health check on this color."""
    measure: Color | None = None
    """Take one round of measurements of every component on this color."""
    reconnects: Color | None = None
    """Check the reconnect success on this color (the one serving), for a drain."""
    cost: CostWindow | None = None
    """Count what a release cost over this window."""
    webhooks: tuple[WebhookRequest, ...] = ()
    """Call these webhooks."""

    def __bool__(self) -> bool:
        probes = (self.health, self.measure, self.reconnects, self.cost)
        return bool(self.webhooks) or any(v is not None for v in probes)


# -- what the decision asks to be true ---------------------------------------------------


@dataclass(frozen=True)
class ApplyServices:
    """Every component's color Services and its stable Service selecting `active`."""

    active: Color


@dataclass(frozen=True)
class ApplyDeployment:
    """`<release>-<component>-<color>` runs the spec's template at `revision`."""

    component: str
    color: Color
    revision: str
    replicas: int


@dataclass(frozen=True)
class ScaleDeployment:
    """`<release>-<component>-<color>` has `replicas` replicas, whatever its template."""

    component: str
    color: Color
    replicas: int


@dataclass(frozen=True)
class RestoreRevision:
    """Put `<release>-<component>-<color>` back on the template it had at `revision`
    (rolling rollback: the Deployment's own ReplicaSet history keeps it)."""

    component: str
    color: Color
    revision: str


@dataclass(frozen=True)
class SetTraffic:
    """Percent of new connections to `canary` per component; the rest to the other color."""

    canary: Color
    weight: int


@dataclass(frozen=True)
class SetHeaderRoute:
    """Requests carrying all of `matches` go to `canary` whatever the weights; none: the
    release's header route is removed."""

    canary: Color
    matches: tuple[HeaderMatch, ...] = ()


@dataclass(frozen=True)
class FinalizeTraffic:
    """All traffic is on `active`: remove what the router generated for the release."""

    active: Color


@dataclass(frozen=True)
class StartSmokeTest:
    """Create the smoke-test Job `job` against `color` (nothing if it exists)."""

    job: str
    color: Color


@dataclass(frozen=True)
class ClearAnnotation:
    """Remove a manual-control annotation once it has been acted on, only if it still has
    `value` (None: whatever it has)."""

    key: str
    value: str | None = None


Action = (
    ApplyServices
    | ApplyDeployment
    | ScaleDeployment
    | RestoreRevision
    | SetTraffic
    | SetHeaderRoute
    | FinalizeTraffic
    | StartSmokeTest
    | ClearAnnotation
)


@dataclass(frozen=True)
class Decision:
    """The new status, what should be made true, and when to look again."""

    status: ChatReleaseStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    needs: Needs = Needs()
    requeue_after: float = 30.0
    analyzing: Color | None = None
    """The color whose analysis run goes on after this decision, for the sweep to watch
    between rounds; None when no run does."""
