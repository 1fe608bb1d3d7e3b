"""When to measure, and what a run of measurements says about the release."""

from __future__ import annotations

import datetime

import pytest

from chatops.api.analysis import Analysis, AnalysisRun, Measurement, Verdict
from chatops.metrics.analysis import (
    Outcome,
    count,
    due,
    last_round_at,
    next_measurement_at,
    outcome,
)

T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("initial_delay", "interval", "last", "now", "is_due", "next_at"),
    [
        ("0s", "30s", None, 0, True, 0),
        ("1m", "30s", None, 59, False, 60),
        ("1m", "30s", None, 60, True, 60),
        ("0s", "30s", 10, 39, False, 40),
        ("0s", "30s", 10, 40, True, 40),
        ("1m", "30s", 5, 30, False, 60),  # a measurement inside the delay does not shorten it
        ("0s", "30s", -100, 0, True, 0),  # a measurement of the previous step does not count
        ("10s", "1m30s", 20, 100, False, 110),
    ],
)
def test_measurements_are_due_after_the_delay_then_every_interval(
    initial_delay: str, interval: str, last: float | None, now: float, is_due: bool, next_at: float
) -> None:
    analysis = Analysis(initial_delay=initial_delay, interval=interval)
    last_at = None if last is None else at(last)
    assert due(analysis, T0, last_at, at(now)) is is_due
    assert next_measurement_at(analysis, T0, last_at) == at(next_at)


ANALYSIS = Analysis.model_validate(
    {
        "failureLimit": 1,
        "inconclusiveLimit": 1,
        "consecutiveErrorLimit": 2,
        "metrics": [
            {"name": "error-rate", "query": "q", "max": 0.01},
            {"name": "latency", "query": "q", "max": 0.5},
        ],
    }
)


def runs(**by_key: str) -> list[Measurement]:
    """Measurements from a compact spelling: `api_latency="PPF"` is three measurements
    of latency on api, Pass, Pass, Fail (E = Error, I = Inconclusive), oldest first."""
    letters: dict[str, Verdict] = {"P": "Pass", "F": "Fail", "I": "Inconclusive", "E": "Error"}
    out = []
    for key, verdicts in by_key.items():
        component, metric = key.split("_", 1)
        for n, letter in enumerate(verdicts):
            out.append(
                Measurement(
                    metric=metric.replace("_", "-"),
                    component=component,
                    query="q",
                    verdict=letters[letter],
                    time=f"2026-03-01T12:00:{n:02d}Z",
                    message=f"{letters[letter]} #{n}",
                )
            )
    return out


START = "2026-03-01T12:00:00Z"


def counted(measurements: list[Measurement], started_at: str = START) -> AnalysisRun | None:
    """The run's counters after each round of `measurements` was counted in turn."""
    run = None
    for time in dict.fromkeys(m.time for m in measurements):
        run = count(run, started_at, [m for m in measurements if m.time == time])
    return run or count(None, started_at, [])


