"""The Grafana dashboard's queries, asked of the real Prometheus as Grafana would ask them:
each one parses and evaluates (with the template variables filled in), and the release
phase panels turn the operator's phase series into the right phase name."""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from chatops import telemetry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import test_dashboard as board

pytestmark = pytest.mark.e2e

DURATIONS = {"__rate_interval": "1m", "__interval": "15s", "__range": "6h", "__range_s": "21600"}


def fill(expr: str) -> str:
    """`expr` as Grafana sends it with every variable at All (`.*`) and a 6 h range."""

    def value(match: re.Match[str]) -> str:
        return DURATIONS.get(match.group(1), ".*")

    return re.sub(r"\$\{?(\w+)\}?", value, expr)


def ask(prometheus: str, path: str, params: dict[str, str], *, post: bool = True) -> dict[str, Any]:
    """Prometheus's answer to `params` (POSTed, or in the URL where the API only takes a
    GET), errors included (400 with a message)."""
    query = urllib.parse.urlencode(params)
    url, data = (
        (f"{prometheus}{path}", query.encode()) if post else (f"{prometheus}{path}?{query}", None)
    )
    try:
        with urllib.request.urlopen(url, data, timeout=10) as reply:
            answer: dict[str, Any] = json.load(reply)
    except urllib.error.HTTPError as err:
        answer = json.load(err)
    return answer


QUERIES = [pytest.param(expr, id=where) for where, expr in board.queries(board.dashboard())]


@pytest.mark.parametrize("expr", QUERIES)
def test_prometheus_accepts_every_query(environment: dict[str, str], expr: str) -> None:
    prometheus = environment["PROMETHEUS_URL"]
    variable = re.fullmatch(r"label_values\((.*),\s*(\w+)\s*\)", expr, re.DOTALL)
    if variable:  # Grafana asks the label values API, matching the selector
        selector, label = variable.groups()
        answer = ask(
            prometheus, f"/api/v1/label/{label}/values", {"match[]": fill(selector)}, post=False
        )
    else:
        answer = ask(prometheus, "/api/v1/query", {"query": fill(expr)})
    assert answer["status"] == "success", f"{answer.get('error')}\n{fill(expr)}"


def _phase_series(namespace: str, name: str, current: str) -> str:
    """chatops_release_phase as the operator exports it for one release: 1 for `current`,
    0 for every other phase."""
    series = []
    for phase in telemetry.PHASES:
        vector = f"vector({1 if phase == current else 0})"
        for label, value in (("namespace", namespace), ("name", name), ("phase", phase)):
            vector = f'label_replace({vector}, "{label}", "{value}", "", "")'
        series.append(vector)
    return " or ".join(series)


def test_phase_panels_show_each_release_in_its_phase(environment: dict[str, str]) -> None:
    prometheus = environment["PROMETHEUS_URL"]
    releases = {f"release-{i}": phase for i, phase in enumerate(telemetry.PHASES)}
    exported = " or ".join(_phase_series("shop", n, p) for n, p in releases.items())
    for panel in board.phase_panels():
        expr = fill(panel["targets"][0]["expr"])
        expr = re.sub(r"chatops_release_phase\{[^}]*\}", f"({exported})", expr)
        answer = ask(prometheus, "/api/v1/query", {"query": expr})
        assert answer["status"] == "success", answer.get("error")
        (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
        shown = {
            r["metric"]["name"]: mapping["options"][r["value"][1]]["text"]
            for r in answer["data"]["result"]
        }
        assert shown == releases, panel["title"]
