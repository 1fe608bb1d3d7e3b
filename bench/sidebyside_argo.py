"""Argo Rollouts as the side-by-side benchmark runs it (out of cluster, --namespaced)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import sidebyside_stats as st
from kubernetes import client
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
    plugin_dir,
    selector,
    versions,
    weights,
)

PLUGIN = "chatops/gatewayapi"


class Argo(Peer):
    """Argo Rollouts v1.10 with the benchmark's Gateway API plugin
    (bench/argo-gatewayapi-plugin), loaded as a `file://` plugin from the
    argo-rollouts-config ConfigMap, which it reads at start."""

    name = "argo"
    streams = ("stable", "canary")

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(api, namespace)
        self.old: dict[str, str | None] = {}  # release → its stable pods' hash before a change

    def start(self) -> None:
        v = versions()["ARGO_ROLLOUTS_VERSION"]
        plugins = f"- name: {PLUGIN}\n  location: file://{plugin_dir() / 'gatewayapi-plugin'}\n"
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "argo-rollouts-config"},
                "data": {"trafficRouterPlugins": plugins},
            }
        )
        query = st.error_rate(
            f'namespace="{self.namespace}",rollouts_pod_template_hash="{{{{args.hash}}}}"'
        )
        self.apply(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "AnalysisTemplate",
                "metadata": {"name": "error-rate"},
                "spec": {
                    "args": [{"name": "hash"}],
                    "metrics": [
                        {
                            "name": "error-rate",
                            "interval": "5s",
                            "failureLimit": 0,
                            # no result yet (the first scrape), or no requests yet (0/0 =
                            # NaN): pass; the others wait too (chatops: no data)
                            "successCondition": (
                                f"len(result) == 0 || isNaN(result[0]) "
                                f"|| result[0] < {st.THRESHOLD}"
                            ),
                            "provider": {
                                "prometheus": {
                                    "address": self.prometheus.url,
                                    "query": query,
                                }
                            },
                        }
                    ],
                },
            }
        )
        ports = [str(free_port()) for _ in range(2)]
        self.process = Process(
            [
                str(bin_dir("argo-rollouts", v) / "rollouts-controller"),
                "--kubeconfig",
                os.environ["KUBECONFIG"],
                "--namespaced",
                "--namespace",
                self.namespace,
                "--leader-elect=false",
                "--healthzPort",
                ports[0],
                "--metricsPort",
                ports[1],
            ],
            self.workdir / "controller.log",
            dict(os.environ, POD_NAMESPACE=self.namespace),
            str(self.workdir),
        )
        self.pid = self.process.pid

    def stop(self) -> None:
        self.process.stop()

    def alive(self) -> bool:
        return self.process.proc.poll() is None

    def log_tail(self) -> str:
        return "\n".join(self.process.log.read_text(errors="replace").splitlines()[-30:])

    def create(self, name: str, version: str) -> None:
        core = client.CoreV1Api(self.api)
        for suffix in self.streams:
            core.create_namespaced_service(
                self.namespace,
                {
                    "metadata": {"name": f"{name}-{suffix}"},
                    "spec": {
                        "selector": {"app": name},
                        "ports": [{"port": 8080, "targetPort": 8080}],
                    },
                },
            )
        self._route(name, f"{name}-stable", f"{name}-canary")
        steps: list[dict[str, Any]] = []
        for w in STEPS:
            steps += [{"setWeight": w}, {"pause": {"duration": PAUSE}}]
        rollout = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [container(version)]},
                },
                "strategy": {
                    "canary": {
                        "canaryService": f"{name}-canary",
                        "stableService": f"{name}-stable",
                        "scaleDownDelaySeconds": 5,
                        "abortScaleDownDelaySeconds": 5,
                        "trafficRouting": {"plugins": {PLUGIN: {"httpRoute": name}}},
                        "analysis": {
                            "templates": [{"templateName": "error-rate"}],
                            "args": [
                                {"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}}
                            ],
                        },
                        "steps": steps,
                    }
                },
            },
        }
        self.custom.create_namespaced_custom_object(
            "argoproj.io", "v1alpha1", self.namespace, "rollouts", rollout
        )

    def _status(self, name: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", self.namespace, "rollouts", name
        )
        return dict(found.get("status") or {})

    def ready(self, name: str) -> bool:
        return self._status(name).get("phase") == "Healthy"

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            "argoproj.io", "v1alpha1", self.namespace, "rollouts", name
        )
        for suffix in self.streams:
            client.CoreV1Api(self.api).delete_namespaced_service(f"{name}-{suffix}", self.namespace)
        self._delete_route(name)

    def prepare(self, name: str) -> None:
        stable = selector(self.seen.objects, f"{name}-stable")
        self.old[name] = stable.get("rollouts-pod-template-hash")

    def change(self, name: str, version: str) -> None:
        self.custom.patch_namespaced_custom_object(
            "argoproj.io",
            "v1alpha1",
            self.namespace,
            "rollouts",
            name,
            {"spec": {"template": {"spec": {"containers": [container(version)]}}}},
        )

    def at_ten(self, name: str) -> Callable[[Objects], bool]:
        return lambda o: weights(o, name)[f"{name}-canary"] == 10

    def full(self, name: str, version: str) -> Callable[[Objects], bool]:
        """All the weight on pods of the new version: the canary Service at 100 %, or the
        stable one once Argo has moved its selector to the new pods' hash."""

        old = self.old[name]

        def check(o: Objects) -> bool:
            w = weights(o, name)
            key = "rollouts-pod-template-hash"
            new = selector(o, f"{name}-canary").get(key)
            return (
                bool(new)
                and new != old
                and (
                    w[f"{name}-canary"] == 100
                    or (
                        w[f"{name}-stable"] == 100 and selector(o, f"{name}-stable").get(key) == new
                    )
                )
            )

        return check

    def back(self, name: str) -> Callable[[Objects], bool]:
        return _stable_back(name, f"{name}-stable", f"{name}-canary")

    def query(self, name: str) -> str:
        pods = self._status(name).get("currentPodHash", "")
        return st.error_rate(f'namespace="{self.namespace}",rollouts_pod_template_hash="{pods}"')
