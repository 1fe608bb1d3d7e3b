"""The image's default command, run as the container would run it, answers the probes the
chart's Deployment and the Dockerfile's HEALTHCHECK ask, serves the metrics, and logs
JSON; with two replicas, one leads and the other stands by, both alive and ready.

(The takeover when the leader dies is tests/e2e/test_ha.py.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from chatops import cli
from support import free_port, http_get, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import test_dockerfile as image

pytestmark = pytest.mark.e2e


def _image_port() -> int:
    """The metrics port of the image's default command."""
    return int(cli.parser().parse_args(image.cmd()).metrics_port)


def image_command(port: int, namespace: str) -> list[str]:
    """The image's ENTRYPOINT + CMD on `port`, confined to `namespace` (its leader Lease
    and the objects it watches) so that it acts on nobody else's test objects."""
    argv = [str(port) if arg == str(_image_port()) else arg for arg in image.cmd()]
    return [
        sys.executable,
        "-m",
        "chatops.cli",
        *argv,
        "--leader-namespace",
        namespace,
        "--namespace",
        namespace,
    ]


@contextmanager
def container(port: int, namespace: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            image_command(port, namespace), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)  # what the kubelet sends
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_image_command_serves_probes_metrics_and_json_logs(
    crds: None, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "operator.log"
    with container(port, namespace, log) as proc:
        wait_for(
            lambda: http_get(port, "/readyz") == (200, "leading\n"),
            timeout=60,
            what="/readyz 200 leading",
        )
        assert http_get(port, "/healthz")[0] == 200
        code, metrics = http_get(port, "/metrics")
        assert code == 200
        assert "# TYPE chatops_release_phase gauge" in metrics
        assert any(line.startswith("chatops_release_look_seconds") for line in metrics.split("\n"))
        assert http_get(port, "/nothing")[0] == 404
        assert proc.poll() is None, log.read_text()

        # the Dockerfile's HEALTHCHECK, pointed at this port
        check = [a.replace(f":{_image_port()}/", f":{port}/") for a in image.healthcheck()]
        assert subprocess.run([sys.executable, *check[1:]], timeout=30).returncode == 0

    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, "the operator logged nothing"
    for line in lines:
        record = json.loads(line)  # --log-format json: one object per line, nothing else
        assert {"message", "severity", "timestamp"} <= set(record), line
    assert any("leading as" in json.loads(line)["message"] for line in lines)


def test_two_replicas_one_leads_one_stands_by_both_ready(
    crds: None, namespace: str, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    with ExitStack() as stack:
        for i, port in enumerate(ports):
            stack.enter_context(container(port, namespace, tmp_path / f"replica{i}.log"))
        wait_for(
            lambda: (
                sorted(http_get(p, "/readyz") for p in ports)
                == [(200, "leading\n"), (200, "standby\n")]
            ),
            timeout=60,
            what="one replica leading and one standing by, both ready",
        )
        assert [http_get(p, "/healthz")[0] for p in ports] == [200, 200]
        for port in ports:
            code, metrics = http_get(port, "/metrics")
            assert code == 200 and "# TYPE chatops_release_phase gauge" in metrics
