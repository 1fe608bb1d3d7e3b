"""chatops, Argo Rollouts and Flagger as the side-by-side benchmark runs them (out of
cluster, each watching only its namespace); see sidebyside_peers for what differs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import release_common as rc
import sidebyside_stats as st
from kubernetes import client
from sidebyside_argo import Argo
from sidebyside_peers import (
    PAUSE,
    STEPS,
    Objects,
    Peer,
    Process,
    _stable_back,
    bin_dir,
    container,
    free_port,
    image_of,
    versions,
    weights,
)


class Chatops(Peer):
    name = "chatops"
    streams = ("api-blue", "api-green")
    counted = False
    """Run under counted_operator.py (`--counted`), which counts its requests inside the
    process at a cost in CPU and memory of its own; plain by default, as the peers run."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(api, namespace)
        self.colors: dict[str, tuple[str, str]] = {}  # release → (stable, canary) Service

    def start(self) -> None:
        self.operator = rc.Operator(self.namespace, wrapper="counted" if self.counted else None)
        self.pid = self.operator.pid

    def stop(self) -> None:
        self.operator.stop()

    def alive(self) -> bool:
        return self.operator.alive()

    def log_tail(self) -> str:
        return self.operator.log_tail()

    def in_process_requests(self) -> int | None:
        if not self.counted:
            return None
        counts = self.operator.counts()["requests"]
        return sum(n for key, n in counts.items() if not key.startswith("prometheus "))

    def create(self, name: str, version: str) -> None:
        self.custom.create_namespaced_custom_object(
            *rc.GATEWAY[:2], self.namespace, rc.GATEWAY[2], rc.http_route(name, {"api": "/"})
        )
        steps: list[dict[str, Any]] = []
        for w in STEPS:
            steps += [{"setWeight": w}, {"pause": {"duration": PAUSE}}]
        steps.append({"setWeight": 100})
        selector_ = 'namespace="{{namespace}}",service="{{service}}",revision="{{revision}}"'
        metrics = [{"name": "error-rate", "query": st.error_rate(selector_), "max": st.THRESHOLD}]
        self.body = rc.release(name, version, ["api"], steps, "5s", replicas=1, metrics=metrics)
        # a run's objects go with it, as Argo's and Flagger's (owned by their Rollout/Canary)
        self.body["spec"]["deletionPolicy"] = "Delete"
        self.body["spec"]["analysis"]["prometheus"]["address"] = self.prometheus.url
        self.custom.create_namespaced_custom_object(
            rc.GROUP, rc.VERSION, self.namespace, rc.PLURAL, self.body
        )

    def _status(self, name: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(
            rc.GROUP, rc.VERSION, self.namespace, rc.PLURAL, name
        )
        return dict(found.get("status") or {})

    def ready(self, name: str) -> bool:
        return self._status(name).get("phase") == "Succeeded"

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            rc.GROUP, rc.VERSION, self.namespace, rc.PLURAL, name
        )
        self._delete_route(name)

    def prepare(self, name: str) -> None:
        live = weights(self.seen.objects, name)
        stable = next(s for s, w in live.items() if w == 100)
        self.colors[name] = (stable, next(s for s in live if s != stable))

    def canary_service(self, name: str) -> str:
        return self.colors[name][1]

    def change(self, name: str, version: str) -> None:
        components = self.body["spec"]["components"]
        components[0]["template"]["spec"]["containers"][0]["image"] = f"chat-api:{version}"
        self.custom.patch_namespaced_custom_object(
            rc.GROUP,
            rc.VERSION,
            self.namespace,
            rc.PLURAL,
            name,
            {"spec": {"components": components}},
        )

    def at_ten(self, name: str) -> Callable[[Objects], bool]:
        canary = self.canary_service(name)
        return lambda o: weights(o, name)[canary] == 10

    def full(self, name: str, version: str) -> Callable[[Objects], bool]:
        canary = self.canary_service(name)
        return lambda o: weights(o, name)[canary] == 100

    def back(self, name: str) -> Callable[[Objects], bool]:
        return _stable_back(name, *self.colors[name])

    def query(self, name: str) -> str:
        revision = self._status(name).get("canaryRevision") or ""
        canary = self.canary_service(name)
        sel = f'namespace="{self.namespace}",service="{canary}",revision="{revision}"'
        return st.error_rate(sel)


