"""How kopf runs chatops: where it keeps its own bookkeeping, how it logs."""

from __future__ import annotations

from typing import Any

import kopf

from chatops.api.common import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Handler progress goes in annotations, not status: status is the API a user reads,
    # and its schema has no room for kopf's records.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = 20  # INFO and above become Kubernetes Events
    settings.watching.server_timeout = 60
