"""Blue-green without a mesh or an ingress: the stable Service's selector picks a color.

`<release>-<component>` selects the pods of the active color; switching traffic is
changing one label value in its selector. There is no in-between: a weight of 100 means
"the canary color serves", 0 means "the stable color serves". New connections follow
the selector at once; open WebSockets stay on the pods they reached until the old color
is scaled down after `scaleDownDelaySeconds`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from chatops.adapters.watched import Seen
from chatops.errors import TrafficRoutingError
from chatops.traffic.router import (
    COLOR_LABEL,
    Split,
    Weights,
    WithoutHeaderRoutes,
    color_of,
    stable_service_name,
)


def selected_color(release: str, split: Split) -> str:
    """The color the stable Service must select for `split`: all or nothing."""
    if split.canary_weight not in (0, 100):
        raise TrafficRoutingError(
            f"Service {stable_service_name(release, split.component)}",
            f"a Service selector sends all traffic to one color: weight must be 0 or 100, "
            f"not {split.canary_weight} (use trafficRouting.gatewayAPI or nginx for a canary)",
        )
    return color_of(split.canary_service if split.canary_weight == 100 else split.stable_service)


def selector_patch(
    selector: Mapping[str, str] | None, release: str, split: Split
) -> dict[str, Any] | None:
    """The merge patch pointing `<release>-<component>` at the split's color, or None
    when it already does. Only the color label changes; other selector keys stay."""
    color = selected_color(release, split)
    if (selector or {}).get(COLOR_LABEL) == color:
        return None
    return {"spec": {"selector": {COLOR_LABEL: color}}}


def observed_weights(
    selectors: Mapping[str, Mapping[str, str] | None], splits: Sequence[Split]
) -> Weights:
    """Per component, 100 for the color its stable Service selects and 0 for the other.
    A selector naming no color (it would pick both colors' pods) reports nothing for that
    component, so the caller sees it is not where any split put it."""
    observed: Weights = {}
    for split in splits:
        color = (selectors.get(split.component) or {}).get(COLOR_LABEL)
        services = (split.stable_service, split.canary_service)
        if color not in {color_of(service) for service in services}:
            observed[split.component] = {}
            continue
        observed[split.component] = {
            service: 100 if color_of(service) == color else 0 for service in services
        }
    return observed


class ServiceRouter(WithoutHeaderRoutes):
    """Switches the selector of each component's stable Service `<release>-<component>`."""

    router_kind = "Service"

    def __init__(self, api_client: client.ApiClient, seen: Seen | None = None) -> None:
        self._api = client.CoreV1Api(api_client)
        self._seen = seen or Seen()

    def set_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        for split in splits:
            selected_color(release, split)  # refuse a partial weight before touching anything
        for split in splits:
            name = stable_service_name(release, split.component)
            patch = selector_patch(self._selector(namespace, name), release, split)
            if patch is not None:
                self._seen.forget("Service", namespace, name)
                written = self._api.patch_namespaced_service(name, namespace, patch)
                self._seen.forget("Service", namespace, name, written.metadata.resource_version)

    def get_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> Weights:
        selectors = {
            split.component: self._selector(
                namespace, stable_service_name(release, split.component)
            )
            for split in splits
        }
        return observed_weights(selectors, splits)

    def finalize(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        """Nothing generated: the stable Service stays, selecting the color that won."""

    def _selector(self, namespace: str, name: str) -> dict[str, str] | None:
        seen = self._seen.get("Service", namespace, name)
        if seen is not None:
            watched: dict[str, str] | None = (seen.get("spec") or {}).get("selector")
            return watched
        try:
            service = self._api.read_namespaced_service(name, namespace)
        except ApiException as err:
            if err.status == 404:
                raise TrafficRoutingError(
                    f"Service {namespace}/{name}",
                    "not found; the stable Service of the component must exist before "
                    "traffic can be switched",
                ) from None
            raise
        self._seen.written[("Service", namespace, name)] = service.metadata.resource_version
        selector: dict[str, str] | None = service.spec.selector
        return selector
