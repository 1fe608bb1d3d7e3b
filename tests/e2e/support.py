"""Helpers of the e2e tests: kubectl and polling."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
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
