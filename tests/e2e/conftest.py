"""The e2e tier's fixtures: the real local environment, started once per session (or
reused when `make env-up` already started it), the CRDs installed, and a namespace and
an operator process per test that needs them."""

from __future__ import annotations

import os
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "env"))

import localenv  # noqa: E402
from support import GROUP, kubectl, operator_process, wait_for  # noqa: E402


@pytest.fixture(scope="session")
def environment() -> Iterator[dict[str, str]]:
    """The env file's values, also exported to this process and its children."""
    started = not localenv.running()
    env = localenv.up()
    # The demo's operator acts on every namespace; the tests run their own.
    localenv.stop("operator")
    saved = dict(os.environ)
    os.environ.update(env)
    os.environ["PATH"] = f"{env['CHATOPS_TOOLS_PATH']}{os.pathsep}{os.environ['PATH']}"
    try:
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if started:
            localenv.down()


@pytest.fixture(scope="session")
def api(environment: dict[str, str]) -> client.ApiClient:
    return config.new_client_from_config(config_file=environment["KUBECONFIG"])


@pytest.fixture(scope="session")
def crds(environment: dict[str, str]) -> None:
    """The chatops CRDs, applied as a user would and established."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    localenv.wait_established(
        *(f"{name}.{GROUP}" for name in ("chatreleases", "chatbackups", "chatrecoveries"))
    )


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(lambda: _has_default_sa(core, name), timeout=30, what="default ServiceAccount")
    yield name
    core.delete_namespace(name, propagation_policy="Background")
    # The simulator forgets the namespace's traffic and versions (its pods go with it).
    for path in (f"/traffic/{name}", f"/versions?namespace={name}"):
        forget = urllib.request.Request(f"{os.environ['CHATAPP_URL']}{path}", method="DELETE")
        urllib.request.urlopen(forget, timeout=10).close()


def _has_default_sa(core: client.CoreV1Api, namespace: str) -> bool:
    return any(
        sa.metadata.name == "default"
        for sa in core.list_namespaced_service_account(namespace).items
    )


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def operator(crds: None, tmp_path: Path) -> Iterator[Path]:
    """`chatops run`, a real kopf process, logging to a file the test may read; its
    /metrics address is in `metrics.url` beside the log (see `support.metrics`)."""
    log = tmp_path / "operator.log"
    port = localenv.free_port()
    (tmp_path / "metrics.url").write_text(f"http://127.0.0.1:{port}/metrics")
    with operator_process(log, port):
        yield log


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def mongo_client(environment: dict[str, str]) -> Iterator[MongoClient[dict[str, Any]]]:
    with MongoClient(environment["MONGODB_URI"]) as c:
        yield c


@pytest.fixture
def database(mongo_client: MongoClient[dict[str, Any]]) -> Iterator[str]:
    """A fresh database name on the environment's MongoDB, dropped afterwards."""
    name = f"e2e_{uuid.uuid4().hex[:8]}"
    yield name
    mongo_client.drop_database(name)
