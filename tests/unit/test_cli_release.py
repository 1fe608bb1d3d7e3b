"""What `chatops status` shows a human about a ChatRelease, from the object alone."""

from __future__ import annotations

from typing import Any

import pytest

from chatops.cli import parser
from chatops.commands.release_view import format_value, latest_measurements, render, view


def release(
    status: dict[str, Any] | None = None,
    strategy: dict[str, Any] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    return {
        "apiVersion": "chatops.dev/v1alpha1",
        "kind": "ChatRelease",
        "metadata": {"name": "chat", "namespace": "prod", "generation": generation},
        "spec": {"strategy": strategy if strategy is not None else {"canary": {}}},
        "status": status or {},
    }


def measurement(metric: str, component: str, value: str | None, verdict: str, t: str) -> Any:
    return {
        "metric": metric,
        "component": component,
        "query": "q",
        "value": value,
        "verdict": verdict,
        "time": t,
    }


CANARY_4_STEPS = {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {}]}}


@pytest.mark.parametrize(
    ("strategy", "current_step", "expected"),
    [
        pytest.param(CANARY_4_STEPS, 1, "2/4", id="steps count from 1 as the events say"),
        pytest.param(CANARY_4_STEPS, 4, "4/4", id="past the last step: n/n"),
        pytest.param({"canary": {}}, 0, "1/7", id="default steps 10/25/50/100 with pauses"),
        pytest.param({"blueGreen": {}}, None, "-", id="blue-green has no steps"),
        pytest.param(CANARY_4_STEPS, None, "-", id="canary not started"),
    ],
)
def test_step_is_k_of_n(strategy: dict[str, Any], current_step: int | None, expected: str) -> None:
    status = {} if current_step is None else {"currentStep": current_step}
    assert view(release(status, strategy)).step == expected


@pytest.mark.parametrize(
    ("phase", "observed", "generation", "finished"),
    [
        pytest.param("Succeeded", 3, 3, True, id="succeeded"),
        pytest.param("RolledBack", 3, 3, True, id="rolled back"),
        pytest.param("Failed", None, 3, True, id="failed, generation unknown"),
        pytest.param("Paused", 3, 3, False, id="paused waits for a human"),
        pytest.param("Progressing", 3, 3, False, id="progressing"),
        pytest.param("Succeeded", 2, 3, False, id="new spec not yet seen: last release's end"),
        pytest.param(None, None, 1, False, id="no status yet"),
    ],
)
def test_finished_only_when_the_current_spec_reached_a_terminal_phase(
    phase: str | None, observed: int | None, generation: int, finished: bool
) -> None:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if observed is not None:
        status["observedGeneration"] = observed
    assert view(release(status, generation=generation)).finished is finished


def test_latest_measurement_of_each_metric_and_component_in_first_seen_order() -> None:
    analysis = [
        measurement("error-rate", "api", "0.001", "Pass", "2026-01-01T10:00:00Z"),
        measurement("latency-p95", "api", "0.2", "Pass", "2026-01-01T10:00:00Z"),
        measurement("error-rate", "web", "0.0", "Pass", "2026-01-01T10:00:00Z"),
        measurement("error-rate", "api", "0.05", "Fail", "2026-01-01T10:00:30Z"),
    ]
    rows = latest_measurements(analysis)
    assert [(r.metric, r.component, r.value, r.verdict) for r in rows] == [
        ("error-rate", "api", "0.05", "Fail"),
        ("latency-p95", "api", "0.2", "Pass"),
        ("error-rate", "web", "0", "Pass"),
    ]
    assert rows[0].time == "2026-01-01T10:00:30Z"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0.012345678", "0.01235"),
        ("0.05", "0.05"),
        ("1234567", "1.235e+06"),
        ("NaN", "NaN"),
        (None, "-"),
        ("", "-"),
        ("no data", "no data"),
    ],
)
def test_values_are_short_and_non_numbers_shown_as_they_came(value: str | None, shown: str) -> None:
    assert format_value(value) == shown


