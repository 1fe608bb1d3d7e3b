"""Gateway API: the weights of an HTTPRoute's backendRefs, and header routes.

The user owns the HTTPRoute (GitOps-friendly, like Argo Rollouts' Gateway API plugin):
its rules already name both color Services of each component, and chatops only writes
their `weight`s. It never adds, removes or reorders the user's rules or backendRefs, so
Argo CD sees one field drift, not a rewritten object.

A header route (a canary step's `headerRoute`) is the one exception, and the rules it
adds are chatops' own: named `chatops-header.<release>.<component>.<n>` (Gateway API rule
names, so they are told apart from the user's without any other record), one per user
rule routing the component, with that rule's matches plus the headers and the canary
Service as the only backend. They are appended, and removed when the release ends.

The changes are a JSON patch of `add .../weight` operations, each guarded by a `test` of
the backendRef's name: if someone reorders the rules between our read and our write,
the API server refuses the patch instead of moving the wrong backend's traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from chatops.adapters.watched import Seen
from chatops.errors import TrafficRoutingError
from chatops.traffic.router import HeaderMatch, HeaderRoutes, Split, Weights, percent

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
KIND = "HTTPRoute"
DEFAULT_WEIGHT = 1
"""A backendRef without `weight` weighs 1 (Gateway API spec)."""
ATTEMPTS = 3

JsonPatch = list[dict[str, Any]]
HEADER_RULE = "chatops-header."
"""The prefix of the names of the rules chatops adds for header routes."""
ALL_PATHS = {"path": {"type": "PathPrefix", "value": "/"}}
"""What a rule without matches matches (Gateway API's default)."""


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


def is_header_rule(rule: Mapping[str, Any]) -> bool:
    """Whether chatops added `rule` for a header route (of whichever release)."""
    return str(rule.get("name") or "").startswith(HEADER_RULE)


def rules_of(route: Mapping[str, Any], split: Split) -> list[int]:
    """Indexes of the rules that route `split`'s component; each names both colors, or
    the route cannot carry the split and a clear error says what to add."""
    namespace = route.get("metadata", {}).get("namespace", "")
    colors = (split.stable_service, split.canary_service)
    found = []
    for index, rule in enumerate(_rules(route)):
        if is_header_rule(rule):
            continue
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


# -- header routes ------------------------------------------------------------------------


def header_rule_name(release: str, component: str, n: int) -> str:
    """Names are DNS labels, so the dots keep every release's and component's apart."""
    return f"{HEADER_RULE}{release}.{component}.{n}"


def _wire(match: HeaderMatch) -> dict[str, str]:
    return {"type": match.type, "name": match.name, "value": match.value}


def header_rules(
    route: Mapping[str, Any], release: str, splits: Sequence[Split], matches: Sequence[HeaderMatch]
) -> list[dict[str, Any]]:
    """The rules a header route adds: for each user rule routing a component, the same
    rule (its filters, timeouts) whose every match also needs `matches`, sending to the
    canary Service alone. More header matches on the same path outrank the weighted
    rule (Gateway API's precedence), whatever its weights."""
    if not matches:
        return []
    namespace = route.get("metadata", {}).get("namespace", "")
    rules = _rules(route)
    headers = [_wire(m) for m in matches]
    added = []
    for split in splits:
        for n, index in enumerate(rules_of(route, split)):
            source = rules[index]
            rule = {k: v for k, v in source.items() if k not in ("name", "matches", "backendRefs")}
            rule["name"] = header_rule_name(release, split.component, n)
            rule["matches"] = [
                {**m, "headers": [*(m.get("headers") or []), *headers]}
                for m in source.get("matches") or [ALL_PATHS]
            ]
            rule["backendRefs"] = [
                {**ref, "weight": 1}
                for ref in _refs(source)
                if _names_service(ref, split.canary_service, namespace)
            ]
            added.append(rule)
    return added


def header_patch(
    route: Mapping[str, Any], release: str, splits: Sequence[Split], matches: Sequence[HeaderMatch]
) -> JsonPatch:
    """The JSON patch that leaves exactly the release's wanted header rules on the route:
    its old ones removed (each guarded by a `test` of its name, last first), the new
    ones appended. Empty when the route already holds them, so a repeat is free; the
    user's rules and other releases' are never touched."""
    wanted = header_rules(route, release, splits, matches)
    ours = [
        (index, rule)
        for index, rule in enumerate(_rules(route))
        if str(rule.get("name") or "").startswith(f"{HEADER_RULE}{release}.")
    ]
    if [rule for _, rule in ours] == wanted:
        return []
    patch: JsonPatch = []
    for index, rule in reversed(ours):
        patch.append({"op": "test", "path": f"/spec/rules/{index}/name", "value": rule["name"]})
        patch.append({"op": "remove", "path": f"/spec/rules/{index}"})
    patch += [{"op": "add", "path": "/spec/rules/-", "value": rule} for rule in wanted]
    return patch


def _added_headers(rule: Mapping[str, Any], source: Mapping[str, Any] | None) -> tuple[
    HeaderMatch, ...
]:
    """The headers a header rule adds to its user rule's first match (all of them when
    that rule is gone, so the route reads as not what any step asked)."""
    first = (rule.get("matches") or [{}])[0].get("headers") or []
    kept = ((source.get("matches") or [{}])[0].get("headers") or []) if source else []
    return tuple(
        HeaderMatch(
            h.get("name", ""),
            h.get("value", ""),
            "RegularExpression" if h.get("type") == "RegularExpression" else "Exact",
        )
        for h in first[len(kept):]
    )


def observed_header_routes(
    route: Mapping[str, Any], release: str, splits: Sequence[Split]
) -> HeaderRoutes:
    """Per component, the (Service, headers) pairs of the release's header rules."""
    rules = _rules(route)
    observed: HeaderRoutes = {}
    for split in splits:
        prefix = f"{HEADER_RULE}{release}.{split.component}."
        user = rules_of(route, split)
        seen: set[tuple[str, tuple[HeaderMatch, ...]]] = set()
        for rule in rules:
            name = str(rule.get("name") or "")
            if not name.startswith(prefix):
                continue
            n = name[len(prefix):]
            source = rules[user[int(n)]] if n.isdigit() and int(n) < len(user) else None
            shown = _added_headers(rule, source)
            seen |= {(str(ref.get("name", "")), shown) for ref in _refs(rule)}
        observed[split.component] = frozenset(seen)
    return observed


class GatewayAPIRouter:
    """Sets backendRef weights on the user's HTTPRoute `spec.trafficRouting.gatewayAPI`."""

    def __init__(
        self, api_client: client.ApiClient, http_route: str, seen: Seen | None = None
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self.http_route = http_route
        self._seen = seen or Seen()

    def set_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        self._patch(namespace, lambda route: weight_patch(route, splits))

    def get_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> Weights:
        return observed_weights(self._read(namespace), splits)

    def set_header_route(
        self,
        namespace: str,
        release: str,
        splits: Sequence[Split],
        matches: Sequence[HeaderMatch],
    ) -> None:
        self._patch(namespace, lambda route: header_patch(route, release, splits, matches))

    def get_header_routes(
        self, namespace: str, release: str, splits: Sequence[Split]
    ) -> HeaderRoutes:
        return observed_header_routes(self._read(namespace), release, splits)

    def finalize(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        """The release's header rules go; the rest of the route is the user's, and its
        weights already send everything to the color that stayed."""
        try:
            self.set_header_route(namespace, release, splits, ())
        except TrafficRoutingError:  # the route is gone: nothing of ours is left on it
            return

    def _patch(self, namespace: str, patch_of: Callable[[dict[str, Any]], JsonPatch]) -> None:
        """Apply the patch computed from the route as read; read again and recompute
        when a `test` fails (the route changed between our read and our write)."""
        for attempt in range(1, ATTEMPTS + 1):
            patch = patch_of(self._read(namespace, watched=attempt == 1))
            if not patch:
                return
            self._seen.forget(KIND, namespace, self.http_route)
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

    def _read(self, namespace: str, watched: bool = True) -> dict[str, Any]:
        """The route, as watched unless `watched` is False (a `test` failed on it)."""
        seen = self._seen.get(KIND, namespace, self.http_route) if watched else None
        if seen is not None:
            return seen
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
