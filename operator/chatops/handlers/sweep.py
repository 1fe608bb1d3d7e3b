"""The sweep's loop (`metrics/sweep.py`): every `--sweep-interval` seconds, the analyses
in progress are checked with one query per template, and a release out of bounds is
woken to take its next round at once.

What it keeps is memory only, rebuilt from every look: a release's look says which
analysis goes on (`runner.Look.watch`), the daemon hands it here. An operator that
restarts sweeps again once each release has looked once; until then the rounds come at
their interval, as without a sweep.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
from typing import Any

from chatops import clock, telemetry
from chatops.adapters.watched import Seen
from chatops.handlers import watched as wakes
from chatops.metrics.sweep import Swept, Watched, sweep

log = logging.getLogger("chatops.sweep")
INTERVAL = 2.0
"""Seconds between sweeps; 0 turns the sweep off (`chatops run --sweep-interval`)."""


def configure(interval: float) -> None:
    global INTERVAL
    INTERVAL = interval


class Sweeper:
    """The analyses to sweep, the last sweep's answers, the breaches not yet looked at."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # a thread of its own: behind hundreds of queued looks in theirs, the sweep came
        # late and its answers were too old for the rounds
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sweep")
        self.watched: dict[tuple[str, str], Watched] = {}
        self.last: Swept | None = None
        self.breached: set[tuple[str, str]] = set()

    def watch(self, release: tuple[str, str], analysis: Watched | None) -> None:
        if analysis is None or not self.interval:
            self.watched.pop(release, None)
            self.breached.discard(release)
        else:
            self.watched[release] = analysis

    def fill(self, seen: Seen, release: tuple[str, str], now: datetime.datetime) -> Seen:
        """`seen` with the last sweep's answers, if at most two intervals old (a round
        may take a value a few seconds old, never one from before the sweep before), what
        it watches of the release, and whether the release breached since its last look."""
        seen.swept = self._fresh(now)
        seen.watching = self.watched.get(release)
        seen.breach = release in self.breached
        self.breached.discard(release)
        return seen

    def _fresh(self, now: datetime.datetime) -> Swept | None:
        last = self.last
        if last is None or (now - last.at).total_seconds() > 2 * self.interval:
            return None
        return last

    async def run(self, memo: Any) -> None:
        while self.interval:
            await asyncio.sleep(self.interval)
            if not self.watched:
                self.last = None
                continue
            try:
                swept = await asyncio.get_running_loop().run_in_executor(
                    self.thread, sweep, list(self.watched.values()), clock.now(), self.interval
                )
            except Exception as err:  # a sweep is a shortcut: the rounds still come
                log.warning("sweep failed: %s: %s", type(err).__name__, err)
                continue
            telemetry.sweep_queries.inc(swept.queries)
            self.last = swept
            for release in swept.breached & self.watched.keys():
                telemetry.sweep_breaches.inc()
                self.breached.add(release)
                wakes.wake(memo, *release)


def start(memo: Any) -> None:
    memo["sweep"] = sweeper = Sweeper(INTERVAL)
    memo["sweeping"] = asyncio.create_task(sweeper.run(memo))


def stop(memo: Any) -> None:
    memo["sweeping"].cancel()
    memo["sweep"].thread.shutdown(wait=False)