@pytest.mark.parametrize(
    ("measurements", "expected", "why"),
    [
        pytest.param({}, "Running", "no measurement yet", id="nothing measured"),
        pytest.param(
            {"api_error_rate": "PP", "api_latency": "PP"},
            "Successful",
            "all 2 metric(s) passed on api",
            id="all pass",
        ),
        pytest.param(
            {"api_error_rate": "PP"},
            "Running",
            "latency on api has not passed yet",
            id="a metric never measured",
        ),
        pytest.param(
            {"api_error_rate": "PF", "api_latency": "P"},
            "Successful",
            "",
            id="failures up to failureLimit are tolerated",
        ),
        pytest.param(
            {"api_error_rate": "FPF", "api_latency": "P"},
            "Failed",
            "error-rate on api failed 2 time(s), more than failureLimit 1; last: Fail #2",
            id="one failure more than the limit rolls back",
        ),
        pytest.param(
            {"api_error_rate": "II", "api_latency": "P"},
            "Inconclusive",
            "error-rate on api was inconclusive 2 time(s), more than inconclusiveLimit 1",
            id="inconclusive over the limit pauses for a human",
        ),
        pytest.param(
            {"api_error_rate": "FF", "api_latency": "II"},
            "Failed",
            "error-rate on api failed 2 time(s)",
            id="failed beats inconclusive",
        ),
        pytest.param(
            {"api_error_rate": "PEE", "api_latency": "P"},
            "Running",
            "error-rate on api errored, holding until a measurement succeeds: Error #2",
            id="errors under the limit hold, never promote",
        ),
        pytest.param(
            {"api_error_rate": "PEEE", "api_latency": "P"},
            "Failed",
            "error-rate on api errored 3 time(s) in a row, more than consecutiveErrorLimit 2",
            id="errors over the limit in a row roll back",
        ),
        pytest.param(
            {"api_error_rate": "EEPEEP", "api_latency": "P"},
            "Successful",
            "",
            id="errors interrupted by a measurement do not add up",
        ),
        pytest.param(
            {"api_error_rate": "PIIEEE", "api_latency": "PP"},
            "Failed",
            "error-rate on api errored 3 time(s) in a row",
            id="errors past the limit roll back a release paused as inconclusive",
        ),
        pytest.param(
            {"api_error_rate": "EE", "api_latency": "EE"},
            "Running",
            "errored",
            id="a run where everything errored is never successful",
        ),
        pytest.param(
            {"api_error_rate": "I", "api_latency": "F"},
            "Running",
            "has not passed yet",
            id="tolerated verdicts but no pass yet: keep measuring",
        ),
        pytest.param(
            {
                "api_error_rate": "PP",
                "api_latency": "PP",
                "frontend_error_rate": "PFF",
                "frontend_latency": "PP",
            },
            "Failed",
            "error-rate on frontend failed 2 time(s)",
            id="counted per component: one failing component fails the release",
        ),
        pytest.param(
            {
                "api_error_rate": "FP",
                "api_latency": "P",
                "frontend_error_rate": "PF",
                "frontend_latency": "P",
            },
            "Successful",
            "",
            id="the failure limit is per (metric, component), as Argo counts per metric",
        ),
        pytest.param(
            {"api_error_rate": "P", "api_latency": "P", "api_removed_metric": "FFFF"},
            "Successful",
            "",
            id="a metric no longer in the spec is ignored",
        ),
    ],
)
def test_outcome(measurements: dict[str, str], expected: Outcome, why: str) -> None:
    got, message = outcome(ANALYSIS, counted(runs(**measurements)))
    assert got == expected
    assert why in message


def test_a_component_not_yet_measured_holds_success_back() -> None:
    measured = runs(api_error_rate="P", api_latency="P")
    assert outcome(ANALYSIS, counted(measured))[0] == "Successful"
    got, message = outcome(ANALYSIS, counted(measured), components=["api", "frontend"])
    assert got == "Running"
    assert "frontend has not passed yet" in message


def test_with_default_limits_one_failure_rolls_back_and_four_errors_are_tolerated() -> None:
    analysis = Analysis()  # the runbook's metrics, failureLimit 0, consecutiveErrorLimit 4
    names = [m.name.replace("-", "_") for m in analysis.metrics]
    assert outcome(analysis, counted(runs(**{f"api_{n}": "P" for n in names})))[0] == "Successful"
    fail_one = {f"api_{n}": "P" for n in names} | {"api_error_rate": "PF"}
    assert outcome(analysis, counted(runs(**fail_one)))[0] == "Failed"
    four_errors = {f"api_{n}": "P" for n in names} | {"api_error_rate": "PEEEE"}
    assert outcome(analysis, counted(runs(**four_errors)))[0] == "Running"
    five_errors = {f"api_{n}": "P" for n in names} | {"api_error_rate": "PEEEEE"}
    assert outcome(analysis, counted(runs(**five_errors)))[0] == "Failed"


