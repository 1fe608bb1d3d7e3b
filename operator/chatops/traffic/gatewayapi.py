"""Gateway API: the weights of an HTTPRoute's backendRefs.

The user owns the HTTPRoute (GitOps-friendly, like Argo Rollouts' Gateway API plugin):
its rules already name both color Services of each component, and chatops only writes
their `weight`s. It never adds, removes or reorders rules or backendRefs, so Argo CD sees
one field drift, not a rewritten object.

The changes are a JSON patch of `add .../weight` operations, each guarded by a `test` of
the backendRef's name: if someone reorders the rules between our read and our write,
the API server refuses the patch instead of moving the wrong backend's traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from chatops.errors import TrafficRoutingError
from chatops.traffic.router import Split, Weights, percent

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
DEFAULT_WEIGHT = 1
"""A backendRef without `weight` weighs 1 (Gateway API spec)."""
ATTEMPTS = 3

JsonPatch = list[dict[str, Any]]


def describe(route: Mapping[str, Any]) -> str:
    meta = route.get("metadata", {})
    return f"HTTPRoute {meta.get('namespace', '')}/{meta.get('name', '')}"


def _names_service(ref: Mapping[str, Any], service: str, namespace: str) -> bool:
    """A backendRef to the core Service `service` in the route's own namespace."""
    return (
        ref.get("name") == service
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") == ""
        and ref.get("namespace", namespace) == namespace
    )


def _rules(route: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(route.get("spec", {}).get("rules") or [])


def _refs(rule: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(rule.get("backendRefs") or [])


def rules_of(route: Mapping[str, Any], split: Split) -> list[int]:
    """Indexes of the rules that route `split`'s component; each names both colors, or
    the route cannot carry the split and a clear error says what to add."""
    namespace = route.get("metadata", {}).get("namespace", "")
    colors = (split.stable_service, split.canary_service)
    found = []
    for index, rule in enumerate(_rules(route)):
        named = [
            service
            for service in colors
            if any(_names_service(ref, service, namespace) for ref in _refs(rule))
        ]
        if not named:
            continue
        if len(named) == 1:
            missing = next(s for s in colors if s not in named)
            raise TrafficRoutingError(
                describe(route),
                f"rule {index} routes component {split.component} to {named[0]} but has no "
                f"backendRef to {missing}; every rule routing {split.component} needs "
                f"backendRefs to both {colors[0]} and {colors[1]} (chatops only sets weights)",
            )
        found.append(index)
    if not found:
        raise TrafficRoutingError(
            describe(route),
            f"no rule has backendRefs to {colors[0]} and {colors[1]}; add both to the rule "
            f"routing component {split.component} (chatops only sets their weights)",
        )
    return found


def weight_patch(route: Mapping[str, Any], splits: Sequence[Split]) -> JsonPatch:
    """The JSON patch giving every color backendRef its split's weight: stable gets
    100 - w, canary w. Empty when the route already says so, so a repeat is free."""
    namespace = route.get("metadata", {}).get("namespace", "")
    rules = _rules(route)
    patch: JsonPatch = []
    for split in splits:
        wanted = split.wanted()
        for index in rules_of(route, split):
            for position, ref in enumerate(_refs(rules[index])):
                for service, weight in wanted.items():
                    if not _names_service(ref, service, namespace):
                        continue
                    if ref.get("weight", DEFAULT_WEIGHT) == weight:
                        continue
                    at = f"/spec/rules/{index}/backendRefs/{position}"
                    patch.append({"op": "test", "path": f"{at}/name", "value": service})
                    patch.append({"op": "add", "path": f"{at}/weight", "value": weight})
    return patch


def observed_weights(route: Mapping[str, Any], splits: Sequence[Split]) -> Weights:
    """Percent of each rule's traffic going to each color, per component.

    When several rules route one component and disagree (someone edited one by hand),
    each Service gets the most any rule sends it: the answer to "may this color be scaled
    down?" must not hide a rule still sending it traffic."""
    namespace = route.get("metadata", {}).get("namespace", "")
    rules = _rules(route)
    observed: Weights = {}
    for split in splits:
        shares = {split.stable_service: 0, split.canary_service: 0}
        for index in rules_of(route, split):
            refs = _refs(rules[index])
            total = sum(ref.get("weight", DEFAULT_WEIGHT) for ref in refs)
            for service in shares:
                part = sum(
                    ref.get("weight", DEFAULT_WEIGHT)
                    for ref in refs
                    if _names_service(ref, service, namespace)
                )
                shares[service] = max(shares[service], percent(part, total))
        observed[split.component] = shares
    return observed


class GatewayAPIRouter:
    """Sets backendRef weights on the user's HTTPRoute `spec.trafficRouting.gatewayAPI`."""

    def __init__(self, api_client: client.ApiClient, http_route: str) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self.http_route = http_route

    def set_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            patch = weight_patch(self._read(namespace), splits)
            if not patch:
                return
            try:
                self._api.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    self.http_route,
                    patch,
                    _content_type="application/json-patch+json",
                )
                return
            except ApiException as err:
                # 422: a `test` failed, the route changed under us; read it again.
                if err.status not in (409, 422) or attempt == ATTEMPTS:
                    raise

    def get_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> Weights:
        return observed_weights(self._read(namespace), splits)

    def finalize(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        """Nothing to remove: the route is the user's, and its weights already send
        everything to the color that stayed."""

    def _read(self, namespace: str) -> dict[str, Any]:
        try:
            route: dict[str, Any] = self._api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, self.http_route
            )
        except ApiException as err:
            if err.status == 404:
                raise TrafficRoutingError(
                    f"HTTPRoute {namespace}/{self.http_route}",
                    "not found; spec.trafficRouting.gatewayAPI.httpRoute names it: create it "
                    "with backendRefs to both color Services of every component",
                ) from None
            raise
        return route
