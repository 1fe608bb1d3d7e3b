"""One look at a ChatRelease: observe the cluster, decide, look closer if the decision
asks (health checks, Prometheus), then write the status once and carry out the actions.

This is the only place the release core meets I/O. It keeps nothing between looks: all
it knows comes from the ChatRelease's status and the cluster, so it may be killed at any
line and the next look picks up from there.
"""

from __future__ import annotations

import datetime
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kubernetes import client

from chatops import ownership, telemetry
from chatops.adapters.kube import Cluster
from chatops.api import validation
from chatops.api.analysis import Measurement
from chatops.api.release import ChatReleaseSpec, ChatReleaseStatus
from chatops.errors import ChatopsError, MetricsUnavailable
from chatops.metrics.analysis import QueryContext, render
from chatops.metrics.measure import measure
from chatops.metrics.prometheus import PrometheusProvider
from chatops.metrics.provider import MetricProvider
from chatops.release import manifests
from chatops.release.decide import decide
from chatops.release.model import (
    COLORS,
    ApplyDeployment,
    ApplyServices,
    ClearAnnotation,
    Color,
    Decision,
    Event,
    FinalizeTraffic,
    Manual,
    Observation,
    RestoreRevision,
    ScaleDeployment,
    SetTraffic,
    StartSmokeTest,
    other,
)
from chatops.traffic.factory import router_for
from chatops.traffic.router import Split, TrafficRouter, color_of

PLURAL = "chatreleases"
STUCK_RETRY = 15.0
"""Seconds between attempts at an action a human must unblock."""
PROMETHEUS_ENV = "CHATOPS_PROMETHEUS_URL"
log = logging.getLogger("chatops.release")

EventSink = Callable[[dict[str, Any], Event], None]


@dataclass(frozen=True)
class Look:
    """What one look did: the decision, and when to look again."""

    decision: Decision | None
    requeue_after: float


