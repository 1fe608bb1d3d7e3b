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
from dataclasses import dataclass, replace
from typing import Any

from kubernetes import client

from chatops import clock, ownership, telemetry
from chatops.adapters import http
from chatops.adapters.kube import Cluster
from chatops.adapters.redact import redact
from chatops.api import validation
from chatops.api.analysis import Measurement, PrometheusSource
from chatops.api.common import SecretKeyRef
from chatops.api.cost import CostQueries
from chatops.api.drain import Drain
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.errors import ChatopsError, MetricsUnavailable
from chatops.events import Event, EventSink
from chatops.metrics import window as window_queries
from chatops.metrics.analysis import QueryContext, WindowContext, render, window
from chatops.metrics.measure import measure
from chatops.metrics.prometheus import PrometheusProvider
from chatops.metrics.provider import WindowProvider
from chatops.metrics.web import WebProvider
from chatops.release import drain as drains
from chatops.release import execute, manifests, observe
from chatops.release import status as st
from chatops.release.decide import decide
from chatops.release.model import (
    COLORS,
    ClearAnnotation,
    Color,
    CostCount,
    CostWindow,
    Decision,
    Manual,
    Needs,
    Observation,
    WebhookRequest,
    other,
)
from chatops.traffic.factory import router_for
from chatops.traffic.router import HeaderMatch, TrafficRouter, color_of

PLURAL = "chatreleases"
STUCK_RETRY = 15.0
"""Seconds between attempts at an action a human must unblock."""
PROMETHEUS_ENV = "CHATOPS_PROMETHEUS_URL"
PROBE_ROUNDS = 3
"""Rounds of probing one look may take: a gate's answer can lead the decision to the
next gate (health checks passed, now the pre-rollout webhook) within the same look."""
log = logging.getLogger("chatops.release")


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
    now = clock.now()
    status = ChatReleaseStatus.model_validate(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 0)
    if validation.problems("ChatRelease", body.get("spec") or {}):
        _refuse(cluster, body, status, generation, now)
        return Look(None, 60)
    spec = ChatReleaseSpec.model_validate(body["spec"])
    if status.stable_revision is None:  # new: take back what a namesake left serving
        _adopt(cluster, namespace, name)
    router = router_for(spec, api, ownership.owner(body))
    obs = Observation(
        name=name,
        namespace=namespace,
        generation=generation,
        spec=spec,
        status=status,
        now=now,
        deployments=observe.deployments(cluster.deployments(namespace, observe.selector(name))),
        weights=_weights(router, namespace, name, spec, status),
        header_routes=header_routes(router, namespace, name, spec, status),
        manual=Manual.read(body["metadata"].get("annotations") or {}),
        smoke=observe.smoke_result(cluster.job(namespace, status.smoke_test_job))
        if status.smoke_test_job
        else None,
    )
    decision = decide(obs)
    for _ in range(PROBE_ROUNDS):
        needs = unanswered(decision.needs, obs)
        if not needs:
            break
        obs = _probed(cluster, obs, needs)
        decision = decide(obs)
    return _carry_out(cluster, router, body, obs, decision, post)


def _adopt(cluster: Cluster, namespace: str, name: str) -> None:
    """What a deleted ChatRelease of this name left serving is this one's again: the
    released mark goes (the apply of the first release rewrites the rest)."""
    selector = manifests.owned_selector(name, released=True)
    for kind in ("Deployment", "Service"):
        for obj in cluster.listed(kind, namespace, selector):
            cluster.patch_metadata(kind, namespace, obj["metadata"]["name"], manifests.adopted())


def report_failure(
    api: client.ApiClient, namespace: str, name: str, err: BaseException, post: EventSink
) -> None:
    """A look that raised what no branch expected: say so in status (`Reconciled=False`,
    reason LookFailed, and the message) and in one Warning Event per distinct problem,
    so it is never a silent retry loop. Best effort: when the API server is what failed,
    this fails too and the daemon's log says it."""
    cluster = Cluster(api)
    body = cluster.get(PLURAL, namespace, name)
    if body is None:
        return
    old = ChatReleaseStatus.model_validate(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 0)
    problem = redact(f"unexpected {type(err).__name__} in the look: {err}")
    now = clock.now()
    if st.action_problem(old) != problem:
        post(body, Event("Warning", "LookFailed", f"cannot carry out the release: {problem}"))
    cluster.write_status(PLURAL, namespace, name, old, st.stuck(old, "LookFailed", problem, now,
                                                                generation))


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
    accepted = next(c for c in conditions if c.type == st.ACCEPTED)
    conditions = st.refused(conditions, accepted.message, now, generation)
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
        seen = router.get_weights(namespace, name, execute.splits(name, spec, canary, 0))
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


