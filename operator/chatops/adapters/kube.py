"""The Kubernetes API, as the controllers need it: apply owned objects, read Deployments
and Jobs back, patch a resource's status and annotations, post Events. Every write is
idempotent (server-side apply, merge patches). It knows no controller's vocabulary: each
controller turns what it reads here into its own observation."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from chatops import clock
from chatops.annotations import QUIESCED_BY, REVISION
from chatops.api.common import GROUP, VERSION, Model
from chatops.errors import RevisionUnavailable
from chatops.events import Event

FIELD_MANAGER = "chatops"
EVENT_MESSAGE_LIMIT = 1024
"""Characters of an Event message the API server keeps."""

# The kubernetes client logs every response body at DEBUG, a Secret's data included, and
# `chatops run --log-level debug` turns DEBUG on for every logger: this one never gets it.
logging.getLogger("kubernetes.client.rest").setLevel(logging.INFO)
_APPLY = "application/apply-patch+yaml"
log = logging.getLogger("chatops.kube")


def _plain(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """What `call` answers, as plain JSON: without the client's models, whose building
    (dates parsed field by field) cost a write more CPU than sending it. For writes,
    whose answers are barely read."""
    response = call(*args, _preload_content=False, **kwargs)
    try:
        found: dict[str, Any] = json.loads(response.data or b"{}")
    finally:
        response.release_conn()
    return found


class Cluster:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.versions: dict[tuple[str, str, str], str] = {}
        """The resourceVersion each chatops resource was last read or left at by this
        Cluster: (plural, namespace, name) -> version."""

    # -- chatops resources ------------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        self._versioned(plural, body)
        return body

    def _versioned(self, plural: str, body: Any) -> None:
        """Keep the resourceVersion of `body` (an API answer) in `versions`."""
        if isinstance(body, dict):
            meta = body.get("metadata") or {}
            if meta.get("resourceVersion"):
                key = (plural, meta.get("namespace", ""), meta.get("name", ""))
                self.versions[key] = meta["resourceVersion"]

    def resources(
        self, plural: str, namespace: str | None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Every chatops resource of a kind in `namespace`, or in all namespaces (None)."""
        if namespace is None:
            found = self.custom.list_cluster_custom_object(
                GROUP, VERSION, plural, _request_timeout=timeout
            )
        else:
            found = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, _request_timeout=timeout
            )
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        self._versioned(plural, self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": dict(status)}
        ))

    def write_status(self, plural: str, namespace: str, name: str, old: Model, new: Model) -> None:
        """The status `new` in one merge patch from `old`, with explicit nulls for keys it
        no longer has, in nested objects too; nothing when they are the same. Top-level
        keys this writer did not change are not sent, so it never puts back a stale copy of
        what another writer of the same status (a ChatBackup's drills) wrote meanwhile."""
        before, after = old.wire(), new.wire()
        if before == after:
            return
        patch = {
            k: v for k, v in merge_patch(before, after).items()
            if k not in after or before.get(k) != after[k]
        }
        self.patch_status(plural, namespace, name, patch)

    def patch_status_at(
        self, plural: str, namespace: str, name: str, resource_version: str,
        status: Mapping[str, Any],
    ) -> bool:
        """A status merge patch that applies only if the object is still at
        `resource_version`; False (nothing written) when it has changed since."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        try:
            self._versioned(plural, self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, body
            ))
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    def post_event(self, ref: Mapping[str, Any], event: Event) -> None:
        """An Event on the object `ref` (apiVersion, kind, metadata), created now and
        synchronously: when this returns, a reader sees it, so a controller posts it
        before the status that it explains. Events are auxiliary: a refused one is logged."""
        meta = ref["metadata"]
        now = clock.now().isoformat()
        message = event.message
        if len(message) > EVENT_MESSAGE_LIMIT:
            message = message[: EVENT_MESSAGE_LIMIT - 1] + "…"
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": ref["apiVersion"],
                "kind": ref["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": message,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            _plain(self.core.create_namespaced_event, meta["namespace"], body)
        except ApiException as err:
            log.warning("cannot post Event %s on %s %s/%s: %s", event.reason, ref["kind"],
                        meta["namespace"], meta["name"], err.reason)

    def remove_annotations(self, plural: str, namespace: str, name: str, keys: list[str]) -> None:
        patch = {"metadata": {"annotations": dict.fromkeys(keys)}}
        self._versioned(plural, self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, patch
        ))

    def remove_annotation_if(
        self, plural: str, namespace: str, name: str, key: str, value: str
    ) -> bool:
        """Remove annotation `key` only if it still has `value` (a JSON patch test), so a
        request made again meanwhile is not lost; False when it changed or is gone."""
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        patch = [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]
        try:
            self._versioned(plural, self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                patch,
                _content_type="application/json-patch+json",
            ))
        except ApiException as err:
            if err.status in (404, 409, 422):
                return False
            raise
        return True

    # -- owned objects ----------------------------------------------------------------

    def apply(self, manifest: dict[str, Any]) -> str | None:
        """Server-side apply of a Deployment, Service or Job we own; the resourceVersion
        it left the object at (None for a Job that was there)."""
        kind, meta = manifest["kind"], manifest["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        kw = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": _APPLY}
        if kind == "Deployment":
            written = _plain(self.apps.patch_namespaced_deployment, name, namespace, manifest,
                             **kw)
        elif kind == "Service":
            written = _plain(self.core.patch_namespaced_service, name, namespace, manifest, **kw)
        elif kind == "Job":
            try:
                written = _plain(self.batch.create_namespaced_job, namespace, manifest)
            except ApiException as err:
                if err.status != 409:  # it exists: a Job's template cannot change anyway
                    raise
                return None
        else:
            raise ValueError(f"cannot apply a {kind}")
        version: str | None = (written.get("metadata") or {}).get("resourceVersion")
        return version

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        try:
            _plain(self.apps.patch_namespaced_deployment_scale, name, namespace,
                   {"spec": {"replicas": replicas}})
        except ApiException as err:
            if err.status != 404:
                raise

    def quiesce(self, namespace: str, name: str, by: str | None, replicas: int) -> None:
        """Scale a Deployment and mark who stopped it (`by`), or unmark it (None), in one
        patch: a ChatRelease leaves a marked Deployment alone instead of scaling it back."""
        patch = {"metadata": {"annotations": {QUIESCED_BY: by}}, "spec": {"replicas": replicas}}
        try:
            self.apps.patch_namespaced_deployment(name, namespace, patch)
        except ApiException as err:
            if err.status != 404:  # deleted meanwhile: nothing left to stop or bring back
                raise

    def deployments(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The Deployments matching the label `selector`, in their wire form (as a watch
        shows them)."""
        found = self.apps.list_namespaced_deployment(namespace, label_selector=selector).items
        return [self.api.sanitize_for_serialization(d) for d in found]

    def restore_revision(self, namespace: str, deployment: str, revision: str) -> None:
        """Put a Deployment back on the pod template it had at `revision`, taken from its
        own ReplicaSet history (what `kubectl rollout undo` does): for Deployments made
        before chatops kept their templates (`restore_kept`)."""
        sets = self.apps.list_namespaced_replica_set(
            namespace, label_selector=f"{REVISION}={revision}"
        ).items
        mine = [
            rs
            for rs in sets
            if any(
                o.kind == "Deployment" and o.name == deployment
                for o in rs.metadata.owner_references or []
            )
        ]
        if not mine:
            raise RevisionUnavailable(
                f"Deployment {namespace}/{deployment}",
                f"cannot go back to revision {revision}: no ControllerRevision kept it and "
                "no ReplicaSet of it is left; apply the stable version's template by hand",
            )
        template = self.api.sanitize_for_serialization(mine[0].spec.template)
        template["metadata"]["labels"].pop("pod-template-hash", None)
        self.apps.patch_namespaced_deployment(
            deployment, namespace, {"spec": {"template": template}}
        )

    def restore_kept(self, namespace: str, name: str, replicas: int) -> bool:
        """Apply the Deployment kept in ControllerRevision `name`, at `replicas`: a
        rollback that needs no ReplicaSet history. False when nothing is kept there."""
        try:
            kept = self.apps.read_namespaced_controller_revision(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        manifest = dict(kept.data)
        manifest["spec"] = {**manifest["spec"], "replicas": replicas}
        self.apply(manifest)
        return True

    def keep_template(self, manifest: dict[str, Any]) -> bool:
        """Create the ControllerRevision `manifest` (a kept Deployment); False when it
        exists (it holds the same revision already)."""
        try:
            _plain(self.apps.create_namespaced_controller_revision,
                   manifest["metadata"]["namespace"], manifest)
        except ApiException as err:
            if err.status != 409:
                raise
            return False
        return True

    def prune_templates(self, namespace: str, selector: str, keep: Collection[str]) -> None:
        """Delete the ControllerRevisions matching `selector` whose revision label is not in
        `keep`, so they stay as many as the controller remembers: one request, whatever
        their number (`notin` also takes those with no label)."""
        kept = ",".join(sorted(keep))
        _plain(self.apps.delete_collection_namespaced_controller_revision, namespace,
               label_selector=f"{selector},{REVISION} notin ({kept})" if kept else selector)

    def namespace_terminating(self, namespace: str) -> bool:
        """Whether `namespace` is being deleted: nothing can be created there any more
        (the API server refuses with 403 "being terminated") and all goes anyway."""
        try:
            found = self.core.read_namespace(namespace)
        except ApiException as err:
            if err.status == 404:
                return True
            raise
        return bool(found.metadata.deletion_timestamp) or found.status.phase == "Terminating"

    def listed(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The Deployments or Services matching `selector`, as plain objects."""
        if kind == "Deployment":
            items = self.apps.list_namespaced_deployment(namespace, label_selector=selector)
        else:
            items = self.core.list_namespaced_service(namespace, label_selector=selector)
        found: list[dict[str, Any]] = self.api.sanitize_for_serialization(items.items)
        return found

    def patch_metadata(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A merge patch of a Deployment's or Service's metadata; gone is fine."""
        try:
            if kind == "Deployment":
                _plain(self.apps.patch_namespaced_deployment, name, namespace, patch)
            else:
                _plain(self.core.patch_namespaced_service, name, namespace, patch)
        except ApiException as err:
            if err.status != 404:
                raise

    def job(self, namespace: str, name: str) -> client.V1Job | None:
        """The Job `name` with its status; None when there is none."""
        try:
            job: client.V1Job = self.batch.read_namespaced_job_status(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return job

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = self.core.read_namespaced_secret(name, namespace)
        data = (secret.data or {}).get(key)
        if data is None:
            raise KeyError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data).decode()


def merge_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """`after` as a JSON merge patch (RFC 7386) over `before`: every key of `after`, and
    an explicit null for each key `before` has and `after` has not, in nested objects
    too — a merge patch merges nested objects, so a field cleared inside one (a drain's
    `waveDoneAt` when the next wave begins) would otherwise keep its old value."""
    patch: dict[str, Any] = dict.fromkeys((key for key in before if key not in after), None)
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            patch[key] = merge_patch(old, value)
        else:
            patch[key] = value
    return patch