def look(api: client.ApiClient, namespace: str, name: str, post: EventSink) -> Look:
    """Observe, decide, act. Returns when to look again."""
    cluster = Cluster(api)
    body = cluster.get(PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Look(None, 60)
    now = datetime.datetime.now(datetime.UTC)
    status = ChatReleaseStatus.model_validate(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 0)
    if validation.problems("ChatRelease", body.get("spec") or {}):
        _refuse(cluster, body, status, generation, now)
        return Look(None, 60)
    spec = ChatReleaseSpec.model_validate(body["spec"])
    if status.stable_revision is None:  # new: take back what a namesake left serving
        cluster.adopt(namespace, name)
    router = router_for(spec, api, ownership.owner(body))
    obs = Observation(
        name=name,
        namespace=namespace,
        generation=generation,
        spec=spec,
        status=status,
        now=now,
        deployments=cluster.deployments(namespace, name),
        weights=_weights(router, namespace, name, spec, status),
        manual=_manual(body["metadata"].get("annotations") or {}),
        smoke=cluster.job_state(namespace, status.smoke_test_job)
        if status.smoke_test_job
        else None,
    )
    decision = decide(obs)
    if decision.needs:
        decision = decide(_probed(cluster, obs, decision))
    try:
        _carry_out(cluster, router, body, obs, decision, post)
    except ChatopsError as err:
        # Retrying will not help until a human fixes what the error names (a missing
        # HTTPRoute, a route without the color backendRefs): say so where they look.
        _stuck(cluster, body, str(err), post)
        return Look(decision, STUCK_RETRY)
    telemetry.record_release(namespace, name, decision)
    return Look(decision, decision.requeue_after)


def _stuck(cluster: Cluster, body: dict[str, Any], problem: str, post: EventSink) -> None:
    message = f"cannot carry out the release: {problem}"
    meta = body["metadata"]
    cluster.patch_status(PLURAL, meta["namespace"], meta["name"], {"message": message})
    if (body.get("status") or {}).get("message") != message:  # said once, not every retry
        post(body, Event("Warning", "ActionFailed", message))


def _refuse(
    cluster: Cluster,
    body: dict[str, Any],
    status: ChatReleaseStatus,
    generation: int,
    now: datetime.datetime,
) -> None:
    """`Accepted=False` naming every problem; nothing else is done with such a spec."""
    conditions = validation.accepted(
        "ChatRelease", body.get("spec") or {}, generation, status.conditions, now
    )
    meta = body["metadata"]
    cluster.patch_status(
        PLURAL,
        meta["namespace"],
        meta["name"],
        {
            "observedGeneration": generation,
            "conditions": [c.wire() for c in conditions],
        },
    )


def _manual(annotations: Mapping[str, str]) -> Manual:
    promote = annotations.get("chatops.dev/promote")
    return Manual(
        promote="full" if promote == "full" else "step" if promote is not None else None,
        abort="chatops.dev/abort" in annotations,
        retry="chatops.dev/retry" in annotations,
    )


def _splits(name: str, spec: ChatReleaseSpec, canary: Color, weight: int) -> list[Split]:
    stable = other(canary)
    return [
        Split(
            c.name,
            manifests.deployment_name(name, c.name, stable),
            manifests.deployment_name(name, c.name, canary),
            weight,
        )
        for c in spec.components
    ]


def _weights(
    router: TrafficRouter,
    namespace: str,
    name: str,
    spec: ChatReleaseSpec,
    status: ChatReleaseStatus,
) -> dict[str, dict[Color, int]]:
    """Percent per component and color, as the router shows it; empty where it cannot
    tell (the routing object is missing: the decision then sets it)."""
    # The stable side of a split is the active color: an NGINX stable Ingress routes to the
    # stable Service, which selects it, so that is where its share of traffic goes.
    canary = other(status.active_color or "blue")
    try:
        seen = router.get_weights(namespace, name, _splits(name, spec, canary, 0))
    except ChatopsError as err:
        log.info("%s/%s: cannot read traffic weights: %s", namespace, name, err)
        return {}
    out: dict[str, dict[Color, int]] = {}
    for component, by_service in seen.items():
        colors: dict[Color, int] = {}
        for service, weight in by_service.items():
            color = color_of(service)
            if color in COLORS:
                colors["blue" if color == "blue" else "green"] = weight
        out[component] = colors
    return out


# -- probes ---------------------------------------------------------------------------------


def _probed(cluster: Cluster, obs: Observation, decision: Decision) -> Observation:
    health = _health(obs, decision.needs.health) if decision.needs.health else None
    measurements = _measure(cluster, obs, decision.needs.measure) if decision.needs.measure else ()
    return replace(obs, health=health, measurements=measurements, now=obs.now)


def _context(obs: Observation, component: str, color: Color) -> QueryContext:
    return QueryContext(
        service=manifests.deployment_name(obs.name, component, color),
        namespace=obs.namespace,
        component=component,
        color=color,
        revision=obs.status.canary_revision or obs.status.stable_revision or "",
    )


def _health(obs: Observation, color: Color) -> dict[str, str | None]:
    """None per healthy component; why not, otherwise."""
    out: dict[str, str | None] = {}
    for c in obs.spec.components:
        check = c.health_check
        if check is None:
            out[c.name] = None
            continue
        context = _context(obs, c.name, color)
        url = (
            render(check.url, context, f"spec.components[{c.name}].healthCheck.url")
            if check.url
            else f"http://{context.service}.{obs.namespace}.svc:{check.port or c.service.port}"
            f"{check.path}"
        )
        try:
            with urllib.request.urlopen(url, timeout=check.timeout_seconds) as reply:
                out[c.name] = None if 200 <= reply.status < 300 else f"HTTP {reply.status}"
        except urllib.error.HTTPError as err:
            out[c.name] = f"HTTP {err.code} from {url}"
        except (OSError, ValueError) as err:
            out[c.name] = f"{url}: {err}"
    return out


def _measure(cluster: Cluster, obs: Observation, color: Color) -> tuple[Measurement, ...]:
    analysis = obs.spec.analysis
    assert analysis is not None
    address = (
        analysis.prometheus.address
        or os.environ.get(PROMETHEUS_ENV)
        or os.environ.get("PROMETHEUS_URL", "http://prometheus-server.monitoring.svc")
    )
    token = None
    ref = analysis.prometheus.auth_secret_ref
    provider: MetricProvider
    try:
        if ref is not None:
            token = cluster.secret_value(obs.namespace, ref.name, ref.key)
        provider = PrometheusProvider(address, token=token)
    except (ChatopsError, KeyError, client.ApiException) as err:
        provider = _Unavailable(address, f"cannot read the Prometheus token: {type(err).__name__}")
    taken: list[Measurement] = []
    for c in obs.spec.components:
        taken += measure(provider, analysis, _context(obs, c.name, color), obs.now)
    return tuple(taken)


class _Unavailable:
    def __init__(self, address: str, problem: str) -> None:
        self.address, self.problem = address, problem

    def query(self, promql: str) -> float | None:
        raise MetricsUnavailable(self.address, self.problem)


# -- acting ---------------------------------------------------------------------------------


def _carry_out(
    cluster: Cluster,
    router: TrafficRouter,
    body: dict[str, Any],
    obs: Observation,
    decision: Decision,
    post: EventSink,
) -> None:
    """Annotations first (a lost `promote` is safer than a doubled one), then the status,
    then events and actions, which converge the cluster on that status."""
    namespace, name = obs.namespace, obs.name
    cleared = [a.key for a in decision.actions if isinstance(a, ClearAnnotation)]
    if cleared:
        cluster.remove_annotations(PLURAL, namespace, name, cleared)
    new, old = decision.status.wire(), obs.status.wire()
    if new != old:
        patch: dict[str, Any] = {key: None for key in old if key not in new}
        patch.update(new)
        cluster.patch_status(PLURAL, namespace, name, patch)
    for event in decision.events:
        post(body, event)
    spec = obs.spec
    components = {c.name: c for c in spec.components}
    for action in decision.actions:
        if isinstance(action, ApplyDeployment):
            wanted = manifests.deployment(
                body,
                spec,
                components[action.component],
                action.color,
                action.revision,
                action.replicas,
            )
            # kept first: whatever runs a revision can always be put back on it
            remembered = {
                action.revision,
                *(r for r in (decision.status.stable_revision, obs.status.stable_revision) if r),
                *(h.revision for h in decision.status.history),
            }
            cluster.keep_template(manifests.kept_template(body, wanted), remembered)
            cluster.apply(wanted)
        elif isinstance(action, ScaleDeployment):
            cluster.scale(
                namespace,
                manifests.deployment_name(name, action.component, action.color),
                action.replicas,
            )
        elif isinstance(action, RestoreRevision):
            cluster.restore_revision(
                namespace,
                name,
                action.component,
                action.revision,
                components[action.component].replicas,
            )
        elif isinstance(action, ApplyServices):
            for c in spec.components:
                for color in COLORS:
                    cluster.apply(manifests.service(body, c, color))
                cluster.apply(manifests.service(body, c, action.active, stable=True))
        elif isinstance(action, SetTraffic):
            router.set_weights(namespace, name, _splits(name, spec, action.canary, action.weight))
        elif isinstance(action, FinalizeTraffic):
            router.finalize(namespace, name, _splits(name, spec, other(action.active), 0))
        elif isinstance(action, StartSmokeTest):
            revision = decision.status.canary_revision or ""
            cluster.apply(manifests.smoke_job(body, spec, action.job, action.color, revision))