class Flagger(Peer):
    """Flagger v1.44 with its Gateway API v1 router; it makes `<name>-primary`, the
    Services and the HTTPRoute `<name>` itself."""

    name = "flagger"
    streams = ("primary", "canary")

    def start(self) -> None:
        v = versions()["FLAGGER_VERSION"]
        query = st.error_rate('namespace="{{ namespace }}",app="{{ target }}"')
        self.apply(
            {
                "apiVersion": "flagger.app/v1beta1",
                "kind": "MetricTemplate",
                "metadata": {"name": "error-rate"},
                "spec": {
                    "provider": {"type": "prometheus", "address": self.prometheus.url},
                    "query": query,
                },
            }
        )
        self.process = Process(
            [
                str(bin_dir("flagger", v) / "flagger"),
                "-kubeconfig",
                os.environ["KUBECONFIG"],
                "-mesh-provider",
                "gatewayapi:v1",
                "-metrics-server",
                self.prometheus.url,
                "-namespace",
                self.namespace,
                "-port",
                str(free_port()),
            ],
            self.workdir / "controller.log",
            dict(os.environ),
            str(self.workdir),
        )
        self.pid = self.process.pid

    stop = Argo.stop
    alive = Argo.alive
    log_tail = Argo.log_tail

    def create(self, name: str, version: str) -> None:
        apps = client.AppsV1Api(self.api)
        apps.create_namespaced_deployment(
            self.namespace,
            {
                "metadata": {"name": name, "labels": {"app": name}},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [container(version)]},
                    },
                },
            },
        )
        canary = {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "progressDeadlineSeconds": 300,
                "service": {
                    "port": 8080,
                    "targetPort": 8080,
                    "gatewayRefs": [{"name": "chat-gateway", "namespace": self.namespace}],
                },
                "analysis": {
                    "interval": PAUSE,
                    "threshold": 1,
                    "stepWeights": list(STEPS),
                    "metrics": [
                        {
                            "name": "error-rate",
                            "templateRef": {"name": "error-rate"},
                            "thresholdRange": {"max": st.THRESHOLD},
                        }
                    ],
                },
            },
        }
        self.custom.create_namespaced_custom_object(
            "flagger.app", "v1beta1", self.namespace, "canaries", canary
        )

    def _status(self, name: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(
            "flagger.app", "v1beta1", self.namespace, "canaries", name
        )
        return dict(found.get("status") or {})

    def ready(self, name: str) -> bool:
        return self._status(name).get("phase") in ("Initialized", "Succeeded") and (
            ("httproutes", name) in self.seen.objects
        )

    def delete(self, name: str) -> None:
        """The Canary owns what Flagger made (primary, Services, HTTPRoute)."""
        self.custom.delete_namespaced_custom_object(
            "flagger.app", "v1beta1", self.namespace, "canaries", name
        )
        client.AppsV1Api(self.api).delete_namespaced_deployment(name, self.namespace)

    def change(self, name: str, version: str) -> None:
        client.AppsV1Api(self.api).patch_namespaced_deployment(
            name,
            self.namespace,
            {"spec": {"template": {"spec": {"containers": [container(version)]}}}},
        )

    def at_ten(self, name: str) -> Callable[[Objects], bool]:
        return lambda o: weights(o, name)[f"{name}-canary"] == 10

    def full(self, name: str, version: str) -> Callable[[Objects], bool]:
        """The primary carries the new version (promoted) and 100 % of the weight."""

        def check(o: Objects) -> bool:
            primary = o[("deployments", f"{name}-primary")]["spec"]["template"]
            return (
                image_of(primary) == f"chat-api:{version}"
                and weights(o, name)[f"{name}-primary"] == 100
            )

        return check

    def back(self, name: str) -> Callable[[Objects], bool]:
        return _stable_back(name, f"{name}-primary", f"{name}-canary")

    def query(self, name: str) -> str:
        return st.error_rate(f'namespace="{self.namespace}",app="{name}"')


def install_crds() -> None:
    """The peers' CRDs (from their modules, env/build.sh)."""
    v = versions()
    for path in (
        bin_dir("argo-rollouts", v["ARGO_ROLLOUTS_VERSION"]) / "argo-rollouts-crds.yaml",
        bin_dir("flagger", v["FLAGGER_VERSION"]) / "flagger-crds.yaml",
    ):
        subprocess.run(
            ["kubectl", "apply", "--server-side", "-f", str(path)], check=True, capture_output=True
        )
    for crd in (
        "rollouts.argoproj.io",
        "analysistemplates.argoproj.io",
        "canaries.flagger.app",
        "metrictemplates.flagger.app",
    ):
        subprocess.run(
            ["kubectl", "wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s"],
            check=True,
            capture_output=True,
        )


PEERS: dict[str, type[Peer]] = {"chatops": Chatops, "argo": Argo, "flagger": Flagger}
