"""The image `make image` builds, run as the chart's Deployment runs it (tests/e2e/
container.py: runc, the rendered Deployment's user, read-only root, emptyDir /tmp, env,
args, probes and memory limit, the chart's ServiceAccount token): it runs as uid 10001
and can write only /tmp, reports the package's version, answers the chart's probes,
drives a canary and a backup against the local cluster under the chart's RBAC, logs one
JSON object per line, stops on SIGTERM — and is not alive while the API server refuses
its credentials (a bad token; its ServiceAccount deleted while it runs).

The chart's rendered Deployment is the only source of how the container runs, so a
chart and an image that drift apart (a port, a path, a volume, a user) fail here. The
first run on a machine builds the image (`env/image.sh`: 45 s quiet, 4 minutes under
load, after the Python base of `env/build.sh pythonbase`); later runs reuse it until the Dockerfile,
pyproject.toml or operator/ change."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from pymongo import MongoClient

import backups
import container
import releases as rel
from support import free_port, http_get, kubectl, wait_for

# one worker runs them in turn: one build, and one operator container at a time
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900), pytest.mark.xdist_group("image")]
ROOT = Path(__file__).resolve().parents[2]
RBAC = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


@pytest.fixture(scope="module")
def image() -> container.Image:
    return container.build_image()


def _helm_template(namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart rendered as the release `namespace` (a unique name: the ClusterRole and
    ClusterRoleBinding it names are cluster-wide, beside other tests' releases)."""
    rendered = subprocess.run(
        ["helm", "template", namespace, str(ROOT / "charts" / "chatops"), "--namespace",
         namespace, "--kube-version", "1.32.0", "-f", "-"],
        input=json.dumps(values), check=True, text=True, capture_output=True,
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


@pytest.fixture
def chart(
    crds: None, api: client.ApiClient, namespace: str
) -> Iterator[Callable[..., container.Pod]]:
    """Renders the chart (with values added to the test's) into a namespace of its own,
    watching `namespace`, its metrics on a free port (the pod shares the host's network),
    the environment's Prometheus as its default; applies its ServiceAccount and RBAC;
    gives the pod of its Deployment, which the test runs as a container."""
    system = f"chatops-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=system)))
    applied: list[dict[str, Any]] = []

    def render(**values: Any) -> container.Pod:
        docs = _helm_template(system, {
            "watchNamespaces": [namespace],
            "metrics": {"port": free_port()},
            "prometheus": {"address": os.environ["PROMETHEUS_URL"]},
            **values,
        })
        rbac = [d for d in docs if d["kind"] in RBAC]
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
        applied.extend(rbac)
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        return container.Pod(deployment)

    try:
        yield render
    finally:
        cluster_wide = [d for d in applied if d["kind"].startswith("Cluster")]
        if cluster_wide:
            kubectl("delete", "--ignore-not-found", "-f", "-",
                    input=yaml.safe_dump_all(cluster_wide))
        core.delete_namespace(system, propagation_policy="Background")


def _ask(probe: tuple[str, int]) -> tuple[int, str]:
    path, port = probe
    return http_get(port, path)


def _service_account(api: client.ApiClient, pod: container.Pod, folder: Path) -> Path:
    """What the kubelet mounts: a bound token of the pod's ServiceAccount (TokenRequest),
    the API server's CA and the namespace."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        pod.spec["serviceAccountName"], pod.namespace, request
    ).status.token
    cluster = yaml.safe_load(kubectl("config", "view", "--raw", "--minify").stdout)
    cluster = cluster["clusters"][0]["cluster"]
    ca = (
        base64.b64decode(cluster["certificate-authority-data"]).decode()
        if "certificate-authority-data" in cluster
        else Path(cluster["certificate-authority"]).read_text()
    )
    folder.mkdir()
    (folder / "token").write_text(token)
    (folder / "ca.crt").write_text(ca)
    (folder / "namespace").write_text(pod.namespace)
    for f in folder.iterdir():
        f.chmod(0o644)
    return folder


def _api_server() -> tuple[str, int]:
    server = kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    host, _, port = server.stdout.strip().removeprefix("https://").rpartition(":")
    return host, int(port)


def _json_lines(log: Path) -> list[dict[str, Any]]:
    """The container's output, every line one JSON object (--log-format json)."""
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, "the container logged nothing"
    records = []
    for line in lines:
        record = json.loads(line)
        assert {"message", "severity", "timestamp"} <= set(record), line
        records.append(record)
    return records


def _writable(running: container.Running, user: str) -> list[str]:
    """Which of the places a process could write to take a new file, as the user."""
    probe = (
        "import os, sys\n"
        "for d in sys.argv[1:]:\n"
        "    try:\n"
        "        open(os.path.join(d, '.probe'), 'w').close(); print(d)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    places = ["/", "/tmp", "/opt/chatops", "/opt/chatops/lib", "/etc", "/var", "/var/tmp",
              "/run", "/root", container.SERVICE_ACCOUNT_DIR, "/usr/lib"]
    done = running.exec("python", "-c", probe, *places, user=user)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _start(
    api: client.ApiClient, image: container.Image, pod: container.Pod, tmp: Path,
    token: Callable[[str], str] = lambda good: good,
) -> tuple[dict[str, Any], Path]:
    """The OCI spec of the pod and its ServiceAccount folder (`token` may spoil it)."""
    sa = _service_account(api, pod, tmp / "sa")
    (sa / "token").write_text(token((sa / "token").read_text()))
    return container.oci_spec(pod, image, tmp, sa, _api_server()), sa


def _user(spec: dict[str, Any]) -> str:
    return f"{spec['process']['user']['uid']}:{spec['process']['user']['gid']}"


def _wait_answering(running: container.Running, probe: tuple[str, int], expected: Any) -> None:
    wait_for(
        lambda: _ask(probe) == expected if expected is not None else _ask(probe)[0] != 0,
        timeout=120,
        what=f"{probe[0]} answering {expected} (log: {running.log.read_text()[-2000:]})",
    )


# A refusal as the API server and the client word it (not a bare "403", which a log
# line's milliseconds can show).
FORBIDDEN = re.compile(r"orbidden|\(403\)|code\W+403|status\W+403")
REFUSED = "the API server answered 401 Unauthorized"


def test_the_image_runs_as_the_charts_deployment_through_a_canary_and_a_backup(
    image: container.Image,
    chart: Callable[..., container.Pod],
    api: client.ApiClient,
    custom: client.CustomObjectsApi,
    namespace: str,
    tmp_path: Path,
) -> None:
    pod = chart()  # the chart's defaults: two replicas, so --leader-elect
    assert "--leader-elect" in pod.container["args"]
    spec, _ = _start(api, image, pod, tmp_path)
    health, ready = pod.probe("livenessProbe"), pod.probe("readinessProbe")
    with container.run(spec, tmp_path) as running:
        _wait_answering(running, ready, (200, "leading\n"))
        assert _ask(health) == (200, "leading\n")

        # uid 10001 (the chart's runAsUser, the image's group), fsGroup beside it, no
        # capabilities, and /tmp the only place it can write
        status = Path(f"/proc/{running.pid()}/status").read_text()
        ids = {k: v.split() for k, v in (line.split(":", 1) for line in status.splitlines())}
        assert ids["Uid"][:2] == ["10001", "10001"] and ids["Gid"][:2] == ["10001", "10001"]
        assert "10001" in ids["Groups"]
        assert ids["CapEff"] == ["0000000000000000"]
        assert _writable(running, _user(spec)) == ["/tmp"]
        # the package's version, as pyproject.toml gives it
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        said = running.exec("chatops", "--version", user=_user(spec))
        assert said.stdout.strip() == f"chatops {version}", said

        # a canary through the Gateway API
        rel.http_route(api, namespace)
        for color in ("blue", "green"):
            rel.traffic(namespace, "chat", color)
        release = rel.release_spec(
            "1.0", rel.canary(pause="2s"), {"gatewayAPI": {"httpRoute": "chat"}}
        )
        rel.create(custom, namespace, "chat", release)
        rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=120)
        rel.set_version(custom, namespace, "chat", "1.1")
        wait_for(
            lambda: rel.status(custom, namespace, "chat").get("stableVersion")
            == "chat-api:1.1,chat-web:1.1",
            timeout=120,
            what="the canary of 1.1 promoted",
        )
        # a backup: the MongoDB URI and the S3 keys from Secrets it may only `get`, the
        # dump spooled in /tmp
        database = f"image_{uuid.uuid4().hex[:6]}"
        with MongoClient(os.environ["MONGODB_URI"]) as mongo:
            mongo[database].messages.insert_many([{"n": i} for i in range(100)])
            bucket = backups.new_bucket(os.environ["S3_ENDPOINT_URL"])
            backups.create_secrets(
                client.CoreV1Api(api), namespace,
                backups.uri_with_password(os.environ["MONGODB_URI"]),
            )
            backups.create(
                custom, namespace, "chatbackups", "ChatBackup", "nightly",
                backups.backup_spec(os.environ["S3_ENDPOINT_URL"], bucket, database),
            )
            last = backups.finished_run(custom, namespace, "nightly", timeout=120)
            mongo.drop_database(database)
        assert last["result"] == "Succeeded" and last["documents"] == 100, last
        assert _ask(health) == (200, "leading\n")
        assert running.stop() == 0, "on SIGTERM the operator (PID 1) exits, and cleanly"

    records = _json_lines(running.log)
    assert any("leading as" in r["message"] for r in records)
    forbidden = [r["message"] for r in records if FORBIDDEN.search(r["message"])]
    assert forbidden == [], forbidden[:3]


