"""The sweep: every release's analysis checked between its rounds, with one query per
metric template for all of them.

A release measures at its `analysis.interval`; a bad canary would keep its users'
requests failing until the next round. The sweep asks, every few seconds (`chatops run
--sweep-interval`, best the Prometheus scrape interval), each query template that
releases in an analysis share, once for all of them (`metrics/grouped.py`), and judges
each release's metrics on the answers as its own round would. A metric out of bounds
wakes the release, and its next round is taken at once instead of at the interval: the
round, counted as any other, is what fails the release, so the limits (`failureLimit`)
keep their meaning and only come sooner. The answers also serve the rounds taken
before the next sweep, so a release's rounds ask Prometheus nothing the sweep asked:
the queries per second grow with the templates, not with the releases.

Templates that cannot be grouped (`grouping` is None) and `web` metrics are left to
each release's own rounds.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from chatops.api.analysis import Analysis
from chatops.api.common import seconds
from chatops.errors import MetricsUnavailable
from chatops.metrics import grouped
from chatops.metrics.analysis import QueryContext, TrafficSeen, judge, render
from chatops.metrics.provider import WindowProvider

log = logging.getLogger("chatops.sweep")
CHUNK = 100
"""Contexts per grouped query: a thousand releases make ten queries of a few KiB each,
not one URL too long for a proxy in front of Prometheus."""

Source = tuple[str, str]
"""A Prometheus: its address and a digest of its token (never the token)."""
Answers = Mapping[tuple[Source, str], float | None]
"""A release's rendered query, on its Prometheus, and what it answered in the sweep."""


class SeriesProvider(WindowProvider, Protocol):
    """A provider that also answers with every series of a query."""

    def series(
        self, promql: str, at: datetime.datetime | None = None
    ) -> list[tuple[dict[str, str], float]]:
        """Each series' labels and value (at `at`, else now); raises
        `MetricsUnavailable` as `query` does."""
        ...


def source(address: str, token: str | None) -> Source:
    digest = hashlib.sha256(token.encode()).hexdigest()[:16] if token else ""
    return (address, digest)


@dataclass(frozen=True)
class Watched:
    """One release's analysis in progress, as its last look left it."""

    release: tuple[str, str]
    """(namespace, name)."""
    source: Source
    provider: SeriesProvider
    analysis: Analysis
    versions: tuple[tuple[QueryContext, QueryContext | None], ...]
    """Each component's version judged, and its stable beside it (`compareToStable`)."""


@dataclass(frozen=True)
class Swept:
    """What one sweep learned."""

    at: datetime.datetime
    answers: Answers
    breached: frozenset[tuple[str, str]]
    """Releases with a metric out of bounds: their next round is due now."""
    queries: int
    every: float = 0.0
    """Seconds between sweeps."""


def templates(analysis: Analysis) -> list[str]:
    """The Prometheus query templates of an analysis, the minimum-traffic one included."""
    queries = [m.query for m in analysis.metrics if m.query is not None]
    if analysis.minimum_traffic is not None:
        queries.append(analysis.minimum_traffic.query)
    return queries


def sweep(
    watched: Sequence[Watched], now: datetime.datetime, every: float = 0.0
) -> Swept:
    """Ask every grouped template once per Prometheus (and `CHUNK` of contexts), then
    judge each release on the answers: a breach of one whose `interval` is longer than
    the sweep's (`every` seconds) brings its next round forward; one measured as often
    as the sweep already is gains nothing, and its failures would only be counted
    twice as fast."""
    asked: dict[tuple[Source, str], list[QueryContext]] = {}
    providers: dict[Source, SeriesProvider] = {}
    for w in watched:
        providers.setdefault(w.source, w.provider)
        judged = [j for j, _ in w.versions]
        stables = [s for _, s in w.versions if s is not None]
        compared = {m.query for m in w.analysis.metrics if m.compare_to_stable}
        for template in templates(w.analysis):
            # the stable version is asked only where a metric compares with it
            contexts = judged + stables if template in compared else judged
            asked.setdefault((w.source, template), []).extend(contexts)
    answers: dict[tuple[Source, str], float | None] = {}
    queries = 0
    for (where, template), contexts in asked.items():
        grouping = grouped.grouping(template)
        if grouping is None:
            continue
        unique = list(dict.fromkeys(contexts))
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start:start + CHUNK]
            promql = grouped.query(grouping, chunk)
            if promql is None:
                continue
            queries += 1
            try:
                series = providers[where].series(promql)
            except MetricsUnavailable as err:  # the rounds ask, and say it
                log.debug("sweep: %s", err)
                continue
            for query, value in grouped.answers(grouping, chunk, series).items():
                answers[(where, query)] = value
    breached = frozenset(w.release for w in watched
                         if seconds(w.analysis.interval) > every and breaches(w, answers))
    return Swept(now, answers, breached, queries, every)


def breaches(watched: Watched, answers: Answers) -> bool:
    """Whether a metric that decides (not `dryRun`) fails on the sweep's answers, judged
    as the release's round judges it; one without an answer decides nothing here."""
    analysis = watched.analysis

    def answer(template: str, context: QueryContext) -> tuple[bool, float | None]:
        key = (watched.source, render(template, context))
        return key in answers, answers.get(key)

    for judged, stable in watched.versions:
        traffic = None
        if analysis.minimum_traffic is not None:
            known, requests = answer(analysis.minimum_traffic.query, judged)
            if not known:
                continue
            traffic = TrafficSeen(requests, analysis.minimum_traffic.min)
        for metric in analysis.metrics:
            if metric.query is None or metric.dry_run:
                continue
            known, value = answer(metric.query, judged)
            baseline: float | None = None
            if metric.compare_to_stable and stable is not None:
                known_stable, baseline = answer(metric.query, stable)
                known = known and known_stable
            if known and judge(metric, value, traffic, baseline)[0] == "Fail":
                return True
    return False


def since(
    swept: Swept | None, last_round: datetime.datetime | None, analysis: Analysis | None = None
) -> Answers:
    """The answers of `swept` a round may take: only a sweep taken after the release's
    last round, so no round is judged on the samples the one before it was, and only
    for a release measured less often than the sweep runs (`every`): one measured as
    often asks Prometheus itself, and its first rounds after a step are never judged
    on a sweep taken before the new pods' first scrapes."""
    if swept is None or (last_round is not None and swept.at <= last_round):
        return {}
    if analysis is not None and seconds(analysis.interval) <= swept.every:
        return {}
    return swept.answers


class Answered:
    """A provider that answers from a recent sweep what the sweep asked, and asks its
    Prometheus the rest."""

    def __init__(self, provider: SeriesProvider, where: Source, answers: Answers) -> None:
        self._provider, self._source, self._answers = provider, where, answers

    def query(self, promql: str) -> float | None:
        key = (self._source, promql)
        if key in self._answers:
            return self._answers[key]
        return self._provider.query(promql)

    def query_at(self, promql: str, at: datetime.datetime) -> float | None:
        return self._provider.query_at(promql, at)
