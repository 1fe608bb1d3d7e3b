"""The default cost and drain-gate queries, run by Prometheus' own engine (`promtool test
rules`, from the environment's Prometheus) over series shaped as the label contract
gives them: what each figure says for pods that served, failed, went away with their
connections, or are still there. The queries are the ones chatops sends, rendered as it
renders them; the operator rounds each figure as these tests do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatops.api.cost import CostQueries
from chatops.api.drain import ReconnectGate
from chatops.metrics.analysis import WindowContext, render

NS = "shop"
WINDOW = "40s"


def query(template: str, service: str) -> str:
    context = WindowContext(service, NS, "api", service.rsplit("-", 1)[1], "r1", WINDOW)
    return render(template, context)


def series(name: str, service: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {
        "series": f'{name}{{namespace="{NS}",service="{service}",pod="{pod}"{extra}}}',
        "values": values,
    }


def check(tmp_path: Path, inputs: list[dict[str, str]], expected: list[tuple[str, float]]) -> None:
    """`promtool test rules`: each expression's value at the window's end is as expected."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the environment's Prometheus (env/localenv.py)"
    tests: dict[str, Any] = {
        "rule_files": [],
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": inputs,
                "promql_expr_test": [
                    {"expr": expr, "eval_time": WINDOW,
                     "exp_samples": [{"labels": "{}", "value": value}]}
                    for expr, value in expected
                ],
            }
        ],
    }
    path = tmp_path / "cost.yaml"
    path.write_text(yaml.safe_dump(tests))
    run = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.usefixtures("environment")
def test_requests_and_failures_of_the_new_version_are_counted_over_the_window(
    tmp_path: Path,
) -> None:
    q = CostQueries()
    green = "chat-api-green"
    inputs = [  # two new pods, from 0 (series start at 0), 5/s and 3/s, then no traffic
        series("http_requests_total", green, "g1", "0 0+5x30 150x9", code="200", method="GET"),
        series("http_requests_total", green, "g1", "0 0+1x10 10x29", code="500", method="GET"),
        series("http_requests_total", green, "g2", "0 0+3x20 60x19", code="200", method="GET"),
        # the stable color's traffic is not the new version's
        series("http_requests_total", "chat-api-blue", "b1", "0+50x40", code="500", method="GET"),
    ]
    check(tmp_path, inputs, [
        (f"round({query(q.requests, green)})", 150 + 10 + 60),
        (f"round({query(q.failed_requests, green)})", 10),
    ])


@pytest.mark.usefixtures("environment")
def test_moved_counts_what_the_drained_pods_held_and_dropped_what_was_lost(
    tmp_path: Path,
) -> None:
    q = CostQueries()
    blue, green = "chat-api-blue", "chat-api-green"
    active, shut = "websocket_connections_active", "websocket_disconnections_total"
    accepted = "websocket_connections_total"
    inputs = [
        # a pod that went away before a scrape saw its closes: its last gauge counts
        series(active, blue, "b1", "10x10 stale"),
        series(shut, blue, "b1", "0x10 stale", reason="shutdown"),
        # one scraped once more after closing: its close counter counts
        series(active, blue, "b2", "12x20 0 stale"),
        series(shut, blue, "b2", "0x20 12 stale", reason="shutdown"),
        # scraped in the middle of its closes: 4 still open, 5 closed — 9 moved
        series(active, blue, "b3", "9x10 4 stale"),
        series(shut, blue, "b3", "0x10 5 stale", reason="shutdown"),
        # in the middle, then once more after: 9 as well
        series(active, blue, "b4", "9x10 4 0 stale"),
        series(shut, blue, "b4", "0x10 5 9 stale", reason="shutdown"),
        # gone, its target kept a few seconds by Prometheus' discovery, while its IP
        # already served a new pod: the last scrapes are that pod's, under b5's labels
        # (counters from 0, 2 connections of its own) — b5 held 11 when it went
        series(active, blue, "b5", "11x10 stale 0 2 2 stale"),
        series(shut, blue, "b5", "0x10 stale 0 0 0 stale", reason="shutdown"),
        series(accepted, blue, "b5", "11x10 stale 0 2 2 stale", result="success"),
        # the serving color's pods are not asked: nothing drained them
        series(active, green, "g1", "0+1x40"),
        # lost without a close handshake, and refused handshakes
        series(shut, green, "g1", "0x5 2x35", reason="error"),
        series("websocket_connections_total", green, "g1", "0x5 3x35", result="failure"),
        series("websocket_connections_total", green, "g1", "0+2x40", result="success"),
    ]
    check(tmp_path, inputs, [
        (f"round({query(q.websockets_moved, blue)})", 10 + 12 + 9 + 9 + 11),
        (f"round({query(q.websockets_dropped, green)})", 2 + 3),
        # nothing lost on blue: no series at all is 0, not no answer
        (f"round({query(q.websockets_dropped, blue)})", 0),
    ])


@pytest.mark.usefixtures("environment")
def test_the_drain_gate_is_the_share_of_accepted_reconnections(tmp_path: Path) -> None:
    green = "chat-api-green"
    total = "websocket_connections_total"
    inputs = [
        series(total, green, "g1", "0+3x40", result="success"),
        series(total, green, "g1", "0+1x40", result="failure"),
    ]
    check(tmp_path, inputs, [(query(ReconnectGate().query, green), 0.75)])
