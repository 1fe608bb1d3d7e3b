"""How a command reaches the cluster: the kube context (KUBECONFIG, else in-cluster),
and the namespace a human means when they give none, as kubectl picks it."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from chatops.commands import CommandError

_IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def connect(namespace: str | None) -> tuple[client.ApiClient, str]:
    """An API client of the current kube context, and `namespace` or else the context's
    namespace (`default` when the context names none)."""
    try:
        api = config.new_client_from_config()
        if namespace:
            return api, namespace
        _, active = config.list_kube_config_contexts()
        return api, str(active.get("context", {}).get("namespace") or "default")
    except (ConfigException, OSError) as kubeconfig_error:
        if "KUBERNETES_SERVICE_HOST" not in os.environ:
            where = os.environ.get("KUBECONFIG", "~/.kube/config")
            raise CommandError(
                f"no usable kube context in {where}: {kubeconfig_error}; "
                "set KUBECONFIG to a kubeconfig file"
            ) from kubeconfig_error
    cluster = client.Configuration()
    config.load_incluster_config(client_configuration=cluster)
    default = _IN_CLUSTER_NAMESPACE.read_text().strip() if _IN_CLUSTER_NAMESPACE.exists() else ""
    return client.ApiClient(cluster), namespace or default or "default"
