"""The deletion of a ChatRelease, carried out: observe, ask `teardown`, act, until
nothing is left to do. Each round is idempotent, so a deletion interrupted by a killed
operator is finished by the next one (kopf keeps the finalizer until this returns
nothing left)."""

from __future__ import annotations

import logging

from kubernetes import client
from pydantic import ValidationError

from chatops import ownership
from chatops.adapters.kube import Cluster
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.events import Event, EventSink
from chatops.release import execute, manifests
from chatops.release.execute import splits
from chatops.release.model import other
from chatops.release.runner import PLURAL, header_routes, router_weights
from chatops.release.teardown import owned, teardown
from chatops.traffic.factory import router_for

log = logging.getLogger("chatops.release")


def finish(
    api: client.ApiClient, namespace: str, name: str, post: EventSink, stuck: str | None
) -> str | None:
    """One round of the deletion of ChatRelease `namespace/name`; returns why it is not
    over yet (the caller tries again soon), or None once everything is done. `stuck` is
    why moving traffic back has kept failing, once it has failed too often to wait on."""
    cluster = Cluster(api)
    body = cluster.get(PLURAL, namespace, name)
    if body is None:
        return None
    try:
        spec = ChatReleaseSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        log.warning(
            "%s/%s: deleted with a spec chatops cannot read: nothing touched", namespace, name
        )
        return None
    status = ChatReleaseStatus.model_validate(body.get("status") or {})
    # In a namespace being deleted nothing can be created (not even an Event: 403 "being
    # terminated") and everything goes anyway: the decision is then to do nothing.
    terminating = cluster.namespace_terminating(namespace)
    selector = manifests.owned_selector(name)
    objects = (
        ()
        if terminating
        else (
            *owned("Deployment", cluster.listed("Deployment", namespace, selector)),
            *owned("Service", cluster.listed("Service", namespace, selector)),
        )
    )
    router = router_for(spec, api, ownership.owner(body))
    weights = {} if terminating else router_weights(router, namespace, name, spec, status)
    headers = {} if terminating else header_routes(router, namespace, name, spec, status)
    plan = teardown(
        spec, status, objects, weights, terminating, traffic_stuck=stuck, header_routes=headers
    )
    for restore in plan.restore:
        component = next(c for c in spec.components if c.name == restore.component)
        execute.restore(cluster, namespace, name, restore, component.replicas)
    if plan.headers is not None:
        router.set_header_route(namespace, name, splits(name, spec, plan.headers.canary, 0), ())
    if plan.traffic is not None:
        router.set_weights(
            namespace, name, splits(name, spec, plan.traffic.canary, plan.traffic.weight)
        )
    if plan.headers is not None or plan.traffic is not None:
        return plan.waiting
    if plan.finalize is not None:
        router.finalize(namespace, name, splits(name, spec, other(plan.finalize.active), 0))
    uid = body["metadata"]["uid"]
    for kept in plan.keep:
        cluster.patch_metadata(
            kept.kind, namespace, kept.name, manifests.released(kept.meta, name, uid)
        )
    for gone in plan.remove:
        patch = manifests.handed_over(gone.meta, body)
        if patch is not None:
            cluster.patch_metadata(gone.kind, namespace, gone.name, patch)
    if plan.waiting is None:
        log.info("%s/%s: deleted: %s", namespace, name, plan.summary)
        if not terminating:
            post(body, Event("Normal", "Deleted", plan.summary))
    return plan.waiting
