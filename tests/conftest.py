"""Both tiers' session: when pytest-xdist runs the tests on workers (`make test`), the
controller starts the local environment once, before any worker runs an e2e test, and
stops it at the end if it started it. Each worker's `environment` fixture then finds it
running and leaves it be (without workers, that fixture starts and stops it itself)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
_started: list[bool] = []
"""[whether this controller started the environment], once it is up."""


def _localenv() -> Any:
    sys.path.insert(0, str(ROOT / "env"))
    import localenv

    return localenv


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Runs in the controller as each worker finishes collecting, before any test runs."""
    if _started or not any(i.startswith("tests/e2e/") for i in ids):
        return
    localenv = _localenv()
    started = not localenv.running()
    localenv.up()
    # The demo's operator acts on every namespace; the tests run their own.
    localenv.stop("operator")
    _started.append(started)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput") and _started and _started[0]:
        _localenv().down()
