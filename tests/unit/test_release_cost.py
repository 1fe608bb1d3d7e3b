"""The bookkeeping of what a release cost its users: which window is counted when, what
a count changes, and the operator's own metrics of it."""

from __future__ import annotations

import datetime

import pytest
from prometheus_client import REGISTRY

from chatops import clock, telemetry
from chatops.api.cost import CostQueries, ReleaseCost
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus, HistoryEntry, ScaleDown
from chatops.errors import MetricsUnavailable
from chatops.metrics import window as window_queries
from chatops.metrics.analysis import WindowContext
from chatops.release import cost as costs
from chatops.release.model import CostCount, CostWindow
from release_world import spec

T0 = datetime.datetime(2026, 12, 2, 6, 0, tzinfo=datetime.UTC)
SPEC = ChatReleaseSpec.model_validate(spec(cost={"settle": "10s"}))


def t(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def entry(cost: ReleaseCost) -> HistoryEntry:
    return HistoryEntry(revision="r1", result="RolledBack", started_at=cost.since,
                        finished_at=clock.rfc3339(t(60)), cost=cost)


OPEN = ReleaseCost(color="green", since=clock.rfc3339(T0))
DRAINING = ScaleDown(color="green", at=clock.rfc3339(t(60)))


@pytest.mark.parametrize(
    ("why", "status", "now", "window"),
    [
        ("a release in flight never counted: the figures so far, up to now",
         ChatReleaseStatus(cost=OPEN, canary_revision="r2"), 5,
         CostWindow("green", T0, t(5), "r2")),
        ("counted less than REFRESH ago: not again",
         ChatReleaseStatus(cost=OPEN.model_copy(update={"counted_at": clock.rfc3339(t(1))})),
         1 + costs.REFRESH - 1, None),
        ("ended but its color still drains: the window stays open, counted so far",
         ChatReleaseStatus(history=[entry(OPEN)], scale_down=DRAINING), 70,
         CostWindow("green", T0, t(70), "r1", "green")),
        ("closed, not settled: Prometheus may not have scraped the end yet",
         ChatReleaseStatus(history=[entry(OPEN.model_copy(
             update={"until": clock.rfc3339(t(80))}))]), 85, None),
        ("closed and settled: counted at its end, whatever the time now",
         ChatReleaseStatus(history=[entry(OPEN.model_copy(
             update={"until": clock.rfc3339(t(80))}))]), 95,
         CostWindow("green", T0, t(80), "r1", "green")),
        ("final: never counted again",
         ChatReleaseStatus(history=[entry(OPEN.model_copy(
             update={"until": clock.rfc3339(t(80)), "final": True}))]), 500, None),
    ],
)
def test_the_window_counted_now(
    why: str, status: ChatReleaseStatus, now: float, window: CostWindow | None
) -> None:
    _, due, _ = costs.account(status, SPEC, t(now), None)
    assert due == window


def test_the_window_closes_when_the_drain_is_over_and_the_final_count_waits_to_settle() -> None:
    status = ChatReleaseStatus(history=[entry(OPEN)])  # no scaleDown: nothing drains
    closed, due, settles = costs.account(status, SPEC, t(90), None)
    cost = closed.history[-1].cost
    assert cost is not None and cost.until == clock.rfc3339(t(90))
    assert due is None and settles == 10  # the operator looks again when it settles


def test_a_count_is_recorded_only_for_the_window_due_and_is_final_at_the_end() -> None:
    status = ChatReleaseStatus(history=[entry(OPEN.model_copy(
        update={"until": clock.rfc3339(t(80))}))])
    wrong = CostCount(CostWindow("green", T0, t(70), "r1", "green"), requests=1)
    kept, due, _ = costs.account(status, SPEC, t(95), wrong)
    assert kept.history[-1].cost == status.history[-1].cost and due is not None
    right = CostCount(due, requests=120, failed_requests=6, websockets_moved=4,
                      websockets_dropped=0)
    counted, again, _ = costs.account(status, SPEC, t(95), right)
    cost = counted.history[-1].cost
    assert cost is not None and again is None
    assert (cost.requests, cost.failed_requests, cost.final, cost.counted_until) == (
        120, 6, True, clock.rfc3339(t(80)))


def test_an_outage_keeps_what_was_known_and_says_why() -> None:
    known = OPEN.model_copy(update={"requests": 50, "failed_requests": 1,
                                    "counted_until": clock.rfc3339(t(5)),
                                    "counted_at": clock.rfc3339(t(5))})
    status = ChatReleaseStatus(cost=known)
    _, due, _ = costs.account(status, SPEC, t(5 + int(costs.REFRESH) + 5), None)
    assert due is not None
    down = CostCount(due, problem="requests: http://prometheus: unreachable")
    after, _, _ = costs.account(status, SPEC, t(5 + int(costs.REFRESH) + 5), down)
    cost = after.cost
    assert cost is not None and cost.requests == 50 and cost.counted_until == clock.rfc3339(t(5))
    assert cost.problem == "requests: http://prometheus: unreachable" and not cost.final


def _sample(name: str, revision: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": "ns", "name": "costly",
                                            "revision": revision})


