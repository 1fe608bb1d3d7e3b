"""Helpers of the e2e tests: kubectl, polling, plain HTTP and servers of a test's own."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from localenv import free_port

GROUP, VERSION = "chatops.dev", "v1alpha1"


def kubectl(
    *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl against the environment's cluster (the environment fixture set KUBECONFIG)."""
    return subprocess.run(
        ["kubectl", *args], check=check, text=True, capture_output=True, input=input
    )


def wait_for(
    check: Callable[[], Any], timeout: float = 60, interval: float = 0.5, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def http_get(port: int, path: str, timeout: float = 5) -> tuple[int, str]:
    """GET `path` on 127.0.0.1:`port` as a probe asks: (status, body), an HTTP error's
    code and body alike, and (0, "") when nothing answers (not up yet, or gone)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


class PrivateServer:
    """A server process of the test's own on a port of its own (`command()`), so that a
    test can stop it and start it again without disturbing anyone else's tests."""

    what = "server"
    """Named in the timeout when it does not come up."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The process's environment; None: the test's own."""
        return None

    def ready(self) -> bool:
        """Whether it serves; by default, whether its port accepts a connection."""
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def start(self) -> None:
        self._proc = subprocess.Popen(
            self.command(), env=self.environment(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self.ready, timeout=60, interval=0.1, what=f"the private {self.what}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
            self._proc = None


def metrics(operator_log: Path) -> dict[str, float]:
    """The operator's /metrics (the `operator` fixture's), as `name{labels}` → value."""
    from prometheus_client.parser import text_string_to_metric_families

    url = (operator_log.parent / "metrics.url").read_text()
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def operator_command(metrics_port: int, namespaces: Sequence[str], *extra: str) -> list[str]:
    """`chatops run` serving /metrics on `metrics_port`, watching only `namespaces`.

    Tests run side by side (see conftest.py), each with an operator of its own: one that
    watched every namespace would act on other tests' objects. An empty `namespaces` is
    such a cluster-wide operator, allowed only in a test marked `serial`."""
    if not namespaces and os.environ.get("PYTEST_XDIST_WORKER"):
        raise AssertionError(
            "a cluster-wide operator would act on the objects of the tests running beside "
            "this one: pass the test's namespaces, or mark the test @pytest.mark.serial"
        )
    scope = [arg for ns in namespaces for arg in ("--namespace", ns)]
    return [sys.executable, "-m", "chatops.cli", "run", "--metrics-port", str(metrics_port),
            *scope, *extra]


def operator_env(namespaces: Sequence[str]) -> dict[str, str]:
    """The operator's environment: its own namespace (`POD_NAMESPACE`, as the chart sets
    it) is the test's first one, so its leader and database Leases live there and meet
    nobody else's test."""
    own = namespaces[0] if namespaces else os.environ.get("POD_NAMESPACE", "default")
    return {**os.environ, "POD_NAMESPACE": own}


def start_operator(
    log: Path, metrics_port: int, namespaces: Sequence[str], *extra: str
) -> subprocess.Popen[bytes]:
    """`chatops run` (see `operator_command`) appending to `log`, returned once it serves
    /readyz; stop it with `stop_operator` or send it a signal."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            operator_command(metrics_port, namespaces, *extra),
            stdout=out, stderr=subprocess.STDOUT, env=operator_env(namespaces),
        )
    wait_ready(proc, metrics_port, log)
    return proc


def wait_ready(proc: subprocess.Popen[bytes], metrics_port: int, log: Path) -> None:
    """Until the operator answers /readyz (leading or standing by): its imports are done
    and it is about to watch. A test's own waits then time what the operator does, not
    how long Python takes to start it on a busy machine (many seconds under load)."""

    def ready() -> bool:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"the operator exited ({proc.returncode}) at start:\n{tail}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{metrics_port}/readyz", timeout=2
            ) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    wait_for(ready, timeout=180, interval=0.2, what="the operator to serve /readyz")


def stop_operator(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as the kubelet stops a pod; SIGKILL if it is not gone in 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def operator_process(
    log: Path, metrics_port: int, namespaces: Sequence[str]
) -> Iterator[subprocess.Popen[bytes]]:
    """`chatops run --log-level debug` on `namespaces`, logging to `log`, stopped on
    leaving."""
    proc = start_operator(log, metrics_port, namespaces, "--log-level", "debug")
    try:
        yield proc
    finally:
        stop_operator(proc)

