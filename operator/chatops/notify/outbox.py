"""The deliveries waiting to be made, and when each is tried again: a bounded queue ordered
by when each is due, and the retry schedule. No threads and no clock of its own: the
dispatcher gives it the time, so a test runs a receiver's outage as a table.

Bounded, so a receiver that is away for hours costs a known amount of memory: a delivery
offered to a full outbox is dropped at once (the receiver misses it; the Event is still
in the cluster), never blocking the Event's poster.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Literal

from chatops.notify.message import Delivery


@dataclass(frozen=True)
class Retry:
    """Exponential backoff: `first` seconds after the first failed attempt, times `factor`
    after each further one, never more than `cap`; `attempts` in all, then it gives up.
    The defaults try 10 times over about 4 minutes (1, 2, 4 … 32, then 60 s apart)."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    attempts: int = 10

    @classmethod
    def parse(cls, text: str) -> Retry:
        """`FIRST,CAP,ATTEMPTS` (seconds, seconds, a count), as `--notify-retry` takes it;
        ValueError naming what is wrong."""
        parts = text.split(",")
        if len(parts) != 3:
            raise ValueError(f"{text!r} is not FIRST,CAP,ATTEMPTS (e.g. 1,60,10)")
        first, cap, attempts = float(parts[0]), float(parts[1]), int(parts[2])
        if not (0 < first <= cap and attempts >= 1):
            raise ValueError(f"{text!r}: want 0 < FIRST <= CAP seconds and ATTEMPTS >= 1")
        return cls(first=first, cap=cap, attempts=attempts)

    def window(self) -> float:
        """Seconds from a delivery's first attempt to its last: a receiver away longer
        misses what was offered when it went."""
        return sum(self.delay(n) or 0.0 for n in range(1, self.attempts))

    def delay(self, failed: int) -> float | None:
        """Seconds from the `failed`-th failed attempt to the next; None: no more."""
        if failed >= self.attempts:
            return None
        return float(min(self.first * self.factor ** (failed - 1), self.cap))


@dataclass(frozen=True)
class Pending:
    """A delivery in the outbox: when it was offered and is next due, how it went."""

    delivery: Delivery
    offered: float
    due: float
    failed: int = 0
    problem: str | None = None
    """Why the last attempt failed (naming the receiver by its label, never its URL)."""


Settled = Literal["delivered", "retry", "dropped"]


@dataclass
class Outbox:
    """Deliveries by when they are due; `limit` of them at most, counting those taken
    and not yet settled."""

    limit: int = 1000
    retry: Retry = field(default_factory=Retry)
    _heap: list[tuple[float, int, Pending]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _taken: int = 0

    def __len__(self) -> int:
        return len(self._heap) + self._taken

    def offer(self, delivery: Delivery, now: float) -> bool:
        """Queue `delivery`, due now; False (and nothing queued) when the outbox is full."""
        if len(self) >= self.limit:
            return False
        self._push(Pending(delivery, offered=now, due=now))
        return True

    def next_due(self) -> float | None:
        """When the earliest delivery is due; None when there is none."""
        return self._heap[0][0] if self._heap else None

    def take(self, now: float) -> Pending | None:
        """The earliest delivery due by `now`, to attempt; settle it afterwards."""
        if not self._heap or self._heap[0][0] > now:
            return None
        self._taken += 1
        return heapq.heappop(self._heap)[2]

    def settle(self, pending: Pending, problem: str | None, now: float) -> tuple[Settled, Pending]:
        """The attempt at a taken delivery ended (`problem` None: the receiver answered
        2xx): delivered, due again after the backoff, or dropped after its last attempt."""
        self._taken -= 1
        if problem is None:
            return "delivered", pending
        failed = pending.failed + 1
        wait = self.retry.delay(failed)
        after = Pending(pending.delivery, pending.offered, now + (wait or 0.0), failed, problem)
        if wait is None:
            return "dropped", after
        self._push(after)
        return "retry", after

    def drain(self) -> list[Pending]:
        """Everything still queued, removed (the operator is stopping)."""
        left = [p for _, _, p in self._heap]
        self._heap.clear()
        return left

    def _push(self, pending: Pending) -> None:
        heapq.heappush(self._heap, (pending.due, next(self._order), pending))
