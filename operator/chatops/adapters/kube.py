"""The Kubernetes API, as the release handler needs it: apply owned objects, read
Deployments and Jobs back as the decision core's observations, patch a resource's status
and annotations. Every write is idempotent (server-side apply, merge patches)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from chatops.api.common import GROUP, VERSION
from chatops.release.manifests import REVISION, Manifest
from chatops.release.model import Color, DeploymentState, SmokeResult
from chatops.traffic.router import COLOR_LABEL, COMPONENT_LABEL, INSTANCE_LABEL

FIELD_MANAGER = "chatops"
QUIESCED_BY = "chatops.dev/quiesced-by"
"""On a Deployment a ChatRecovery stopped: which one (`namespace/name`)."""

# The kubernetes client logs every response body at DEBUG, a Secret's data included, and
# `chatops run --log-level debug` turns DEBUG on for every logger: this one never gets it.
logging.getLogger("kubernetes.client.rest").setLevel(logging.INFO)
_APPLY = "application/apply-patch+yaml"


class Cluster:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)

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
        return body

    def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": dict(status)}
        )

    def remove_annotations(self, plural: str, namespace: str, name: str, keys: list[str]) -> None:
        patch = {"metadata": {"annotations": dict.fromkeys(keys)}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, patch)

    def remove_annotation_if(
        self, plural: str, namespace: str, name: str, key: str, value: str
    ) -> bool:
        """Remove annotation `key` only if it still has `value` (a JSON patch test), so a
        request made again meanwhile is not lost; False when it changed or is gone."""
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        patch = [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]
        try:
            self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                patch,
                _content_type="application/json-patch+json",
            )
        except ApiException as err:
            if err.status in (404, 409, 422):
                return False
            raise
        return True

    # -- owned objects ----------------------------------------------------------------

    def apply(self, manifest: Manifest) -> None:
        """Server-side apply of a Deployment, Service or Job we own."""
        kind, meta = manifest["kind"], manifest["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        kw = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": _APPLY}
        if kind == "Deployment":
            self.apps.patch_namespaced_deployment(name, namespace, manifest, **kw)
        elif kind == "Service":
            self.core.patch_namespaced_service(name, namespace, manifest, **kw)
        elif kind == "Job":
            try:
                self.batch.create_namespaced_job(namespace, manifest)
            except ApiException as err:
                if err.status != 409:  # it exists: a Job's template cannot change anyway
                    raise
        else:
            raise ValueError(f"cannot apply a {kind}")

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        try:
            self.apps.patch_namespaced_deployment_scale(
                name, namespace, {"spec": {"replicas": replicas}}
            )
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

    def deployments(self, namespace: str, release: str) -> dict[tuple[str, Color], DeploymentState]:
        """The release's Deployments by (component, color)."""
        found = self.apps.list_namespaced_deployment(
            namespace, label_selector=f"{INSTANCE_LABEL}={release}"
        ).items
        out: dict[tuple[str, Color], DeploymentState] = {}
        for d in found:
            labels = d.metadata.labels or {}
            color = labels.get(COLOR_LABEL)
            if color not in ("blue", "green"):
                continue
            status = d.status
            out[(labels.get(COMPONENT_LABEL, ""), color)] = DeploymentState(
                component=labels.get(COMPONENT_LABEL, ""),
                color=color,
                revision=(d.spec.template.metadata.labels or {}).get(REVISION),
                replicas=d.spec.replicas or 0,
                available=status.available_replicas or 0,
                updated=status.updated_replicas or 0,
                current=(status.observed_generation or 0) >= (d.metadata.generation or 0),
                quiesced_by=(d.metadata.annotations or {}).get(QUIESCED_BY),
            )
        return out

    def restore_revision(self, namespace: str, deployment: str, revision: str) -> None:
        """Put a Deployment back on the pod template it had at `revision`, taken from its
        own ReplicaSet history (what `kubectl rollout undo` does)."""
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
            raise LookupError(f"no ReplicaSet of Deployment {deployment} has revision {revision}")
        template = self.api.sanitize_for_serialization(mine[0].spec.template)
        template["metadata"]["labels"].pop("pod-template-hash", None)
        self.apps.patch_namespaced_deployment(
            deployment, namespace, {"spec": {"template": template}}
        )

    def job_state(self, namespace: str, name: str) -> SmokeResult | None:
        try:
            job = self.batch.read_namespaced_job_status(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        for condition in job.status.conditions or []:
            if condition.status == "True" and condition.type == "Complete":
                return "Succeeded"
            if condition.status == "True" and condition.type == "Failed":
                return "Failed"
        return "Running"

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = self.core.read_namespaced_secret(name, namespace)
        data = (secret.data or {}).get(key)
        if data is None:
            raise KeyError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data).decode()
