"""How kopf runs chatops: where it keeps its own bookkeeping, how it logs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any, cast

import kopf
from kubernetes import client, config

from chatops import telemetry
from chatops.adapters import malloc
from chatops.api.common import GROUP
from chatops.handlers import sweep, watched
from chatops.notify import dispatcher

LOOK_WORKERS = 16
"""Threads for the controllers' looks (blocking Kubernetes and Prometheus calls), shared
by all objects; asyncio's default of cpus + 4 queues looks behind one another."""
WATCH_SECONDS = 300
"""How long a watch stream lasts before it is opened again (client-go's minimum)."""


def api_client() -> client.ApiClient:
    """A Kubernetes client from the in-cluster account, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = LOOK_WORKERS
    return client.ApiClient(configuration)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    memo["api"] = api_client()
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(LOOK_WORKERS, thread_name_prefix="look")
    )
    memo["heartbeat"] = asyncio.create_task(_heartbeat())
    memo["trim"] = asyncio.create_task(_trim_memory())
    dispatcher.start(memo["api"])
    # Handler progress goes in annotations, not status: status is the API a user reads,
    # and its schema has no room for kopf's records.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Our controllers post the Events a user reads; kopf's own become Events only when
    # something went wrong.
    settings.posting.level = logging.WARNING
    # As client-go's reflectors: the API server ends each watch after 5 minutes, and the
    # client gives up on one that outlived that (a connection that died silently); each
    # end is one more WATCH request per kind, at any number of releases.
    settings.watching.server_timeout = WATCH_SECONDS
    settings.watching.client_timeout = WATCH_SECONDS + 30
    watched.configure(settings, memo)
    sweep.start(memo)
    logging.getLogger("kopf.objects").addFilter(_quiet_wakes)


@kopf.on.cleanup()
async def stop_heartbeat(memo: kopf.Memo, **_: Any) -> None:
    """End the heartbeat and the trims as the operator stops: kopf waits 5 s for any task
    still running before it cancels it, and a SIGTERMed operator would linger that long
    for nothing."""
    memo["heartbeat"].cancel()
    sweep.stop(memo)
    memo["trim"].cancel()
    await asyncio.to_thread(dispatcher.stop)


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled configuration, kept as a digest of the spec, labels and
    annotations instead of a copy of them.

    kopf stores it to tell a create from an update from nothing new; only change
    handlers read it, and chatops' (`on.delete`) read no diff. A copy of the spec sits
    in the annotations beside `kubectl apply`'s own copy, and all of an object's
    annotations share 256 KiB: with a spec over about 128 KiB (long queries, a large pod
    template) the API server refused kopf's patch storing it, and kopf retried it
    forever. A digest is 80 bytes whatever the spec. An `on.update` handler added later
    still fires on every change, but its `diff` names only `digest`: read the body, not
    the diff."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        encoded = json.dumps(essence, sort_keys=True, separators=(",", ":")).encode()
        return cast(kopf.BodyEssence, {"digest": hashlib.sha256(encoded).hexdigest()})


async def _heartbeat() -> None:
    """Tell `/healthz` the event loop is turning."""
    while True:
        telemetry.health.beat()
        await asyncio.sleep(5)


async def _trim_memory() -> None:
    """Give the memory freed since the last trim back to the OS (`adapters/malloc.py`)."""
    while True:
        await asyncio.sleep(malloc.TRIM_EVERY)
        malloc.trim()


def _quiet_wakes(record: logging.LogRecord) -> bool:
    """Drop kopf's lines for every successful wake-up handler and index update: one per
    change of a watched object, all alike, and they would drown what matters."""
    message = record.getMessage()
    return not (message.startswith(QUIET) and "fail" not in message)


QUIET = ("Handler 'wake", "Indexer '",
         *(f"Handler '{h}'" for h in ("deployment_changed", "route_changed", "ingress_changed")))
