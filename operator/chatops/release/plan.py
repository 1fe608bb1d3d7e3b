"""A decision under construction: the status so far, the actions, the events, what must
be looked at, and when to look again. Only the decision core uses it, inside one call of
`decide`, so its mutability never leaks."""

from __future__ import annotations

from typing import Any, Literal

from chatops.api.release_status import ChatReleaseStatus
from chatops.events import Event
from chatops.release.model import (
    Action,
    Color,
    CostWindow,
    Needs,
    SetHeaderRoute,
    SetTraffic,
    WebhookRequest,
)

BUSY = 2.0
"""Seconds between looks while something is moving."""
STEADY = 30.0
"""Seconds between looks when nothing is expected to change."""


class Plan:
    def __init__(self, status: ChatReleaseStatus) -> None:
        self.status = status
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.needs = Needs()
        self.requeue_after = STEADY
        self.analyzing: Color | None = None

    def update(self, **fields: Any) -> None:
        self.status = self.status.model_copy(update=fields)

    def act(self, action: Action) -> None:
        """Add `action`; a `SetTraffic` (a `SetHeaderRoute`) replaces any earlier one, as
        weights say what should be true: the last word of a decision is the weight, never
        a detour through the earlier one."""
        for kind in (SetTraffic, SetHeaderRoute):
            if isinstance(action, kind):
                self.actions = [a for a in self.actions if not isinstance(a, kind)]
        if action not in self.actions:
            self.actions.append(action)

    def event(
        self, type_: Literal["Normal", "Warning"], reason: str, message: str,
        **details: int | str,
    ) -> None:
        self.events.append(Event(type_, reason, message, details))

    def need(
        self,
        *,
        health: Color | None = None,
        measure: Color | None = None,
        reconnects: Color | None = None,
        cost: CostWindow | None = None,
        webhook: WebhookRequest | None = None,
    ) -> None:
        self.needs = Needs(
            health=health or self.needs.health,
            measure=measure or self.needs.measure,
            reconnects=reconnects or self.needs.reconnects,
            cost=cost or self.needs.cost,
            webhooks=(*self.needs.webhooks, webhook) if webhook else self.needs.webhooks,
        )

    def requeue(self, seconds: float) -> None:
        self.requeue_after = min(self.requeue_after, max(seconds, 0.5))
