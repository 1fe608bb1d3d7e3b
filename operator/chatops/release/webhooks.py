"""Release gates as webhooks, decided purely: which webhook is due, what its answer means
for the release, what a rollback still owes.

A decision that needs a webhook's answer asks for it in `Needs.webhooks`, with the payload
to send; the runner POSTs it and decides again with the answer in
`Observation.webhooks`. Each answer is kept in `status.webhooks` per webhook and revision,
so a passed gate is never called again for that release, a failed one is called again
only `RETRY` seconds after the last call, and a restarted operator resumes from there.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from chatops import clock
from chatops.api.common import now_rfc3339
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.api.webhooks import Webhook, WebhookCall, WebhookType
from chatops.release.model import Observation, WebhookRequest
from chatops.release.plan import Plan

RETRY = 5.0
"""Seconds from a failed call to the next one."""
PAYLOAD_VERSION = "chatops.dev/webhook/v1"
KEPT = 8
"""Calls `status.webhooks` keeps (its maxItems), newest last: the release's gates (at most
4 webhooks) and the rollback webhooks still owed; an older owed call gives way."""
GateState = Literal["passed", "waiting", "failed"]


def of_type(spec: ChatReleaseSpec, type_: WebhookType) -> list[Webhook]:
    return [w for w in spec.webhooks if w.type == type_]


def _find(calls: list[WebhookCall], name: str, revision: str) -> WebhookCall | None:
    return next((c for c in calls if c.name == name and c.revision == revision), None)


def _put(calls: list[WebhookCall], call: WebhookCall) -> list[WebhookCall]:
    kept = [c for c in calls if not (c.name == call.name and c.revision == call.revision)]
    return [*kept, call][-KEPT:]


def payload(
    obs: Observation, status: ChatReleaseStatus, hook: Webhook, revision: str
) -> dict[str, Any]:
    """What a webhook is POSTed (`chatops.dev/webhook/v1`), documented in README."""
    ended = next((h for h in reversed(status.history) if h.revision == revision), None)
    in_flight = revision == status.canary_revision
    return {
        "apiVersion": PAYLOAD_VERSION,
        "type": hook.type,
        "webhook": hook.name,
        "release": obs.name,
        "namespace": obs.namespace,
        "revision": revision,
        # the images in short form, as status.canaryVersion writes them
        "version": status.canary_version if in_flight
        else ",".join(ended.images.values()) if ended else None,
        "phase": status.phase,
        "step": status.current_step if in_flight else None,
        "weight": status.canary_weight if in_flight else None,
        "message": status.message if in_flight or ended is None else ended.message,
        "metadata": dict(hook.metadata),
    }


def _answered(
    plan: Plan, hook: Webhook, call: WebhookCall | None, revision: str, answer: str | None,
    now: datetime.datetime,
) -> WebhookCall:
    """The call record after `answer` (None: 2xx), and its Event: every pass, and a
    failure when it is the first or says something new."""
    before = call or WebhookCall(name=hook.name, type=hook.type, revision=revision)
    failed = answer is not None
    after = before.model_copy(
        update={
            "passed": not failed,
            "calls": before.calls + 1,
            "failures": before.failures + int(failed),
            "last_called_at": now_rfc3339(now),
            "message": answer if failed else "answered 2xx",
        }
    )
    if not failed:
        plan.event("Normal", "WebhookPassed", f"{hook.type} webhook {hook.name} answered 2xx")
    elif before.message != answer:
        plan.event(
            "Warning", "WebhookFailed", f"{hook.type} webhook {hook.name} failed: {answer}"
        )
    return after


def _due(plan: Plan, obs: Observation, call: WebhookCall | None) -> bool:
    """Whether a call may go now; if not, the plan looks again when it may."""
    if call is None or call.last_called_at is None:
        return True
    due = clock.parse(call.last_called_at) + datetime.timedelta(seconds=RETRY)
    if obs.now >= due:
        return True
    plan.requeue((due - obs.now).total_seconds())
    return False


def gate(obs: Observation, plan: Plan, type_: WebhookType) -> tuple[GateState, str]:
    """The release's `type_` webhooks (pre-rollout or confirm-promotion) for the revision
    in flight: passed when every one answered 2xx; failed when a pre-rollout webhook
    failed more than its failureLimit; waiting otherwise, with what each said."""
    revision = plan.status.canary_revision
    assert revision is not None
    calls = list(plan.status.webhooks)
    waiting: list[str] = []
    failed: list[str] = []
    for hook in of_type(obs.spec, type_):
        call = _find(calls, hook.name, revision)
        key = (hook.name, revision)
        if key in obs.webhooks:
            call = _answered(plan, hook, call, revision, obs.webhooks[key], obs.now)
            calls = _put(calls, call)
        if call is not None and call.passed:
            continue
        if type_ == "pre-rollout" and call is not None and call.failures > hook.failure_limit:
            failed.append(f"{hook.name} failed {call.failures} times: {call.message}")
            continue
        if key not in obs.webhooks and _due(plan, obs, call):
            plan.need(webhook=WebhookRequest(hook, revision, payload(obs, plan.status, hook,
                                                                     revision)))
        waiting.append(f"{hook.name}: {call.message}" if call else f"{hook.name}: calling")
    plan.update(webhooks=calls)
    if failed:
        return "failed", "; ".join(failed)
    return ("waiting", "; ".join(waiting)) if waiting else ("passed", "")


def confirm(plan: Plan, spec: ChatReleaseSpec, why: str) -> None:
    """A human promoted: every confirm-promotion webhook of the revision counts as passed."""
    revision = plan.status.canary_revision
    assert revision is not None
    calls = list(plan.status.webhooks)
    for hook in of_type(spec, "confirm-promotion"):
        call = _find(calls, hook.name, revision) or WebhookCall(
            name=hook.name, type=hook.type, revision=revision
        )
        if not call.passed:
            calls = _put(calls, call.model_copy(update={"passed": True, "message": why}))
    plan.update(webhooks=calls)


def _owed(call: WebhookCall, spec: ChatReleaseSpec) -> Webhook | None:
    """The rollback webhook `call` still has to reach, if it does."""
    hook = next((w for w in of_type(spec, "rollback") if w.name == call.name), None)
    if call.type != "rollback" or call.passed or hook is None:
        return None
    return hook if call.calls <= hook.failure_limit else None


def started(calls: list[WebhookCall], spec: ChatReleaseSpec) -> list[WebhookCall]:
    """A release starts: the gates are called afresh (a retried revision too); rollback
    webhooks owed for an earlier release are still called."""
    return [c for c in calls if _owed(c, spec) is not None]


def rolled_back(
    calls: list[WebhookCall], spec: ChatReleaseSpec, revision: str
) -> list[WebhookCall]:
    """`revision` was rolled back: each rollback webhook is owed a call for it."""
    owed = [WebhookCall(name=w.name, type=w.type, revision=revision)
            for w in of_type(spec, "rollback")]
    kept = [c for c in calls if c.revision != revision or c.type != "rollback"]
    return [*kept, *owed][-KEPT:]


def settle_rollbacks(obs: Observation, plan: Plan, traffic_back: bool) -> None:
    """Call the rollback webhooks still owed, once traffic is back on the stable version
    (`traffic_back`); record their answers. Never holds anything else."""
    calls = list(plan.status.webhooks)
    for call in plan.status.webhooks:
        hook = _owed(call, obs.spec)
        if hook is None:
            continue
        key = (hook.name, call.revision)
        if key in obs.webhooks:
            calls = _put(calls, _answered(plan, hook, call, call.revision, obs.webhooks[key],
                                          obs.now))
        elif traffic_back and _due(plan, obs, call):
            plan.need(webhook=WebhookRequest(
                hook, call.revision, payload(obs, plan.status, hook, call.revision)
            ))
    plan.update(webhooks=calls)
