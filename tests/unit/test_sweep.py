"""The sweep (`metrics/sweep.py`, `metrics/grouped.py`): which templates are asked once
for every release, how the answers map back, what counts as a breach, and what a
breach does to a release: its next round comes at once, and the limits keep their
meaning. (Grouped answers equal each release's own query on the real Prometheus:
tests/e2e/test_prometheus_provider.py.)"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import replace

import pytest

from chatops import clock
from chatops.api.analysis import DEFAULT_METRICS, Analysis, MinimumTraffic
from chatops.metrics import grouped
from chatops.metrics.analysis import QueryContext, render
from chatops.metrics.sweep import Swept, Watched, breaches, since, source, sweep
from release_world import World, released, spec

SEL = 'namespace="{{namespace}}",service="{{service}}"'
GREEN = QueryContext("chat-api-green", "shop", "api", "green", "r2")
BLUE = QueryContext("chat-api-blue", "shop", "api", "blue", "r1")
OTHER = QueryContext("chat-api-green", "chat.v2", "api", "green", "r9")


def test_the_default_queries_are_grouped_by_the_labels_they_select_on() -> None:
    for template in [*(m.query for m in DEFAULT_METRICS if m.query), MinimumTraffic().query]:
        g = grouped.grouping(template)
        assert g is not None, template
        assert g.labels == ("namespace", "revision", "service")
        assert "vector(" not in g.printed and g.printed.count(" by (") >= 1


@pytest.mark.parametrize(
    "template",
    [
        f"sum(rate(x{{{SEL}}}[1m])) / sum(rate(y[1m]))",  # a share of everyone's traffic
        f"sum(x{{{SEL}}}) / on(service) sum(y{{{SEL}}})",
        f"sum(x{{{SEL}}}) or vector(0)",
        f"scalar(sum(x{{{SEL}}}))",
        f'label_replace(x{{{SEL}}}, "service", "a", "", "")',
        'sum(x{service=~"{{service}}.*"})',
        'sum(x{service="{{service}}"}) + sum(y{namespace="{{namespace}}"})',
        f"sum without (service) (x{{{SEL}}})",
        f"max_over_time(sum(x{{{SEL}}})[5m:])",
        'sum(x{service="{{service}}",code=~"5\\\\d\\\\d"})',  # an escape the printer loses
        'sum(x{job="fixed"})',
        'sum(x{service="{{service}}"}) > {{namespace}}',
    ],
)
def test_templates_whose_grouping_would_change_an_answer_are_left_to_each_release(
    template: str,
) -> None:
    assert grouped.grouping(template) is None


def test_one_query_asks_for_every_release_and_each_gets_its_own_series() -> None:
    template = f'sum(rate(http_requests_total{{{SEL},code=~"5.."}}[1m]))'
    g = grouped.grouping(template)
    assert g is not None
    promql = grouped.query(g, [GREEN, BLUE, OTHER])
    assert promql is not None
    assert 'namespace=~"chat\\\\.v2|shop"' in promql
    assert 'service=~"chat-api-blue|chat-api-green"' in promql
    assert "sum by (namespace, service) (" in promql
    answers = grouped.answers(g, [GREEN, BLUE, OTHER], [
        ({"namespace": "shop", "service": "chat-api-green"}, 0.05),
        ({"namespace": "chat.v2", "service": "chat-api-green"}, 0.5),
        ({"namespace": "chat.v2", "service": "chat-api-blue"}, 9.0),  # nobody asked for it
    ])
    assert answers == {
        render(template, GREEN): 0.05,
        render(template, OTHER): 0.5,
        render(template, BLUE): None,  # no series: no data, as its own query says
    }


def test_a_release_whose_own_query_returns_several_series_gets_no_answer() -> None:
    g = grouped.grouping(f"rate(x{{{SEL}}}[1m])")
    assert g is not None
    answers = grouped.answers(g, [GREEN], [
        ({"namespace": "shop", "service": "chat-api-green", "pod": "a"}, 1.0),
        ({"namespace": "shop", "service": "chat-api-green", "pod": "b"}, 2.0),
    ])
    assert answers == {}  # its round asks, and is told the query is not one number


def test_values_that_cannot_go_in_a_regex_leave_the_template_ungrouped() -> None:
    g = grouped.grouping(f"sum(x{{{SEL}}})")
    assert g is not None
    odd = QueryContext('a"b', "shop", "api", "green", "r")
    assert grouped.query(g, [GREEN, odd]) is None


ANALYSIS = Analysis.model_validate({
    "minimumTraffic": {"min": 10},
    "metrics": [
        {"name": "errors", "query": f"sum(errors{{{SEL}}})", "max": 0.01},
        {"name": "trial", "query": f"sum(trial{{{SEL}}})", "max": 0.01, "dryRun": True},
        {"name": "latency", "query": f"sum(latency{{{SEL}}})", "max": 1.2,
         "compareToStable": True},
    ],
})
WHERE = source("http://prometheus", None)


def _watched() -> Watched:
    return Watched(("shop", "chat"), WHERE, None, ANALYSIS, ((GREEN, BLUE),))  # type: ignore[arg-type]


def _answers(**values: float | None) -> dict[tuple[tuple[str, str], str], float | None]:
    """Answers as the sweep keeps them, green's unless a name ends in `_blue`."""
    out = {}
    for name, value in values.items():
        metric, _, color = name.partition("_")
        context = BLUE if color == "blue" else GREEN
        template = (ANALYSIS.minimum_traffic.query if metric == "traffic"  # type: ignore[union-attr]
                    else f"sum({metric}{{{SEL}}})")
        out[(WHERE, render(template, context))] = value
    return out


