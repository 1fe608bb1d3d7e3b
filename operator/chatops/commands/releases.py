"""ChatReleases through the Kubernetes API, for the CLI: a human gets
`chatreleases.chatops.dev "x" not found in namespace y`, not a traceback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from chatops.api.common import GROUP, VERSION
from chatops.commands import CommandError, kube
from chatops.release.manifests import owned_selector

PLURAL = "chatreleases"
RESOURCE = f"{PLURAL}.{GROUP}"

_PENDING_POLL = 0.2
"""Seconds between reads while an earlier request is pending."""
_WATCH_SECONDS = 60
"""How long one watch request runs before it is renewed (the API server ends them)."""


class Releases:
    """The ChatReleases of one namespace. Every failure is a CommandError whose message
    names the object and what to do."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    def connect(cls, namespace: str | None) -> Releases:
        """The releases of `namespace`, or of the kube context's namespace."""
        return cls(*kube.connect(namespace))

    def __enter__(self) -> Releases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.close()

    @staticmethod
    def resource(name: str) -> str:
        """How kubectl names the object: `chatreleases.chatops.dev "x"`."""
        return f'{RESOURCE} "{name}"'

    def get(self, name: str) -> dict[str, Any]:
        return self._call(
            name,
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            ),
        )

    def request(self, name: str, key: str, value: str, wait: float) -> dict[str, Any]:
        """Set the request annotation `key` to `value` once no earlier request is pending
        there (one annotation holds one request: writing over a pending one would merge
        two requests into one), waiting up to `wait` seconds for the operator to take it.
        The write is conditional on the resourceVersion read, so a request written by
        someone else meanwhile is never overwritten. Returns the object as stored."""
        deadline = time.monotonic() + wait
        while True:
            body = self.get(name)
            meta = body["metadata"]
            pending = (meta.get("annotations") or {}).get(key)
            if pending is None:
                patch = {
                    "metadata": {
                        "resourceVersion": meta["resourceVersion"],
                        "annotations": {key: value},
                    }
                }
                try:
                    stored: dict[str, Any] = self.custom.patch_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL, name, patch
                    )
                    return stored
                except ApiException as err:
                    if err.status != 409:  # 409: it changed since the read; read again
                        raise CommandError(self._message(err, name)) from err
                except HTTPError as err:
                    raise CommandError(self._unreachable(err)) from err
                continue
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"{self.resource(name)} in namespace {self.namespace}: an earlier request "
                    f"{key}={pending} is still pending; the operator has not taken it in "
                    f"{wait:.0f} s (is it running?). Remove it with: kubectl annotate crel "
                    f"{name} -n {self.namespace} {key}-"
                )
            time.sleep(_PENDING_POLL)

    def changes(self, name: str) -> Iterator[dict[str, Any]]:
        """The object now, then every change of it, through the watch API; a watch that
        ends or expires is renewed from a fresh read, so nothing is missed for long.
        Ends when the object is deleted."""
        while True:
            body = self.get(name)
            yield body
            stream = watch.Watch().stream(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=body["metadata"]["resourceVersion"],
                timeout_seconds=_WATCH_SECONDS,
            )
            for event in self._guarded(name, stream):
                if event["type"] == "DELETED":
                    return
                if event["type"] == "ERROR":  # e.g. 410 Gone: read again
                    break
                yield event["object"]

    def deployments(self, name: str) -> list[dict[str, Any]]:
        """The Deployments chatops made for release `name` (both colors of every
        component), as the API server returns them."""
        return list(self._deployments(name)[0].values())

    def deployment_changes(self, name: str) -> Iterator[list[dict[str, Any]]]:
        """The release's Deployments now, then again after every change of one of them,
        through the watch API (renewed from a fresh list when a watch ends)."""
        apps = client.AppsV1Api(self.api)
        while True:
            current, version = self._deployments(name)
            yield list(current.values())
            stream = watch.Watch().stream(
                apps.list_namespaced_deployment,
                self.namespace,
                label_selector=owned_selector(name),
                resource_version=version,
                timeout_seconds=_WATCH_SECONDS,
            )
            for event in self._guarded(name, stream):
                if event["type"] == "ERROR":
                    break
                body = self.api.sanitize_for_serialization(event["object"])
                if event["type"] == "DELETED":
                    current.pop(body["metadata"]["name"], None)
                else:
                    current[body["metadata"]["name"]] = body
                yield list(current.values())

    def _deployments(self, name: str) -> tuple[dict[str, dict[str, Any]], str]:
        """name → Deployment of the release, and the list's resourceVersion."""
        apps = client.AppsV1Api(self.api)
        try:
            listed = apps.list_namespaced_deployment(
                self.namespace, label_selector=owned_selector(name)
            )
        except ApiException as err:
            reason = _status_body(err).get("message") or err.reason
            raise CommandError(
                f"the Deployments of {self.resource(name)} in namespace {self.namespace}: "
                f"{reason}"
            ) from err
        except HTTPError as err:
            raise CommandError(self._unreachable(err)) from err
        found = {d.metadata.name: self.api.sanitize_for_serialization(d) for d in listed.items}
        return found, str(listed.metadata.resource_version)

    def _guarded(self, name: str, events: Iterator[Any]) -> Iterator[dict[str, Any]]:
        """The watch's events; an expired resourceVersion (410) just ends them."""
        try:
            yield from events
        except ApiException as err:
            if err.status != 410:
                raise CommandError(self._message(err, name)) from err
        except HTTPError as err:
            raise CommandError(self._unreachable(err)) from err

    def _call(self, name: str, request: Callable[[], Any]) -> dict[str, Any]:
        try:
            body: dict[str, Any] = request()
        except ApiException as err:
            raise CommandError(self._message(err, name)) from err
        except HTTPError as err:
            raise CommandError(self._unreachable(err)) from err
        return body

    def _unreachable(self, err: HTTPError) -> str:
        return f"cannot reach the Kubernetes API at {self.api.configuration.host}: {err}"

    def _message(self, err: ApiException, name: str) -> str:
        where = f"in namespace {self.namespace}"
        status = _status_body(err)
        if err.status == 404:
            if status.get("details", {}).get("name") == name:
                return f"{self.resource(name)} not found {where}"
            return f"the API server does not serve {RESOURCE}: install the chatops CRDs (crds/)"
        reason = status.get("message") or err.reason
        return f"{self.resource(name)} {where}: {reason}"


def _status_body(err: ApiException) -> dict[str, Any]:
    """The Status object the API server sent with an error, or {} if it sent none."""
    try:
        body = json.loads(err.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}
