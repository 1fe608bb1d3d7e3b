"""The answers a decision asks for before it can be final (`Needs`): health checks,
measurements, the drain's reconnect checks, a release's cost, webhook calls. Each is
asked once a look; the look asks again, round by round, while an answer leads the
decision to a further question (health checks passed, now the pre-rollout webhook).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kubernetes import client

from chatops.adapters import http
from chatops.adapters.kube import Cluster
from chatops.api.analysis import Measurement, PrometheusSource
from chatops.api.common import SecretKeyRef
from chatops.api.cost import CostQueries
from chatops.api.drain import Drain
from chatops.errors import ChatopsError, MetricsUnavailable
from chatops.metrics import sweep as sweeps
from chatops.metrics import window as window_queries
from chatops.metrics.analysis import QueryContext, WindowContext, last_round_at, render, window
from chatops.metrics.measure import measure
from chatops.metrics.prometheus import PrometheusProvider
from chatops.metrics.web import WebProvider
from chatops.release import drain as drains
from chatops.release import manifests
from chatops.release import status as st
from chatops.release.decide import decide
from chatops.release.model import (
    Color,
    CostCount,
    CostWindow,
    Decision,
    Needs,
    Observation,
    WebhookRequest,
    other,
)

PROMETHEUS_ENV = "CHATOPS_PROMETHEUS_URL"
ROUNDS = 3
"""Rounds of probing one look may take: a gate's answer can lead the decision to the
next gate (health checks passed, now the pre-rollout webhook) within the same look."""

Probe = Callable[[Observation, Needs], Observation]


def answered(obs: Observation, probe: Probe) -> tuple[Observation, Decision]:
    """Decide on `obs`, then probe what the decision asks and decide again, at most
    `ROUNDS` times: the observation with its answers, and the decision on it."""
    decision = decide(obs)
    for _ in range(ROUNDS):
        needs = unanswered(decision.needs, obs)
        if not needs:
            break
        obs = probe(obs, needs)
        decision = decide(obs)
    return obs, decision



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


def probed(
    cluster: Cluster, obs: Observation, needs: Needs, swept: sweeps.Swept | None = None
) -> Observation:
    """`obs` with the answers to `needs`, beside those it already had; a round's queries
    the last sweep answered (`swept`) are not asked again."""
    found: dict[str, Any] = {}
    if needs.health:
        found["health"] = _health(obs, needs.health)
    if needs.measure:
        found["measurements"] = _measure(
            cluster, obs, needs.measure,
            sweeps.since(swept, last_round_at(obs.status.analysis_run), obs.spec.analysis),
        )
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


def _provider(cluster: Cluster, obs: Observation) -> PrometheusProvider | _Unavailable:
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


def _measure(
    cluster: Cluster, obs: Observation, color: Color, swept: sweeps.Answers
) -> tuple[Measurement, ...]:
    analysis = obs.spec.analysis
    assert analysis is not None
    prometheus = _provider(cluster, obs)
    provider = sweeps.Answered(prometheus, prometheus.source, swept)
    web = _web(cluster, obs.namespace)
    taken: list[Measurement] = []
    for judged, stable in _versions(obs, color):
        taken += measure(provider, analysis, judged, obs.now, stable, web)
    return tuple(taken)


def _versions(
    obs: Observation, color: Color
) -> tuple[tuple[QueryContext, QueryContext | None], ...]:
    """Each component's version on `color`, and the stable one beside it, if any."""
    versions = []
    for c in obs.spec.components:
        beside = obs.deployments.get((c.name, other(color)))
        stable = (
            replace(_context(obs, c.name, other(color)), revision=beside.revision or "")
            if beside is not None else None
        )
        versions.append((_context(obs, c.name, color), stable))
    return tuple(versions)


def watched(
    cluster: Cluster, obs: Observation, color: Color, before: sweeps.Watched | None = None
) -> sweeps.Watched | None:
    """What the sweep watches of the analysis judging `color`; None without one. The
    Prometheus of what it watched `before` serves on while the spec names the same one,
    until the next round: its token is read from its Secret once a round, not a look."""
    analysis = obs.spec.analysis
    if analysis is None:
        return None
    if before is not None and not obs.measurements and (
        before.analysis.prometheus == analysis.prometheus
    ):
        where, provider = before.source, before.provider
    else:
        fresh = _provider(cluster, obs)
        where, provider = fresh.source, fresh
    return sweeps.Watched((obs.namespace, obs.name), where, provider, analysis,
                          _versions(obs, color))


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
        self.source = sweeps.source(address, problem)

    def series(
        self, promql: str, at: datetime.datetime | None = None
    ) -> list[tuple[dict[str, str], float]]:
        raise MetricsUnavailable(self.address, self.problem)

    def query(self, promql: str) -> float | None:
        raise MetricsUnavailable(self.address, self.problem)

    def query_at(self, promql: str, at: datetime.datetime) -> float | None:
        raise MetricsUnavailable(self.address, self.problem)
