"""Two replicas of the operator with leader election: one acts, the other stands by;
kill the leader mid-release and the standby takes over and finishes it."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from kubernetes import client

import releases as rel
from support import free_port, http_get, start_operator, wait_for

pytestmark = pytest.mark.e2e


def _replica(namespace: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    return start_operator(log, port, [namespace], "--leader-elect", "--leader-namespace", namespace)


def test_the_standby_takes_over_a_release_when_the_leader_dies(
    crds: None,
    api: client.ApiClient,
    namespace: str,
    custom: client.CustomObjectsApi,
    tmp_path: Path,
) -> None:
    ports = [free_port(), free_port()]
    replicas = [_replica(namespace, p, tmp_path / f"replica{i}.log") for i, p in enumerate(ports)]
    try:
        states = wait_for(
            lambda: (
                sorted(http_get(p, "/readyz")[1].strip() for p in ports)
                == ["leading", "standby"]
                and [http_get(p, "/readyz")[1].strip() for p in ports]
            ),
            timeout=60,
            what="one replica leading and one standing by",
        )
        leader = states.index("leading")
        assert all(http_get(p, "/healthz")[0] == 200 for p in ports)
        assert (
            "chatops_release_look_seconds" in http_get(ports[leader], "/metrics")[1]
        )

        rel.http_route(api, namespace)
        for color in ("blue", "green"):
            rel.traffic(namespace, "chat", color)
        spec = rel.release_spec(
            "1.0", rel.canary(pause="5s"), {"gatewayAPI": {"httpRoute": "chat"}}
        )
        rel.create(custom, namespace, "chat", spec)
        rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)
        rel.set_version(custom, namespace, "chat", "1.1")
        rel.wait_weight(custom, namespace, "chat", 25, timeout=60)  # under the first leader

        replicas[leader].send_signal(signal.SIGKILL)
        replicas[leader].wait()
        standby = 1 - leader
        wait_for(
            lambda: http_get(ports[standby], "/readyz")[1].strip() == "leading",
            timeout=60,
            what="the standby to take the Lease",
        )
        done = rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=120)
        assert done["stableVersion"] == "chat-api:1.1,chat-web:1.1"
        assert done["activeColor"] == "green"
        lease = client.CoordinationV1Api(api).read_namespaced_lease("chatops-leader", namespace)
        assert lease.spec.holder_identity.endswith(f"-{replicas[standby].pid}")
    finally:
        for proc in replicas:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
