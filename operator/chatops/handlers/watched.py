"""The watches a release's looks read instead of the API server (`adapters/watched.py`),
and the wake-ups they give: a Deployment of a release changing (becoming Available,
scaled), its Services, or the HTTPRoute or Ingress it routes through, looks at once
instead of at the next poll.

kopf fills every index from its watch's initial listing before it starts any daemon, so
a first look never sees an index that has not been filled. Deployments and Services are
watched with a server-side label selector (`configure`): only chatops' own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from chatops.adapters import watched
from chatops.api.common import GROUP, VERSION
from chatops.release.manifests import deployment_name
from chatops.traffic.nginx import canary_name
from chatops.traffic.router import (
    COLORS,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    stable_service_name,
)

OWNED: Mapping[str, Any] = {MANAGED_BY_LABEL: MANAGED_BY, INSTANCE_LABEL: kopf.PRESENT}
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY},{INSTANCE_LABEL}"
"""The server-side form of `OWNED`: the API server sends no one else's objects."""
ROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")
INGRESS = ("networking.k8s.io", "v1", "ingresses")


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo) -> None:
    """Watch only chatops' Deployments and Services; keep the wake-up alarms."""
    settings.watching.label_selectors["apps", "deployments"] = SELECTOR
    settings.watching.label_selectors["v1", "services"] = SELECTOR
    memo["alarms"] = {}


# -- indexes --------------------------------------------------------------------------------


@kopf.index("apps", "v1", "deployments", labels=OWNED)
def release_deployments(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(namespace, labels[INSTANCE_LABEL]): watched.deployment_essence(body)}


@kopf.index("v1", "services", labels=OWNED)
def watched_services(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[watched.Key, dict[str, Any]]:
    return {("Service", namespace or "", name): watched.service_essence(body)}


@kopf.index(*ROUTE)
def watched_routes(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[watched.Key, dict[str, Any]]:
    return {("HTTPRoute", namespace or "", name): dict(body)}


@kopf.index(*INGRESS)
def watched_ingresses(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[watched.Key, dict[str, Any]]:
    return {("Ingress", namespace or "", name): dict(body)}


@kopf.index(GROUP, VERSION, "chatreleases")
def routed_releases(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[watched.Key, str]:
    """Which releases route through which HTTPRoute or Ingress, to wake them."""
    return {key: name for key in _routing(namespace or "", name, spec)}


# -- wake-ups -------------------------------------------------------------------------------


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
def deployment_changed(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Wake the release when what its look reads of the Deployment changed (not for a
    change of managedFields or of an annotation it does not read)."""
    essence = watched.deployment_essence(body)
    if memo.get("essence") != essence:
        memo["essence"] = essence
        wake(memo, namespace or "", labels[INSTANCE_LABEL])


@kopf.on.event(*ROUTE)
def route_changed(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    _wake_routed(memo, kwargs["routed_releases"], ("HTTPRoute", namespace or "", name))


@kopf.on.event(*INGRESS)
def ingress_changed(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    _wake_routed(memo, kwargs["routed_releases"], ("Ingress", namespace or "", name))


def _wake_routed(memo: kopf.Memo, routed: kopf.Index[Any, str], key: watched.Key) -> None:
    """Wake every release routing through the object `key`."""
    for release in routed.get(key, ()):
        wake(memo, key[1], release)


def wake(memo: Mapping[str, Any], namespace: str, release: str) -> None:
    """Wake the daemon of ChatRelease `namespace/release`, if it runs here."""
    alarm = memo.get("alarms", {}).get((namespace, release))
    if isinstance(alarm, asyncio.Event):
        alarm.set()


def subscribe(memo: Mapping[str, Any], namespace: str, release: str, alarm: asyncio.Event) -> None:
    memo["alarms"][(namespace, release)] = alarm


def unsubscribe(memo: Mapping[str, Any], namespace: str, release: str) -> None:
    memo["alarms"].pop((namespace, release), None)


# -- a look's copy --------------------------------------------------------------------------


def seen(
    body: Mapping[str, Any],
    written: str | None,
    indexes: Mapping[str, kopf.Index[Any, Any]],
    wrote: Mapping[watched.Key, str] | None = None,
) -> watched.Seen:
    """What a look of the ChatRelease `body` reads, from the indexes (`indexes`: the
    daemon's kwargs); taken in the event loop. `written` is the resourceVersion the last
    look left the ChatRelease at, `wrote` those the looks left other objects at
    (`Seen.written`)."""
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace") or "", meta.get("name") or ""
    by_kind = {
        "Service": indexes["watched_services"],
        "HTTPRoute": indexes["watched_routes"],
        "Ingress": indexes["watched_ingresses"],
    }
    objects: dict[watched.Key, Mapping[str, Any]] = {}
    spec = body.get("spec") or {}
    for key in [*_services(namespace, name, spec), *_routing(namespace, name, spec)]:
        for found in by_kind[key[0]].get(key, ()):
            objects[key] = found
    return watched.snapshot(
        body if watched.current(body, written) else None,
        indexes["release_deployments"].get((namespace, name), ()),
        objects,
        wrote,
    )


def _services(namespace: str, release: str, spec: Mapping[str, Any]) -> list[watched.Key]:
    """A release's Services, from its spec as written (a spec that does not parse has no
    look to serve: nothing is wrong with an empty answer): each component's stable
    Service and its two color Services."""
    names = [str(c.get("name")) for c in spec.get("components") or [] if isinstance(c, Mapping)]
    return [
        ("Service", namespace, service)
        for component in names
        for service in (
            stable_service_name(release, component),
            *(deployment_name(release, component, color) for color in COLORS),
        )
    ]


def _routing(namespace: str, release: str, spec: Mapping[str, Any]) -> list[watched.Key]:
    """The routing objects a release's router reads, from its spec as written."""
    keys: list[watched.Key] = []
    routing = spec.get("trafficRouting") or {}
    if not isinstance(routing, Mapping):
        return keys
    route = (routing.get("gatewayAPI") or {}).get("httpRoute")
    if isinstance(route, str):
        keys.append(("HTTPRoute", namespace, route))
    ingress = (routing.get("nginx") or {}).get("ingress")
    if isinstance(ingress, str):
        keys += [("Ingress", namespace, ingress),
                 ("Ingress", namespace, canary_name(ingress, release))]
    return keys