def test_a_run_counts_only_its_own_rounds() -> None:
    history = runs(api_error_rate="FFPP")  # rounds at 12:00:00 .. 12:00:03
    step_started = "2026-03-01T12:00:02.400000Z"
    # Rounds before the run started belong to an earlier step: they do not count.
    run = counted(history, started_at=step_started)
    assert run is not None and run.rounds == 1 and run.metrics[0].passed == 1
    assert last_round_at(run) == at(3)
    assert outcome(ANALYSIS, counted(history))[0] == "Failed"
    assert outcome(ANALYSIS, run, components=["api"])[1] == "latency on api has not passed yet"


def test_a_round_in_the_first_instant_of_a_run_counts() -> None:
    started = "2026-03-01T12:00:05.700000Z"
    first = runs(api_error_rate="F")[0].model_copy(update={"time": started})
    run = count(None, started, [first])
    assert run is not None and run.rounds == 1 and run.metrics[0].failed == 1
    # An old status wrote whole seconds: its run started before the cut, and a round
    # later in that second is the run's too.
    late = first.model_copy(update={"time": "2026-03-01T12:00:05.900000Z"})
    run = count(None, "2026-03-01T12:00:05Z", [late])
    assert run is not None and run.rounds == 1


def test_a_round_is_counted_once_however_often_it_is_given() -> None:
    round_ = runs(api_error_rate="F", api_latency="F")
    once = count(None, START, round_)
    assert count(once, START, round_) == once
    assert count(count(once, START, []), START, round_) == once


def test_a_new_run_starts_from_zero_and_never_recounts_the_last_round() -> None:
    round_ = runs(api_error_rate="F")
    old = count(None, "2026-03-01T11:59:00Z", round_)
    # The next step starts in the same look as the round that ended the previous one.
    new = count(old, round_[0].time, round_)
    assert new is not None and new.started_at == round_[0].time
    assert new.rounds == 0 and new.metrics == []
    assert outcome(ANALYSIS, new)[0] == "Running"
    assert count(old, None, round_) is None  # no run in progress, no counters


def test_counters_are_exact_over_many_rounds() -> None:
    """Far more rounds than status.analysis keeps: every failure still counts."""
    analysis = Analysis.model_validate(
        {"failureLimit": 3, "metrics": [{"name": "error-rate", "query": "q", "max": 0.01}]}
    )
    run = None
    for n in range(500):
        verdict: Verdict = "Fail" if n in (7, 170, 333, 499) else "Pass"
        m = Measurement(
            metric="error-rate",
            component="api",
            query="q",
            verdict=verdict,
            time=(T0 + datetime.timedelta(seconds=n)).isoformat(),
        )
        run = count(run, START, [m])
        assert outcome(analysis, run)[0] == ("Failed" if n == 499 else "Successful")
    assert run is not None and (run.rounds, run.metrics[0].failed) == (500, 4)


def test_consecutive_errors_are_counted_across_any_number_of_rounds() -> None:
    analysis = Analysis.model_validate(
        {
            "consecutiveErrorLimit": 30,
            "metrics": [{"name": "error-rate", "query": "q", "max": 0.01}],
        }
    )
    verdicts: list[Verdict] = ["Pass", *(["Error"] * 31)]
    run = None
    for n, verdict in enumerate(verdicts):
        m = Measurement(
            metric="error-rate",
            component="api",
            query="q",
            verdict=verdict,
            message="Prometheus unreachable",
            time=(T0 + datetime.timedelta(seconds=n)).isoformat(),
        )
        run = count(run, START, [m])
        expected = "Failed" if n == 31 else "Running" if n else "Successful"
        assert outcome(analysis, run)[0] == expected
    assert run is not None and run.metrics[0].consecutive_errors == 31
