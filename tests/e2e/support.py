"""Helpers of the e2e tests: kubectl and polling."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def operator_process(log: Path, metrics_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`chatops run`, a real kopf process logging to `log`, stopped on leaving."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatops.cli", "run", "--log-level", "debug",
             "--metrics-port", str(metrics_port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
