"""How kopf runs chatops: where it keeps its own bookkeeping, how it logs."""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes import client, config

from chatops.api.common import GROUP


def api_client() -> client.ApiClient:
    """A Kubernetes client from the in-cluster account, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    memo["api"] = api_client()
    # Handler progress goes in annotations, not status: status is the API a user reads,
    # and its schema has no room for kopf's records.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = 20  # INFO and above become Kubernetes Events
    settings.watching.server_timeout = 60