def test_a_breach_is_a_deciding_metric_failing_as_its_round_would_judge_it() -> None:
    enough = {"traffic": 50.0, "latency": 0.1, "latency_blue": 0.1}
    assert breaches(_watched(), _answers(**enough, errors=0.05))
    assert not breaches(_watched(), _answers(**enough, errors=0.001))
    # too little traffic is inconclusive, never a breach
    assert not breaches(_watched(), _answers(**{**enough, "traffic": 3.0}, errors=0.05))
    # a dryRun metric failing decides nothing
    assert not breaches(_watched(), _answers(**enough, errors=0.0, trial=0.9))
    # compareToStable: 0.3 is three times stable's 0.1, over 1.2
    assert breaches(_watched(), _answers(**{**enough, "latency": 0.3}, errors=0.0))
    # an answer the sweep does not have (another Prometheus, no grouping) is no breach
    assert not breaches(_watched(), {})


def _until(world: World, done: Callable[[World], bool]) -> None:
    """Tick, a second at most at a time, until `done`: no round comes early by a clock
    that jumped to it."""
    for _ in range(300):
        if done(world):
            return
        decision = world.tick(advance=False)
        world.now += datetime.timedelta(seconds=min(decision.requeue_after, 1.0))
    raise AssertionError(world.status.message)


def _canary(**analysis: object) -> World:
    """A release at its 10 % step, its first round taken (passed), the next 60 s away."""
    body = spec()
    body["analysis"].update({"interval": "60s", **analysis})
    world = released(World(body))
    world.release("1.1")
    _until(world, lambda w: w.status.canary_weight == 10 and bool(
        w.status.analysis_run and w.status.analysis_run.rounds))
    return world


def _rolling_back(world: World) -> bool:
    return "rolling back" in (world.status.message or "") or world.status.phase == "RolledBack"


def test_a_breach_brings_the_next_round_forward_and_a_failing_canary_rolls_back_at_once() -> None:
    world = _canary()
    assert world.tick(advance=False).analyzing == "green"
    world.prometheus.values["green"] = 0.05
    world.now += datetime.timedelta(seconds=2)  # the next round is 58 s away
    world.tick(advance=False)
    assert world.status.phase == "Progressing"  # no breach seen: no round yet
    world.breach = True
    decision = world.tick(advance=False)
    assert _rolling_back(world), world.status.message
    assert "error-rate on api failed 1 time(s), more than failureLimit 0" in (
        world.status.message or "")
    assert decision.analyzing is None  # nothing for the sweep to watch any more
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}


def test_the_failure_limit_still_counts_rounds_they_only_come_sooner() -> None:
    world = _canary(failureLimit=2)
    world.prometheus.values["green"] = 0.05
    for n in (1, 2):
        world.now += datetime.timedelta(seconds=1)
        world.breach = True
        world.tick(advance=False)
        assert not _rolling_back(world), (n, world.status.message)
    world.now += datetime.timedelta(seconds=1)
    world.breach = True
    world.tick(advance=False)
    assert _rolling_back(world)
    assert "failed 3 time(s), more than failureLimit 2" in (world.status.message or "")


def test_no_breach_round_before_the_initial_delay() -> None:
    body = spec()
    body["analysis"].update({"interval": "60s", "initialDelay": "30s"})
    world = released(World(body))
    world.release("1.1")
    _until(world, lambda w: w.status.canary_weight == 10)
    world.prometheus.values["green"] = 0.05
    world.breach = True
    world.tick(advance=False)
    assert not _rolling_back(world) and not (
        world.status.analysis_run and world.status.analysis_run.rounds)
    _until(world, _rolling_back)  # the first round, at the end of the delay, fails
    started = world.status.analysis_started_at
    assert started is not None
    assert world.now >= clock.parse(started) + datetime.timedelta(seconds=30)


def test_a_round_takes_only_a_sweep_newer_than_the_round_before_it() -> None:
    at = datetime.datetime(2026, 12, 7, 12, 0, 0, tzinfo=datetime.UTC)
    swept = Swept(at, {(WHERE, "q"): 0.5}, frozenset(), 1)
    assert since(swept, None) == {(WHERE, "q"): 0.5}
    assert since(swept, at - datetime.timedelta(seconds=1)) == {(WHERE, "q"): 0.5}
    # the last round came after the sweep (a release measuring every second, the sweep
    # every two): its next round asks Prometheus, never judges the same samples again
    assert since(swept, at) == {}
    assert since(swept, at + datetime.timedelta(seconds=1)) == {}
    assert since(None, None) == {}


