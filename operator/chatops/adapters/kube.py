"""The Kubernetes API, as the release handler needs it: apply owned objects, read
Deployments and Jobs back as the decision core's observations, patch a resource's status
and annotations. Every write is idempotent (server-side apply, merge patches)."""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Collection, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from chatops.api.common import GROUP, VERSION
from chatops.errors import RevisionUnavailable
from chatops.release.manifests import RELEASED_FROM, REVISION, Manifest, adopted, template_name
from chatops.release.model import Color, DeploymentState, SmokeResult
from chatops.release.teardown import Owned
from chatops.traffic.router import (
    COLOR_LABEL,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
)

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

    def keep_template(self, manifest: Manifest, keep: Collection[str]) -> None:
        """Create the ControllerRevision `manifest` (a kept Deployment), and delete the
        component's kept templates of revisions not in `keep` (the stable one, the one
        in flight, those in history), so they stay as many as the release remembers. One
        that exists already holds the same revision, a hash of what it keeps."""
        meta = manifest["metadata"]
        namespace, labels = meta["namespace"], meta["labels"]
        try:
            self.apps.create_namespaced_controller_revision(namespace, manifest)
        except ApiException as err:
            if err.status != 409:
                raise
            return
        selector = (
            f"{INSTANCE_LABEL}={labels[INSTANCE_LABEL]},{COMPONENT_LABEL}={labels[COMPONENT_LABEL]}"
        )
        for kept in self.apps.list_namespaced_controller_revision(
            namespace, label_selector=selector
        ).items:
            if (kept.metadata.labels or {}).get(REVISION) in keep:
                continue
            try:
                self.apps.delete_namespaced_controller_revision(kept.metadata.name, namespace)
            except ApiException as err:
                if err.status != 404:
                    raise

    def restore_revision(
        self, namespace: str, release: str, component: str, revision: str, replicas: int
    ) -> None:
        """Put the component's Deployment back on what it was at `revision`, from the
        ControllerRevision the release kept of it — not from the Deployment's ReplicaSets,
        which `revisionHistoryLimit` prunes. Raises RevisionUnavailable when neither the
        kept template nor (for Deployments an older chatops made) a ReplicaSet has it."""
        name = template_name(release, component, revision)
        try:
            kept = self.apps.read_namespaced_controller_revision(name, namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            self._restore_from_replica_sets(namespace, release, component, revision)
            return
        manifest = copy.deepcopy(kept.data)
        manifest["spec"]["replicas"] = replicas
        self.apply(manifest)

    def _restore_from_replica_sets(
        self, namespace: str, release: str, component: str, revision: str
    ) -> None:
        deployment = next(
            (
                d.metadata.name
                for d in self.apps.list_namespaced_deployment(
                    namespace,
                    label_selector=f"{INSTANCE_LABEL}={release},{COMPONENT_LABEL}={component}",
                ).items
            ),
            None,
        )
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
        if deployment is None or not mine:
            raise RevisionUnavailable(
                f"Deployment {namespace}/{deployment or release + '-' + component}",
                f"cannot go back to revision {revision}: no ControllerRevision "
                f"{template_name(release, component, revision)} and no ReplicaSet of it "
                "kept; apply the stable version's template by hand",
            )
        template = self.api.sanitize_for_serialization(mine[0].spec.template)
        template["metadata"]["labels"].pop("pod-template-hash", None)
        self.apps.patch_namespaced_deployment(
            deployment, namespace, {"spec": {"template": template}}
        )

    # -- the end of a release -----------------------------------------------------------

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

    def owned(self, namespace: str, release: str) -> list[Owned]:
        """The Deployments and Services chatops made for `release`, not yet released."""
        selector = f"{INSTANCE_LABEL}={release},{MANAGED_BY_LABEL}={MANAGED_BY},!{RELEASED_FROM}"
        found: list[Owned] = []
        for d in self.apps.list_namespaced_deployment(namespace, label_selector=selector).items:
            meta = self.api.sanitize_for_serialization(d.metadata)
            labels = meta.get("labels") or {}
            color = labels.get(COLOR_LABEL)
            found.append(
                Owned(
                    kind="Deployment",
                    name=meta["name"],
                    component=labels.get(COMPONENT_LABEL, ""),
                    color="blue" if color == "blue" else "green" if color == "green" else None,
                    meta=meta,
                    revision=(d.spec.template.metadata.labels or {}).get(REVISION),
                )
            )
        for s in self.core.list_namespaced_service(namespace, label_selector=selector).items:
            meta = self.api.sanitize_for_serialization(s.metadata)
            component = (meta.get("labels") or {}).get(COMPONENT_LABEL, "")
            found.append(Owned("Service", meta["name"], component, None, meta))
        return found

    def patch_metadata(self, kind: str, namespace: str, name: str, patch: Manifest) -> None:
        """A merge patch of a Deployment's or Service's metadata; gone is fine."""
        try:
            if kind == "Deployment":
                self.apps.patch_namespaced_deployment(name, namespace, patch)
            else:
                self.core.patch_namespaced_service(name, namespace, patch)
        except ApiException as err:
            if err.status != 404:
                raise

    def adopt(self, namespace: str, release: str) -> int:
        """Take back what a deleted ChatRelease of this name left serving: its released
        mark goes. Returns how many objects were adopted."""
        selector = f"{INSTANCE_LABEL}={release},{MANAGED_BY_LABEL}={MANAGED_BY},{RELEASED_FROM}"
        left = [
            ("Deployment", d.metadata.name)
            for d in self.apps.list_namespaced_deployment(namespace, label_selector=selector).items
        ] + [
            ("Service", s.metadata.name)
            for s in self.core.list_namespaced_service(namespace, label_selector=selector).items
        ]
        for kind, name in left:
            self.patch_metadata(kind, namespace, name, adopted())
        return len(left)

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
