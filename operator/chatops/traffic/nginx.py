"""NGINX Ingress: a generated canary Ingress per release, as the legacy runbook does.

ingress-nginx splits traffic between an Ingress and a "canary" Ingress with the same
hosts and paths, marked `nginx.ingress.kubernetes.io/canary: "true"` and weighted by
`canary-weight`. The user owns the stable Ingress (routing to the stable Services
`<release>-<component>`); chatops owns the canary one, `<ingress>-<release>-canary`,
rebuilds it from the stable one at every weight change (so an edit of the stable Ingress
reaches the canary), and deletes it when the release ends.

Each release has its own canary Ingress, controlled by its ChatRelease through an
ownerReference (as Argo Rollouts' NGINX router does): two releases behind one stable
Ingress never share one, and a deleted release's canary goes with it. An Ingress of that
name that the release does not control is never edited or deleted.

Only `nginx.ingress.kubernetes.io/*` annotations are copied: labels and annotations such
as Argo CD's tracking label would make a GitOps tool adopt, then prune, our object.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from chatops.adapters.watched import Seen
from chatops.errors import TrafficRoutingError
from chatops.ownership import LABEL_LIMIT, bounded, controlled_by, controller
from chatops.traffic.router import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    Split,
    Weights,
    WithoutHeaderRoutes,
    percent,
    stable_service_name,
)

NGINX = "nginx.ingress.kubernetes.io/"
CANARY = f"{NGINX}canary"
CANARY_WEIGHT = f"{NGINX}canary-weight"
CANARY_WEIGHT_TOTAL = f"{NGINX}canary-weight-total"
RELEASE_LABEL = "chatops.dev/release"
ATTEMPTS = 3
KIND = "Ingress"


def canary_name(ingress: str, release: str) -> str:
    """The canary Ingress of `release` behind the stable Ingress `ingress`."""
    return bounded(f"{ingress}-{release}-canary")


def describe(namespace: str, name: str) -> str:
    return f"Ingress {namespace}/{name}"


def _rewrite_backend(
    backend: Mapping[str, Any], rewrite: Mapping[str, str]
) -> dict[str, Any] | None:
    """The backend pointed at the canary color, or None when it is no component's."""
    service = backend.get("service") or {}
    if service.get("name") not in rewrite:
        return None
    out = copy.deepcopy(dict(backend))
    out["service"]["name"] = rewrite[service["name"]]
    return out


def canary_ingress(
    stable: Mapping[str, Any], release: str, splits: Sequence[Split], owner: Mapping[str, Any]
) -> dict[str, Any]:
    """The canary Ingress of `release` for `stable`: its hosts, TLS and class, only the
    paths that route a component, each sent to that component's canary color, weighted
    by the split, controlled by `owner` (the ownerReference to the ChatRelease). All
    splits must share one weight: NGINX weighs a canary Ingress as a whole."""
    meta = stable.get("metadata", {})
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    weights = {split.canary_weight for split in splits}
    if len(weights) != 1:
        given = ", ".join(f"{s.component}={s.canary_weight}" for s in splits) or "none"
        raise TrafficRoutingError(
            describe(namespace, name),
            f"an NGINX canary Ingress carries one weight for all components; got {given}",
        )
    (weight,) = weights
    rewrite = {stable_service_name(release, s.component): s.canary_service for s in splits}
    routed: set[str] = set()

    spec: dict[str, Any] = {
        key: copy.deepcopy(value)
        for key, value in stable.get("spec", {}).items()
        if key not in ("rules", "defaultBackend")
    }
    rules = []
    for rule in stable.get("spec", {}).get("rules") or []:
        paths = []
        for path in (rule.get("http") or {}).get("paths") or []:
            backend = _rewrite_backend(path.get("backend") or {}, rewrite)
            if backend is not None:
                routed.add(path["backend"]["service"]["name"])
                paths.append({**copy.deepcopy(path), "backend": backend})
        if paths:
            rules.append({**copy.deepcopy(rule), "http": {"paths": paths}})
    if rules:
        spec["rules"] = rules
    default = _rewrite_backend(stable.get("spec", {}).get("defaultBackend") or {}, rewrite)
    if default is not None:
        routed.add(stable["spec"]["defaultBackend"]["service"]["name"])
        spec["defaultBackend"] = default

    missing = [service for service in rewrite if service not in routed]
    if missing:
        raise TrafficRoutingError(
            describe(namespace, name),
            f"routes no path to {', '.join(missing)}; the stable Ingress must send each "
            f"component to its stable Service <release>-<component>",
        )

    annotations = {
        key: value
        for key, value in (meta.get("annotations") or {}).items()
        if key.startswith(NGINX) and not key.startswith(CANARY)
    }
    annotations.update({CANARY: "true", CANARY_WEIGHT: str(weight)})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": canary_name(name, release),
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, RELEASE_LABEL: bounded(release, LABEL_LIMIT)},
            "annotations": annotations,
            "ownerReferences": [dict(owner)],
        },
        "spec": spec,
    }


