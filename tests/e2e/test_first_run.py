"""The first run on a fresh machine (issue 8, case 22): a CRD applied a moment ago is
waited for until it serves, whatever state the API server shows it in meanwhile.

`make demo` on a fresh clone failed at `kubectl wait --for=condition=Established` right
after the server-side apply of the Gateway API CRDs: a CRD that was just created has no
`status.conditions` yet, and `kubectl wait` then fails at once (`.status.conditions
accessor error`) instead of waiting. The environment (`localenv.wait_established`), the
demo and the e2e fixtures now poll until Established is True.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import pytest

import localenv
from support import kubectl, wait_for

pytestmark = pytest.mark.e2e

ROUNDS = 5


GROUP = "first-run.chatops.dev"


def _crd(plural: str) -> dict[str, object]:
    group = GROUP
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": plural.capitalize(), "plural": plural, "singular": plural},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }


@pytest.fixture
def plurals(environment: dict[str, str]) -> Iterator[list[str]]:
    made = [f"w{uuid.uuid4().hex[:10]}" for _ in range(ROUNDS)]
    yield made
    for plural in made:
        kubectl(
            "delete",
            "crd",
            f"{plural}.first-run.chatops.dev",
            "--ignore-not-found",
            "--wait=false",
            check=False,
        )


def test_case_22_a_crd_applied_a_moment_ago_is_waited_for_until_it_serves(
    plurals: list[str],
) -> None:
    """Each new CRD is applied server-side, as `make demo` does, and waited for at
    once: the wait returns only when its resource is served, every time."""
    for plural in plurals[1:]:
        kubectl("apply", "--server-side", "-f", "-", input=json.dumps(_crd(plural)))
        localenv.wait_established(f"{plural}.{GROUP}", timeout=60)
        served = kubectl("get", f"{plural}.{GROUP}", "-A", check=False)
        assert served.returncode == 0, served.stderr


def test_case_22_a_wait_that_starts_before_the_crd_is_visible_still_waits(
    plurals: list[str],
) -> None:
    """The race of the first `make demo`, made certain: the wait looks before the API
    server shows the CRD. `kubectl wait` fails at once on NotFound (what the demo did,
    exit 1); the environment's wait polls through it."""
    plural = plurals[0]
    name = f"{plural}.{GROUP}"
    old = kubectl(
        "wait", "--for=condition=Established", f"crd/{name}", "--timeout=30s", check=False
    )
    assert old.returncode == 1 and "NotFound" in old.stderr, old.stderr
    outcome: list[BaseException | None] = []

    def wait() -> None:
        try:
            localenv.wait_established(name, timeout=60)
            outcome.append(None)
        except BaseException as err:  # SystemExit is how the wait fails
            outcome.append(err)

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_for(lambda: waiter.is_alive(), timeout=5, what="the wait to start")
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(_crd(plural)))
    waiter.join(timeout=90)
    assert outcome == [None]
    assert kubectl("get", name, "-A", check=False).returncode == 0