def test_the_operator_exports_the_cost_and_no_series_for_an_unknown_figure() -> None:
    cost = OPEN.model_copy(update={"requests": 300, "failed_requests": None, "final": True})
    status = ChatReleaseStatus(history=[entry(cost)])
    telemetry.record_release("ns", "costly", status, [])
    assert _sample("chatops_release_cost_requests", "r1") == 300
    assert _sample("chatops_release_cost_failed_requests", "r1") is None
    assert _sample("chatops_release_cost_final", "r1") == 1
    live = ChatReleaseStatus(canary_revision="r2", history=[entry(cost)],
                             cost=OPEN.model_copy(update={"requests": 7}))
    telemetry.record_release("ns", "costly", live, [])
    assert _sample("chatops_release_cost_requests", "r2") == 7
    assert _sample("chatops_release_cost_requests", "r1") is None  # one release's figures
    telemetry.forget_release("ns", "costly")
    assert _sample("chatops_release_cost_requests", "r2") is None


class Answers:
    """A Prometheus answering each query by the Service it names; `down` for an outage."""

    def __init__(self, values: dict[str, float | None], down: str | None = None) -> None:
        self.values, self.down, self.asked = values, down, []  # type: ignore[var-annotated]

    def query(self, promql: str) -> float | None:
        return self.query_at(promql, T0)

    def query_at(self, promql: str, at: datetime.datetime) -> float | None:
        self.asked.append((promql, at))
        if self.down and self.down in promql:
            raise MetricsUnavailable("http://prometheus", "connection refused")
        return next((v for s, v in self.values.items() if f'service="{s}"' in promql), None)


def contexts(new: str, drained: str | None) -> list[tuple[WindowContext, frozenset[str]]]:
    out = []
    for color in ("blue", "green"):
        answers = {"websockets_dropped"}
        answers |= {"requests", "failed_requests"} if color == new else set()
        answers |= {"websockets_moved"} if color == drained else set()
        out.append((WindowContext(f"chat-api-{color}", "ns", "api", color, "r", "60s"),
                    frozenset(answers)))
    return out


def test_each_figure_is_asked_of_the_colors_it_belongs_to_at_the_windows_end() -> None:
    prometheus = Answers({"chat-api-green": 10.4, "chat-api-blue": 3.0})
    figures, problem = window_queries.count(prometheus, CostQueries(),
                                            contexts("green", "blue"), t(80))
    # requests and failures of the new color, moved of the drained one, dropped of both
    assert figures == {"requests": 10, "failed_requests": 10, "websockets_moved": 3,
                       "websockets_dropped": 13}
    assert problem is None and {at for _, at in prometheus.asked} == {t(80)}
    assert all("[60s]" in q for q, _ in prometheus.asked)


def test_no_series_counts_zero_and_an_outage_stops_the_count_unknown() -> None:
    figures, problem = window_queries.count(Answers({}), CostQueries(), contexts("green", None),
                                            t(80))
    assert figures == dict.fromkeys(window_queries.FIGURES, 0) and problem is None
    down = Answers({"chat-api-green": 5.0}, down="http_requests_total")
    figures, problem = window_queries.count(down, CostQueries(), contexts("green", None), t(80))
    assert figures == dict.fromkeys(window_queries.FIGURES, None)
    assert problem is not None and problem.startswith("requests: ") and "refused" in problem