def header_routes(
    router: TrafficRouter, namespace: str, name: str, spec: ChatReleaseSpec,
    status: ChatReleaseStatus,
) -> dict[str, frozenset[tuple[Color, tuple[HeaderMatch, ...]]]]:
    """The release's header routes per component, by color, as the router shows them;
    empty where it cannot tell (as `_weights`)."""
    canary = other(status.active_color or "blue")
    try:
        seen = router.get_header_routes(namespace, name, execute.splits(name, spec, canary, 0))
    except ChatopsError as err:
        log.info("%s/%s: cannot read header routes: %s", namespace, name, err)
        return {}
    return observe.header_routes(seen)


# -- probes ---------------------------------------------------------------------------------


def unanswered(needs: Needs, obs: Observation) -> Needs:
    """What `needs` asks that `obs` has no answer to yet: each is probed once a look."""
    return Needs(
        health=needs.health if obs.health is None else None,
        measure=needs.measure if not obs.measurements else None,
        reconnects=needs.reconnects if not obs.reconnects else None,
        cost=needs.cost if obs.cost is None else None,
        webhooks=tuple(r for r in needs.webhooks
                       if (r.hook.name, r.revision) not in obs.webhooks),
    )


def _probed(cluster: Cluster, obs: Observation, needs: Needs) -> Observation:
    """`obs` with the answers to `needs`, beside those it already had."""
    found: dict[str, Any] = {}
    if needs.health:
        found["health"] = _health(obs, needs.health)
    if needs.measure:
        found["measurements"] = _measure(cluster, obs, needs.measure)
    if needs.reconnects:
        found["reconnects"] = _reconnects(cluster, obs, needs.reconnects)
    if needs.cost:
        found["cost"] = _cost(cluster, obs, needs.cost)
    if needs.webhooks:
        found["webhooks"] = {
            **obs.webhooks, **{(r.hook.name, r.revision): _call(r) for r in needs.webhooks}
        }
    return replace(obs, **found)


def _call(request: WebhookRequest) -> str | None:
    """POST the payload; None on 2xx, else what went wrong (`HTTP 503`; never the URL,
    which may carry a token)."""
    hook = request.hook
    why = http.post_json(hook.url, request.payload, hook.timeout_seconds, label=hook.name)
    return None if why is None else why.removeprefix(f"{hook.name}: ")


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
        out[c.name] = http.probe(url, check.timeout_seconds)
    return out


def _provider(cluster: Cluster, obs: Observation) -> WindowProvider:
    """The release's Prometheus: `spec.analysis.prometheus` (its token from its Secret),
    else the operator's."""
    source = obs.spec.analysis.prometheus if obs.spec.analysis else PrometheusSource()
    address = (
        source.address
        or os.environ.get(PROMETHEUS_ENV)
        or os.environ.get("PROMETHEUS_URL", "http://prometheus-server.monitoring.svc")
    )
    ref = source.auth_secret_ref
    try:
        token = cluster.secret_value(obs.namespace, ref.name, ref.key) if ref else None
        return PrometheusProvider(address, token=token)
    except (ChatopsError, KeyError, client.ApiException) as err:
        return _Unavailable(address, f"cannot read the Prometheus token: {type(err).__name__}")


def _web(cluster: Cluster, namespace: str) -> WebProvider:
    """The `web` metrics' provider, reading header Secrets of the release's namespace."""

    def read(ref: SecretKeyRef) -> str:
        try:
            return cluster.secret_value(namespace, ref.name, ref.key)
        except KeyError:
            raise ChatopsError("the Secret has no such key") from None
        except client.ApiException as err:
            raise ChatopsError(f"HTTP {err.status} {err.reason}") from None

    return WebProvider(read)


def _measure(cluster: Cluster, obs: Observation, color: Color) -> tuple[Measurement, ...]:
    analysis = obs.spec.analysis
    assert analysis is not None
    provider = _provider(cluster, obs)
    web = _web(cluster, obs.namespace)
    taken: list[Measurement] = []
    for c in obs.spec.components:
        beside = obs.deployments.get((c.name, other(color)))
        stable = (
            replace(_context(obs, c.name, other(color)), revision=beside.revision or "")
            if beside is not None else None
        )
        taken += measure(provider, analysis, _context(obs, c.name, color), obs.now, stable, web)
    return tuple(taken)


