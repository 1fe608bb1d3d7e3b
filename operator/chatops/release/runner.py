"""One look at a ChatRelease: observe the cluster, decide, look closer if the decision
asks (health checks, Prometheus), then write the status once and carry out the actions.

This is the only place the release core meets I/O. It keeps nothing between looks: all
it knows comes from the ChatRelease's status and the cluster, so it may be killed at any
line and the next look picks up from there.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, replace
from typing import Any

from kubernetes import client

from chatops import clock, ownership, telemetry
from chatops.adapters.kube import Cluster
from chatops.adapters.redact import redact
from chatops.adapters.watched import Seen
from chatops.api import validation
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.errors import ChatopsError
from chatops.events import Event, EventSink, subject
from chatops.metrics.sweep import Watched
from chatops.release import execute, manifests, observe, probes
from chatops.release import status as st
from chatops.release.model import (
    COLORS,
    ClearAnnotation,
    Color,
    Decision,
    Manual,
    Observation,
    other,
)
from chatops.traffic.factory import router_for
from chatops.traffic.router import HeaderMatch, TrafficRouter, color_of

PLURAL = "chatreleases"
STUCK_RETRY = 15.0
"""Seconds between attempts at an action a human must unblock."""
log = logging.getLogger("chatops.release")


@dataclass(frozen=True)
class Look:
    """What one look did: the decision, and when to look again."""

    decision: Decision | None
    requeue_after: float
    version: str | None = None
    """The ChatRelease's resourceVersion as the look left it (`watched.current`)."""
    watch: Watched | None = None
    """The analysis going on, for the sweep to watch until the next look."""


def look(
    api: client.ApiClient, namespace: str, name: str, post: EventSink, seen: Seen | None = None
) -> Look:
    """Observe, decide, act. Returns when to look again. What `seen` holds (the
    watches' copy) is read from it; the rest from the API server."""
    seen = seen or Seen()
    cluster = Cluster(api)
    body = seen.release or cluster.get(PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Look(None, 60)
    now = clock.now()
    status = ChatReleaseStatus.model_validate(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 0)
    if validation.problems("ChatRelease", body.get("spec") or {}):
        _refuse(cluster, body, status, generation, now)
        return Look(None, 60, cluster.versions.get((PLURAL, namespace, name)))
    spec = ChatReleaseSpec.model_validate(body["spec"])
    if status.stable_revision is None:  # new: take back what a namesake left serving
        _adopt(cluster, namespace, name)
    router = router_for(spec, api, ownership.owner(body), seen)
    obs = Observation(
        name=name,
        namespace=namespace,
        generation=generation,
        spec=spec,
        status=status,
        now=now,
        deployments=observe.deployments(
            seen.deployments or cluster.deployments(namespace, observe.selector(name))
        ),
        weights=router_weights(router, namespace, name, spec, status),
        header_routes=header_routes(router, namespace, name, spec, status),
        manual=Manual.read(body["metadata"].get("annotations") or {}),
        smoke=observe.smoke_result(cluster.job(namespace, status.smoke_test_job))
        if status.smoke_test_job
        else None,
        breach=seen.breach,
    )
    obs, decision = probes.answered(
        obs, lambda o, needs: probes.probed(cluster, o, needs, seen.swept)
    )
    cluster.versions.setdefault((PLURAL, namespace, name), body["metadata"]["resourceVersion"])
    done = _carry_out(cluster, router, body, obs, decision, post, seen)
    watch = (probes.watched(cluster, obs, decision.analyzing, seen.watching)
             if decision.analyzing else None)
    return replace(done, version=cluster.versions[(PLURAL, namespace, name)], watch=watch)


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


def router_weights(
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


# -- acting ---------------------------------------------------------------------------------


def _carry_out(
    cluster: Cluster,
    router: TrafficRouter,
    body: dict[str, Any],
    obs: Observation,
    decision: Decision,
    post: EventSink,
    seen: Seen,
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
    told = subject(body, decision.status.wire())  # the status these Events explain
    for event in decision.events:
        post(told, event)
    was = next((c for c in obs.status.conditions if c.type == st.RECONCILED), None)
    before = st.action_problem(obs.status)
    shown = (
        decision.status
        if was is None or before is None
        else st.stuck(decision.status, was.reason, before, now, generation)
    )
    cluster.write_status(PLURAL, namespace, name, obs.status, shown)
    try:
        execute.act(cluster, router, body, obs, decision, seen)
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