def is_ours(ingress: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether `ingress` is the release's to edit or delete: controlled by its
    ChatRelease (`owner`, the ownerReference to it). A label can be copied; a uid not."""
    return controlled_by(ingress.get("metadata", {}), owner["uid"])


def not_ours(ingress: Mapping[str, Any], release: str) -> TrafficRoutingError:
    """The refusal to touch an Ingress of the canary's name that is someone else's."""
    meta = ingress.get("metadata", {})
    return TrafficRoutingError(
        describe(meta.get("namespace", ""), meta.get("name", "")),
        f"exists but is not controlled by ChatRelease {release} (its controller: "
        f"{controller(meta)}); chatops never edits or deletes it: rename or delete it so "
        "chatops can generate the release's canary Ingress",
    )


def differs(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether `current` must be rewritten to become `desired` (fields we set only)."""
    now, want = current.get("metadata", {}), desired["metadata"]
    return (
        current.get("spec") != desired["spec"]
        or (now.get("annotations") or {}) != want["annotations"]
        or any((now.get("labels") or {}).get(k) != v for k, v in want["labels"].items())
        or now.get("ownerReferences") != want["ownerReferences"]
    )


def _backend_services(ingress: Mapping[str, Any]) -> set[str]:
    spec = ingress.get("spec", {})
    backends = [(spec.get("defaultBackend") or {})] + [
        path.get("backend") or {}
        for rule in spec.get("rules") or []
        for path in (rule.get("http") or {}).get("paths") or []
    ]
    return {b["service"]["name"] for b in backends if (b.get("service") or {}).get("name")}


def observed_weights(canary: Mapping[str, Any] | None, splits: Sequence[Split]) -> Weights:
    """Per component, the percent NGINX sends to each color: the canary Ingress's weight
    to the canary color when it routes there, the rest to the stable Service."""
    weight = 0
    services: set[str] = set()
    if canary is not None:
        annotations = canary.get("metadata", {}).get("annotations") or {}
        if annotations.get(CANARY) == "true":
            try:
                part = int(annotations.get(CANARY_WEIGHT, "0"))
                total = int(annotations.get(CANARY_WEIGHT_TOTAL, "100"))
            except ValueError:
                part, total = 0, 100  # NGINX ignores a weight it cannot parse
            weight = min(100, max(0, percent(part, total)))
            services = _backend_services(canary)
    observed: Weights = {}
    for split in splits:
        share = weight if split.canary_service in services else 0
        observed[split.component] = {split.stable_service: 100 - share, split.canary_service: share}
    return observed


class NginxRouter(WithoutHeaderRoutes):
    """Keeps the release's canary Ingress in step with the stable Ingress and the canary
    weight; `owner` is the ownerReference to the ChatRelease it belongs to."""

    router_kind = "NGINX"

    def __init__(
        self,
        api_client: client.ApiClient,
        ingress: str,
        owner: Mapping[str, Any],
        seen: Seen | None = None,
    ) -> None:
        self._client = api_client
        self._api = client.NetworkingV1Api(api_client)
        self.ingress = ingress
        self.owner = owner
        self._seen = seen or Seen()

    def set_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        name = canary_name(self.ingress, release)
        for attempt in range(1, ATTEMPTS + 1):
            stable = self._read(namespace, self.ingress, watched=attempt == 1)
            if stable is None:
                raise TrafficRoutingError(
                    describe(namespace, self.ingress),
                    "not found; spec.trafficRouting.nginx.ingress names the stable Ingress, "
                    "which must route each component to <release>-<component>",
                )
            desired = canary_ingress(stable, release, splits, self.owner)
            current = self._read(namespace, name, watched=attempt == 1)
            self._seen.forget(KIND, namespace, name)
            try:
                if current is None:
                    self._api.create_namespaced_ingress(namespace, desired)
                elif not is_ours(current, self.owner):
                    raise not_ours(current, release)
                elif differs(current, desired):
                    desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    self._api.replace_namespaced_ingress(name, namespace, desired)
                return
            except ApiException as err:
                # 409: created or changed by someone else since our read; read again.
                if err.status != 409 or attempt == ATTEMPTS:
                    raise

    def get_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> Weights:
        canary = self._read(namespace, canary_name(self.ingress, release))
        if canary is not None and not is_ours(canary, self.owner):
            raise not_ours(canary, release)
        return observed_weights(canary, splits)

    def finalize(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        """Delete the release's canary Ingress; refuse, naming it, when an Ingress of
        that name is not the release's."""
        name = canary_name(self.ingress, release)
        current = self._read(namespace, name)
        if current is None:
            return
        if not is_ours(current, self.owner):
            raise not_ours(current, release)
        self._seen.forget(KIND, namespace, name)
        uid = current["metadata"].get("uid")
        try:
            # Preconditioned on the uid read: never a same-named Ingress created meanwhile.
            self._api.delete_namespaced_ingress(
                name, namespace, body=client.V1DeleteOptions(preconditions={"uid": uid})
            )
        except ApiException as err:
            if err.status not in (404, 409):
                raise

    def _read(self, namespace: str, name: str, watched: bool = True) -> dict[str, Any] | None:
        """The Ingress, as watched unless `watched` is False (a write was refused on it);
        None when it does not exist."""
        seen = self._seen.get(KIND, namespace, name) if watched else None
        if seen is not None:
            return seen
        try:
            ingress = self._api.read_namespaced_ingress(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        found: dict[str, Any] = self._client.sanitize_for_serialization(ingress)
        return found