def test_a_container_whose_token_is_refused_is_neither_live_nor_ready(
    image: container.Image, chart: Callable[..., container.Pod], api: client.ApiClient,
    tmp_path: Path,
) -> None:
    def spoil(token: str) -> str:  # the signature broken: the API server answers 401
        return token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")

    pod = chart()
    spec, sa = _start(api, image, pod, tmp_path, spoil)
    health, ready = pod.probe("livenessProbe"), pod.probe("readinessProbe")
    with container.run(spec, tmp_path) as running:
        _wait_answering(running, health, (503, f"standby: {REFUSED}\n"))
        assert _ask(ready) == (503, f"standby: {REFUSED}\n")
        # it keeps trying the leader Lease, refused each time, and stays not alive
        wait_for(
            lambda: sum("cannot reach the Lease" in r["message"] for r in _json_lines(running.log))
            >= 2,
            timeout=60,
            what="two refused attempts at the leader Lease",
        )
        assert _ask(health) == (503, f"standby: {REFUSED}\n")
        assert running.stop() == 0, "on SIGTERM a standby (PID 1) exits, and cleanly"
    records = _json_lines(running.log)
    assert sum(r["message"] == f"not working: {REFUSED}" for r in records) == 1, "said once"
    assert (sa / "token").read_text() not in running.log.read_text(), "the token in the log"


def test_a_working_container_whose_serviceaccount_is_deleted_is_no_longer_live(
    image: container.Image, chart: Callable[..., container.Pod], api: client.ApiClient,
    tmp_path: Path,
) -> None:
    """One replica (no leader election, which would exit on the lost Lease): alive while
    its token is good, not alive once the API server refuses it, and saying why."""
    pod = chart(replicas=1)
    assert "--leader-elect" not in pod.container["args"]
    spec, _ = _start(api, image, pod, tmp_path)
    health = pod.probe("livenessProbe")
    with container.run(spec, tmp_path) as running:
        _wait_answering(running, health, (200, "leading\n"))
        client.CoreV1Api(api).delete_namespaced_service_account(
            pod.spec["serviceAccountName"], pod.namespace
        )
        _wait_answering(running, health, (503, f"leading: {REFUSED}\n"))
        assert running.process.poll() is None, "not alive, but running: the kubelet restarts it"
