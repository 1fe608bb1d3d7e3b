"""The Grafana dashboard in charts/chatops/dashboards: it loads, its variables resolve, and
every query asks for series the operator exports (a misspelt metric is an empty panel
that nobody notices until the night it was needed).

Whether Prometheus accepts each query is tests/e2e/test_dashboard_queries.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

import chatops.handlers  # noqa: F401 - registers every metric `chatops run` serves
from chatops import telemetry

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "chatops" / "dashboards" / "chatops.json"
DATASOURCE = "${datasource}"
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}  # fmt: skip


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target, variable and annotation."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            yield f"variable {var['name']}", var["definition"]
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (in braces or grouping clauses) or durations."""
    names = set(re.findall(r'__name__\s*=~?\s*"([^"]*)"', expr))
    names = {n for pattern in names for n in pattern.split("|")}
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)\s*(\()?", text):
        name, call = match.groups()
        if call is None and name not in _KEYWORDS:
            names.add(name)
    if expr.startswith("label_values("):
        names.discard(expr.rsplit(",", 1)[1].strip(" )"))  # the label asked for
    return names


def exported() -> set[str]:
    """Sample names the operator's /metrics can carry, from the live registry."""
    names = set()
    for family in REGISTRY.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def used() -> set[str]:
    return {name for _, expr in queries(dashboard()) for name in metric_names(expr)}


def test_metric_names_are_found_in_promql() -> None:
    """The extractor the next test relies on."""
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x=~"$v"}[$__rate_interval])))'
    ) == {"a_bucket"}
    assert metric_names('time() - max by (namespace) (b{name="or"}) or on (phase) c') == {
        "b",
        "c",
    }
    assert metric_names('label_values({__name__=~"d|e"}, namespace)') == {"d", "e"}
    assert metric_names('label_values(f{namespace=~"$namespace"}, name)') == {"f"}


@pytest.mark.parametrize(
    "name",
    sorted(used()),
)
def test_every_query_selects_a_metric_the_operator_exports(name: str) -> None:
    assert name in exported(), f"{name} is on the dashboard but no chatops metric is called so"


def test_every_release_metric_is_on_the_dashboard() -> None:
    on_board = used()
    for collector in (
        telemetry.release_phase,
        telemetry.release_step,
        telemetry.release_weight,
        telemetry.analysis_value,
        telemetry.rollbacks,
        telemetry.look_seconds,
    ):
        family = collector.describe()[0]
        samples = {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
        assert samples & on_board, f"{family.name} is exported but on no panel"


def test_the_dashboard_loads_with_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "release"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == DATASOURCE
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


def test_every_panel_queries_the_chosen_datasource() -> None:
    for panel in panels(dashboard()):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE, panel["title"]


def test_every_variable_a_query_uses_is_defined() -> None:
    board = dashboard()
    defined = {v["name"] for v in board["templating"]["list"]} | GRAFANA_BUILTINS
    for where, expr in queries(board):
        for var in re.findall(r"\$\{?(\w+)", expr):
            assert var in defined, f"{where} uses ${var}, which the dashboard does not define"
    for panel in panels(board):
        if "repeat" in panel:
            assert panel["repeat"] in defined


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    board = list(panels(dashboard()))
    ids = [p["id"] for p in board]
    assert len(ids) == len(set(ids))
    boxes = [(p["title"], p["gridPos"]) for p in board]
    for i, (a, pa) in enumerate(boxes):
        assert pa["x"] + pa["w"] <= 24, a
        for b, pb in boxes[i + 1 :]:
            apart = (
                pa["x"] + pa["w"] <= pb["x"]
                or pb["x"] + pb["w"] <= pa["x"]
                or pa["y"] + pa["h"] <= pb["y"]
                or pb["y"] + pb["h"] <= pa["y"]
            )
            assert apart, f"panels {a!r} and {b!r} overlap"


def phase_panels() -> list[dict[str, Any]]:
    return [
        p
        for p in panels(dashboard())
        if any("chatops_release_phase" in t["expr"] for t in p.get("targets", []))
    ]


def test_release_phase_panels_name_every_phase_the_operator_reports() -> None:
    """The phase panels turn the phase into a number in PromQL and back into its name with
    a value mapping: both must agree with each other and with the operator's phases, or a
    panel would show `RolledBack` for a release that succeeded."""
    assert phase_panels()
    for panel in phase_panels():
        expr = panel["targets"][0]["expr"]
        in_query = {
            int(n): p for n, p in re.findall(r'vector\((\d+)\),\s*"phase",\s*"(\w+)"', expr)
        }
        (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
        shown = {int(value): option["text"] for value, option in mapping["options"].items()}
        assert in_query == shown, panel["title"]
        assert set(shown.values()) == set(telemetry.PHASES), panel["title"]
