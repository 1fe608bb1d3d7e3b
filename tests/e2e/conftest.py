"""The e2e tier's fixtures: the real local environment, started once per session (or
reused when `make env-up` already started it), the CRDs installed, and a namespace and
an operator process per test that needs them.

Tests run side by side (`make test`: pytest-xdist workers, then a serial phase), so a
test shares the cluster, FerretDB, S3 and Prometheus with the tests running beside it.
The rules that keep them apart:

- Everything a test makes lives in its own namespace (`namespace`), database
  (`database`) and bucket (`backups.new_bucket`). Cluster-scoped objects get unique names.
- The `operator` fixture watches only the test's namespaces, and its Leases (leader,
  database) live in the first of them. Operators a test starts itself take the same
  scope: `support.start_operator(log, port, [namespace, ...])` or `operator_process`.
- Several namespaces: `@pytest.mark.namespaces(2)`; the `namespaces` fixture is their
  list (`namespace` is its first), and the `operator` fixture watches them all.
- MongoDB's oplog is one capped timeline per server: a test that seeds thousands of
  documents would roll it past a consistent backup running beside it. So each worker
  runs a FerretDB of its own (`environment["MONGODB_URI"]` is the worker's), and its
  tests run one at a time. With a MONGODB_URI given there is one server: the tests that
  write it (`@pytest.mark.mongodb`, or the `database`/`mongo_client` fixtures) run on
  one worker (xdist group `mongodb`).
- A test that disrupts what others share (stops Prometheus or another shared server,
  changes the CRDs or anything cluster-scoped another test would notice) is marked
  `@pytest.mark.serial`: it runs after the parallel phase, alone. A cluster-wide
  operator (`@pytest.mark.clusterwide` for the `operator` fixture, or an empty namespace
  list) acts on every test's objects, so `clusterwide` implies `serial`.
- Waits wait on conditions (`support.wait_for`), never on fixed sleeps: a busy machine
  stretches every step.
"""

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
    """The env file's values, also exported to this process and its children. On a
    pytest-xdist worker the controller started the environment (tests/conftest.py): a
    worker only reads it, and never starts, restarts or stops what the others use."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    private = None
    if worker:
        started, env = False, localenv.read_env_file()
        if not env:
            pytest.fail(f"no environment at {localenv.ENV_FILE}: the controller starts it")
        if _own_ferretdb():
            private = f"ferretdb-{worker}"
            env = {**env, "MONGODB_URI": localenv.start_ferretdb(private)}
    else:
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
        if private:
            localenv.stop(private)
        if started:
            localenv.down()


def _own_ferretdb() -> bool:
    """Whether the MongoDB is the environment's own FerretDB (no MONGODB_URI was given):
    then each xdist worker runs a FerretDB of its own, with its own oplog, and the tests
    that write MongoDB spread over the workers. A given MongoDB is one server and one
    oplog for all: its tests run on one worker (the `mongodb` group)."""
    return "MONGODB_URI" not in os.environ


@pytest.fixture(scope="session")
def api(environment: dict[str, str]) -> client.ApiClient:
    return config.new_client_from_config(config_file=environment["KUBECONFIG"])


@pytest.fixture(scope="session")
def crds(environment: dict[str, str]) -> None:
    """The chatops CRDs, applied as a user would and established. Workers apply them at
    once on a fresh cluster, and the server-side applies that race to create a CRD lose
    with AlreadyExists: an apply is retried until it holds (it is idempotent)."""
    wait_for(
        lambda: kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"), check=False
        ).returncode == 0,
        timeout=60, interval=1, what="the CRDs applied",
    )
    localenv.wait_established(
        *(f"{name}.{GROUP}" for name in ("chatreleases", "chatbackups", "chatrecoveries"))
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("clusterwide"):
            item.add_marker(pytest.mark.serial)
        if not _own_ferretdb() and (
            item.get_closest_marker("mongodb")
            or {"database", "mongo_client"} & set(getattr(item, "fixturenames", ()))
        ):
            item.add_marker(pytest.mark.xdist_group("mongodb"))


@pytest.fixture(autouse=True)
def _phase(request: pytest.FixtureRequest) -> None:
    """A serial test refuses to run beside others (under xdist's workers)."""
    if request.node.get_closest_marker("serial") and os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail(
            "a serial test disrupts what the tests beside it share: run it in the serial "
            "phase (`make test` does; or `pytest -m serial` without -n)",
            pytrace=False,
        )


@pytest.fixture
def namespaces(request: pytest.FixtureRequest, api: client.ApiClient) -> Iterator[list[str]]:
    """The test's own namespaces: one, or n with `@pytest.mark.namespaces(n)`."""
    marker = request.node.get_closest_marker("namespaces")
    count = int(marker.args[0]) if marker else 1
    core = client.CoreV1Api(api)
    names: list[str] = []
    try:
        for _ in range(count):
            name = f"e2e-{uuid.uuid4().hex[:8]}"
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
            names.append(name)
        for name in names:
            wait_for(lambda n=name: _has_default_sa(core, n), timeout=30,
                     what=f"default ServiceAccount of {name}")
        yield names
    finally:
        for name in names:
            core.delete_namespace(name, propagation_policy="Background")
            # The simulator forgets the namespace's traffic and versions (its pods go too).
            for path in (f"/traffic/{name}", f"/versions?namespace={name}"):
                forget = urllib.request.Request(
                    f"{os.environ['CHATAPP_URL']}{path}", method="DELETE"
                )
                urllib.request.urlopen(forget, timeout=10).close()


@pytest.fixture
def namespace(namespaces: list[str]) -> str:
    """The test's namespace (the first of `namespaces`)."""
    return namespaces[0]


def _has_default_sa(core: client.CoreV1Api, namespace: str) -> bool:
    return any(
        sa.metadata.name == "default"
        for sa in core.list_namespaced_service_account(namespace).items
    )


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def operator(
    crds: None, namespaces: list[str], request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Path]:
    """`chatops run`, a real kopf process watching the test's namespaces (every namespace
    with `@pytest.mark.clusterwide`), logging to a file the test may read; its /metrics
    address is in `metrics.url` beside the log (see `support.metrics`)."""
    log = tmp_path / "operator.log"
    port = localenv.free_port()
    (tmp_path / "metrics.url").write_text(f"http://127.0.0.1:{port}/metrics")
    watched = [] if request.node.get_closest_marker("clusterwide") else namespaces
    with operator_process(log, port, watched):
        yield log
        if getattr(request.node, "failed_call", False):  # said in the failure's report
            _tell(log, namespaces)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.failed_call = True  # type: ignore[attr-defined]
    return report


def _tell(log: Path, namespaces: list[str]) -> None:
    """What the operator said and the Events of the test's namespaces, when a test failed:
    the log's last 60 lines above kopf's DEBUG ones."""
    said = [line for line in log.read_text(errors="replace").splitlines()
            if "] kopf." not in line or "[DEBUG" not in line]
    print("--- the operator's log, DEBUG left out:", *said[-60:], sep="\n")
    for namespace in namespaces:
        events = kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp",
                         check=False)
        print(f"--- Events in {namespace}:", events.stdout[-6000:], events.stderr, sep="\n")


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

