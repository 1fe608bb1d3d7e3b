"""Carrying out a release decision's actions on the cluster, in order; the first one
the cluster refuses stops the rest and is raised as `Refused`, naming the object and the
API server's (or the router's) answer, for the runner to put in status."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from chatops.adapters.kube import Cluster
from chatops.adapters.watched import Seen
from chatops.api.release import ChatReleaseSpec
from chatops.errors import ChatopsError
from chatops.release import manifests
from chatops.release.model import (
    COLORS,
    Action,
    ApplyDeployment,
    ApplyServices,
    Color,
    Decision,
    FinalizeTraffic,
    Observation,
    RestoreRevision,
    ScaleDeployment,
    SetHeaderRoute,
    SetTraffic,
    StartSmokeTest,
    other,
)
from chatops.traffic.router import Split, TrafficRouter

ACTION_ERRORS = (ChatopsError, client.ApiException, LookupError, ValueError, OSError)
"""What a refused or failed action raises: reported in status, tried again later."""


def splits(name: str, spec: ChatReleaseSpec, canary: Color, weight: int) -> list[Split]:
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



class Refused(Exception):
    """An action the cluster refused: `problem` names the object and the answer."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _answer(err: BaseException) -> str:
    """The API server's own message of a refusal, else the error's text."""
    if isinstance(err, client.ApiException):
        try:
            message = json.loads(err.body or "{}").get("message")
        except (ValueError, AttributeError):
            message = None
        return f"{err.status} {err.reason}: {message}" if message else f"{err.status} {err.reason}"
    return str(err)


def act(
    cluster: Cluster,
    router: TrafficRouter,
    body: dict[str, Any],
    obs: Observation,
    decision: Decision,
    seen: Seen,
) -> None:
    """Carry out the decision's actions in order; the first one refused stops the rest
    (their order is the safety: traffic moves before anything is scaled down). What
    `seen` shows already done (a Service as wanted) is not sent again."""
    for action in decision.actions:
        try:
            _do(cluster, router, body, obs, decision, action, seen)
        except ACTION_ERRORS as err:
            raise Refused(f"{_object(obs, action)}: {_answer(err)}") from err


def _object(obs: Observation, action: Action) -> str:
    """The object `action` writes, as a user finds it with kubectl."""
    ns, name = obs.namespace, obs.name
    if isinstance(action, ApplyDeployment | ScaleDeployment | RestoreRevision):
        return f"Deployment {ns}/{manifests.deployment_name(name, action.component, action.color)}"
    if isinstance(action, ApplyServices):
        return f"the Services of ChatRelease {ns}/{name}"
    if isinstance(action, SetTraffic | SetHeaderRoute | FinalizeTraffic):
        return "traffic routing"
    if isinstance(action, StartSmokeTest):
        return f"Job {ns}/{action.job}"
    return f"annotation {action.key}"


def _do(
    cluster: Cluster,
    router: TrafficRouter,
    body: dict[str, Any],
    obs: Observation,
    decision: Decision,
    action: Action,
    seen: Seen,
) -> None:
    namespace, name, spec = obs.namespace, obs.name, obs.spec
    components = {c.name: c for c in spec.components}
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
        kept = cluster.keep_template(manifests.kept_template(body, wanted))
        cluster.apply(wanted)
        if kept:  # the old ones go after the apply, which the new version waits for
            cluster.prune_templates(
                namespace, manifests.kept_selector(name, action.component), remembered
            )
    elif isinstance(action, ScaleDeployment):
        cluster.scale(
            namespace,
            manifests.deployment_name(name, action.component, action.color),
            action.replicas,
        )
    elif isinstance(action, RestoreRevision):
        restore(cluster, namespace, name, action, components[action.component].replicas)
    elif isinstance(action, ApplyServices):
        for c in spec.components:
            for wanted in (
                *(manifests.service(body, c, color) for color in COLORS),
                manifests.service(body, c, action.active, stable=True),
            ):
                key = ("Service", namespace, wanted["metadata"]["name"])
                if not manifests.service_shown(seen.get(*key), wanted):
                    seen.forget(*key)
                    seen.forget(*key, cluster.apply(wanted))
    elif isinstance(action, SetTraffic):
        router.set_weights(namespace, name, splits(name, spec, action.canary, action.weight))
    elif isinstance(action, SetHeaderRoute):
        router.set_header_route(
            namespace, name, splits(name, spec, action.canary, 0), action.matches
        )
    elif isinstance(action, FinalizeTraffic):
        router.finalize(namespace, name, splits(name, spec, other(action.active), 0))
    elif isinstance(action, StartSmokeTest):
        revision = decision.status.canary_revision or ""
        cluster.apply(manifests.smoke_job(body, spec, action.job, action.color, revision))


def restore(
    cluster: Cluster, namespace: str, release: str, action: RestoreRevision, replicas: int
) -> None:
    """Put the component's Deployment back on `action.revision`: from the template the
    release kept (a ControllerRevision), else — a Deployment made before templates were
    kept — from its ReplicaSet history; raises RevisionUnavailable when neither has it."""
    kept = manifests.template_name(release, action.component, action.revision)
    if not cluster.restore_kept(namespace, kept, replicas):
        deployment = manifests.deployment_name(release, action.component, action.color)
        cluster.restore_revision(namespace, deployment, action.revision)