def test_status_text_shows_what_a_human_checks() -> None:
    status = {
        "phase": "Paused",
        "currentStep": 1,
        "canaryWeight": 25,
        "stableVersion": "api=chat-api:1.0",
        "stableRevision": "5d8c",
        "canaryVersion": "api=chat-api:1.1",
        "canaryRevision": "9f2a",
        "activeColor": "blue",
        "message": "step 2/4 at 25%: paused until chatops.dev/promote",
        "analysis": [
            measurement("error-rate", "api", "0.002", "Pass", "2026-01-01T10:00:00Z"),
            measurement("websocket-success", "api", None, "Inconclusive", "2026-01-01T10:00:01Z"),
        ],
    }
    assert render(view(release(status, CANARY_4_STEPS))) == (
        "Release:       prod/chat\n"
        "Phase:         Paused\n"
        "Step:          2/4\n"
        "Weight:        25%\n"
        "Stable:        api=chat-api:1.0 (revision 5d8c)\n"
        "Canary:        api=chat-api:1.1 (revision 9f2a)\n"
        "Active color:  blue\n"
        "Message:       step 2/4 at 25%: paused until chatops.dev/promote\n"
        "\n"
        "Measurements (latest per metric and component):\n"
        "  METRIC             COMPONENT  VALUE  VERDICT       TIME\n"
        "  error-rate         api        0.002  Pass          2026-01-01T10:00:00Z\n"
        "  websocket-success  api        -      Inconclusive  2026-01-01T10:00:01Z\n"
    )


def test_a_new_release_without_status_shows_dashes_not_errors() -> None:
    text = render(view(release()))
    assert "Phase:         -\n" in text
    assert "Measurements: none yet" in text


def test_a_status_from_another_operator_version_is_still_shown() -> None:
    odd = {"phase": "Verifying", "canaryWeight": "a lot", "analysis": [{"metric": 3}, "junk"]}
    text = render(view(release(odd)))
    assert "Phase:         Verifying\n" in text
    assert "Weight:        -\n" in text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["promote", "chat"], {"command": "promote", "name": "chat", "full": False}),
        (["promote", "chat", "--full", "-n", "prod"], {"full": True, "namespace": "prod"}),
        (["abort", "chat"], {"command": "abort", "namespace": None}),
        (["retry", "chat", "--namespace", "x"], {"command": "retry", "namespace": "x"}),
        (["status", "chat", "--watch"], {"command": "status", "watch": True}),
        (["status", "chat"], {"watch": False}),
    ],
)
def test_command_line(argv: list[str], expected: dict[str, Any]) -> None:
    args = vars(parser().parse_args(argv))
    assert {key: args[key] for key in expected} == expected


def test_status_shows_the_drain_and_what_the_release_cost_its_users() -> None:
    status = {
        "phase": "Promoting",
        "scaleDown": {"color": "blue", "at": "2026-12-02T06:00:30Z", "wave": 2, "waves": 4,
                      "paused": "reconnect storm on api: 0.82 < min 0.99"},
        "history": [
            {"revision": "aaa", "result": "Succeeded", "finishedAt": "2026-12-01T10:00:00Z",
             "cost": {"color": "green", "since": "x", "requests": 900, "failedRequests": 2,
                      "websocketsMoved": 40, "websocketsDropped": 0, "final": True}},
            {"revision": "bbb", "result": "Succeeded", "finishedAt": "2026-12-02T06:00:00Z",
             "cost": {"color": "blue", "since": "x", "requests": 1520, "failedRequests": 76,
                      "websocketsMoved": 12, "websocketsDropped": 1,
                      "countedUntil": "2026-12-02T06:01:00Z"}},
        ],
    }
    text = render(view(release(status)))
    assert ("Drain:         wave 2/4 of blue; paused: reconnect storm on api: 0.82 < min "
            "0.99") in text
    assert ("Cost:          1520 requests served by the new version, 76 failed; WebSockets 12 "
            "moved, 1 dropped (so far, until 2026-12-02T06:01:00Z)") in text
    history = text.split("History (newest last; what each release cost its users):\n")[1]
    assert history.splitlines()[1].split() == [
        "aaa", "Succeeded", "900", "2", "40", "0", "2026-12-01T10:00:00Z"]
    assert history.splitlines()[2].split()[2:6] == ["1520+", "76+", "12+", "1+"]


def test_a_cost_prometheus_could_not_count_is_unknown_never_zero() -> None:
    status = {"cost": {"color": "green", "since": "x", "problem": "requests: unreachable",
                       "countedAt": "2026-12-02T06:00:00Z"}}
    text = render(view(release(status)))
    assert ("Cost:          unknown requests served by the new version, unknown failed; "
            "WebSockets unknown moved, unknown dropped (not counted yet); "
            "requests: unreachable") in text
    assert " 0 " not in text.split("Cost:")[1].splitlines()[0]