def _windowed(obs: Observation, component: str, color: Color, length: float,
              revision: str) -> WindowContext:
    return WindowContext(
        service=manifests.deployment_name(obs.name, component, color),
        namespace=obs.namespace,
        component=component,
        color=color,
        revision=revision,
        window=window(length),
    )


def _reconnects(cluster: Cluster, obs: Observation, color: Color) -> tuple[Measurement, ...]:
    """The drain's reconnect check on `color` (the one serving) since the wave began or
    the last check."""
    drain = obs.status.scale_down
    assert drain is not None
    gate = (st.drain(obs.spec) or Drain()).reconnect
    strategy = "canary" if obs.spec.strategy.canary else "blueGreen"
    revision = obs.status.stable_revision or ""
    contexts = [
        _windowed(obs, c.name, color, drains.check_window(drain, obs.now), revision)
        for c in obs.spec.components
    ]
    return window_queries.reconnect_check(
        _provider(cluster, obs), drains.check_metric(gate), contexts, obs.now,
        f"spec.strategy.{strategy}.drain.reconnect.query",
    )


def _cost(cluster: Cluster, obs: Observation, span: CostWindow) -> CostCount:
    """The figures of `span`: requests of the new version's color, moved connections of
    the drained color, dropped ones of both."""
    length = (span.until - span.since).total_seconds()
    contexts = [
        (_windowed(obs, c.name, color, length, span.revision), _answers(span, color))
        for c in obs.spec.components
        for color in (span.color, other(span.color))
    ]
    figures, problem = window_queries.count(
        _provider(cluster, obs), obs.spec.cost or CostQueries(), contexts, span.until
    )
    return CostCount(window=span, problem=problem, **figures)


def _answers(span: CostWindow, color: Color) -> frozenset[str]:
    """The cost figures `color`'s Services answer for the window `span`."""
    figures = {"websockets_dropped"}
    if color == span.color:
        figures |= {"requests", "failed_requests"}
    if color == span.drained:
        figures.add("websockets_moved")
    return frozenset(figures)


class _Unavailable:
    def __init__(self, address: str, problem: str) -> None:
        self.address, self.problem = address, problem

    def query(self, promql: str) -> float | None:
        raise MetricsUnavailable(self.address, self.problem)

    def query_at(self, promql: str, at: datetime.datetime) -> float | None:
        raise MetricsUnavailable(self.address, self.problem)


# -- acting ---------------------------------------------------------------------------------


def _carry_out(
    cluster: Cluster,
    router: TrafficRouter,
    body: dict[str, Any],
    obs: Observation,
    decision: Decision,
    post: EventSink,
) -> Look:
    """Annotations first (a lost `promote` is safer than a doubled one), then the Events,
    then the status they explain (a reader who sees the phase finds its Event), then the
    actions, which converge the cluster on that status. A failed action is said in
    status (`Reconciled=False` naming the object and the API server's answer) and in one
    Warning Event per distinct problem; while it lasts, the message says it."""
    namespace, name, now, generation = obs.namespace, obs.name, obs.now, obs.generation
    for action in decision.actions:
        if isinstance(action, ClearAnnotation):
            if action.value is None:
                cluster.remove_annotations(PLURAL, namespace, name, [action.key])
            elif not cluster.remove_annotation_if(PLURAL, namespace, name, action.key,
                                                  action.value):
                log.info("%s/%s: %s changed since it was read; it is kept for the next look",
                         namespace, name, action.key)
    for event in decision.events:
        post(body, event)
    was = next((c for c in obs.status.conditions if c.type == st.RECONCILED), None)
    before = st.action_problem(obs.status)
    shown = (
        decision.status
        if was is None or before is None
        else st.stuck(decision.status, was.reason, before, now, generation)
    )
    cluster.write_status(PLURAL, namespace, name, obs.status, shown)
    try:
        execute.act(cluster, router, body, obs, decision)
    except execute.Refused as failed:
        if failed.problem != before:  # said once, not every retry
            post(body, Event("Warning", "ActionFailed",
                             f"cannot carry out the release: {failed.problem}"))
        stuck = st.stuck(decision.status, "ActionFailed", failed.problem, now, generation)
        cluster.write_status(PLURAL, namespace, name, shown, stuck)
        log.warning("%s/%s: %s", namespace, name, failed.problem)
        return Look(decision, STUCK_RETRY)
    if was is None or before is not None:
        cluster.write_status(PLURAL, namespace, name, shown,
                             st.reconciled(decision.status, now, generation))
    telemetry.record_release(namespace, name, decision.status, [e.reason for e in decision.events])
    return Look(decision, decision.requeue_after)