class _Recorded:
    """Prometheus as a table of answers to the grouped queries: every series it holds,
    whatever the query (the grouping is tested above; this is the sweep's bookkeeping)."""

    def __init__(self, series: list[tuple[dict[str, str], float]]) -> None:
        self.held, self.asked = series, []  # type: ignore[var-annotated]

    def series(self, promql: str, at: object = None) -> list[tuple[dict[str, str], float]]:
        self.asked.append(promql)
        return self.held

    def query(self, promql: str) -> float | None:
        raise AssertionError("the sweep asks grouped queries only")

    query_at = query


def test_one_query_per_template_for_every_release_and_only_slow_ones_are_woken() -> None:
    analysis = Analysis.model_validate({
        "interval": "30s",
        "metrics": [{"name": "errors", "query": f"sum(errors{{{SEL}}})", "max": 0.01}],
    })
    fast = analysis.model_copy(update={"interval": "2s"})
    releases = [(f"ns{i}", "chat") for i in range(250)]
    held = [({"namespace": ns, "service": "chat-api-green"}, 0.5) for ns, _ in releases]
    prometheus = _Recorded(held)
    watched = [
        Watched(r, WHERE, prometheus, fast if i % 2 else analysis,  # type: ignore[arg-type]
                ((replace(GREEN, namespace=r[0]), None),))
        for i, r in enumerate(releases)
    ]
    swept = sweep(watched, datetime.datetime.now(datetime.UTC), every=2.0)
    assert swept.queries == len(prometheus.asked) == 3  # 250 releases, 100 a query
    assert len(swept.answers) == 250
    # every release fails; only those measured less often than the sweep are woken
    assert swept.breached == {r for i, r in enumerate(releases) if i % 2 == 0}


def test_a_release_measured_as_often_as_the_sweep_asks_prometheus_itself() -> None:
    at = datetime.datetime(2026, 12, 7, 12, 0, 0, tzinfo=datetime.UTC)
    swept = Swept(at, {(WHERE, "q"): 0.5}, frozenset(), 1, every=2.0)
    slow = ANALYSIS.model_copy(update={"interval": "30s"})
    fast = ANALYSIS.model_copy(update={"interval": "1s"})
    assert since(swept, None, slow) == {(WHERE, "q"): 0.5}
    assert since(swept, None, fast) == {}


def test_each_prometheus_is_asked_for_its_own_releases_and_answers_only_them() -> None:
    """Two Prometheus (a second address, or the same with another token: a tenant) hold
    different series for releases of the same names: each is asked once per template,
    for its own releases only, and each release is judged on its own server's answer."""
    analysis = Analysis.model_validate({
        "interval": "30s",
        "metrics": [{"name": "errors", "query": f"sum(errors{{{SEL}}})", "max": 0.01}],
    })
    servers = {
        source("http://prometheus-a", None): 0.5,  # failing there
        source("http://prometheus-b", None): 0.0,
        source("http://prometheus-a", "tenant-token"): 0.0,
    }
    assert len(servers) == 3, "a token makes another source; the token is never kept"
    assert all("tenant-token" not in "".join(where) for where in servers)
    recorded = {where: _Recorded([({"namespace": "shop", "service": "chat-api-green"}, value)])
                for where, value in servers.items()}
    watched = [
        Watched((f"shop-{i}", "chat"), where, recorded[where], analysis,  # type: ignore[arg-type]
                ((GREEN, None),))
        for i, where in enumerate(servers)
    ]
    swept = sweep(watched, datetime.datetime.now(datetime.UTC), every=2.0)
    assert [len(r.asked) for r in recorded.values()] == [1, 1, 1]
    rendered = render(f"sum(errors{{{SEL}}})", GREEN)
    assert {where: swept.answers[(where, rendered)] for where in servers} == servers
    assert swept.breached == {("shop-0", "chat")}


def test_the_stable_version_is_swept_only_for_a_metric_that_compares_with_it() -> None:
    plain = Analysis.model_validate({
        "interval": "30s",
        "metrics": [{"name": "errors", "query": f"sum(errors{{{SEL}}})", "max": 0.01}],
    })
    compared = Analysis.model_validate({
        "interval": "30s",
        "metrics": [{"name": "errors", "query": f"sum(errors{{{SEL}}})", "max": 1.5,
                     "compareToStable": True}],
    })
    for analysis, queries in ((plain, 2), (compared, 3)):  # 150 or 300 contexts, 100 a query
        prometheus = _Recorded([])
        watched = [
            Watched((f"ns{i}", "chat"), WHERE, prometheus, analysis,  # type: ignore[arg-type]
                    ((replace(GREEN, namespace=f"ns{i}"), replace(BLUE, namespace=f"ns{i}")),))
            for i in range(150)
        ]
        assert sweep(watched, datetime.datetime.now(datetime.UTC)).queries == queries
