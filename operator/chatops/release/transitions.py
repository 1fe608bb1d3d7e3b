"""The transitions every strategy shares: start a release, promote it, abort it, and
keep the stable version whole between releases."""

from __future__ import annotations

import datetime
from typing import Literal

from chatops import clock
from chatops.api.common import now_rfc3339
from chatops.api.release_status import ChatReleaseStatus, HistoryEntry
from chatops.release import cost as costs
from chatops.release import drain as drains
from chatops.release import revision as rev
from chatops.release import status as st
from chatops.release import webhooks
from chatops.release.model import (
    ApplyDeployment,
    ApplyServices,
    Color,
    FinalizeTraffic,
    Observation,
    RestoreRevision,
    ScaleDeployment,
    SetHeaderRoute,
    SetTraffic,
    other,
)
from chatops.release.plan import BUSY, Plan


def new_color(obs: Observation, active: Color) -> Color:
    """Where the new version runs: the idle color, or in place for a rolling update."""
    return active if obs.spec.strategy.rolling is not None else other(active)


def start(obs: Observation, plan: Plan, desired: str) -> Plan:
    """A new revision: bring it up on the idle color (in place when rolling), no traffic."""
    spec = obs.spec
    active = plan.status.active_color
    assert active is not None
    canary = new_color(obs, active)
    plan.update(
        phase="Progressing",
        canary_revision=desired,
        canary_version=rev.summary(spec),
        current_step=0 if spec.strategy.canary else None,
        canary_weight=0,
        analysis_started_at=None,
        gates_passed=None,
        smoke_test_job=None,
        webhooks=webhooks.started(plan.status.webhooks, spec),
        promoted_at=None,
        aborted_revision=None,
        header_route=None,
        analysis=[],
        message=f"releasing {rev.summary(spec)} (revision {desired}) on {canary}",
    )
    plan.act(ApplyServices(active))
    if canary != active:  # a version replaced mid-release loses its traffic first
        plan.act(SetHeaderRoute(canary))
        plan.act(SetTraffic(canary, 0))
    plan.event("Normal", "ReleaseStarted", plan.status.message or "")
    if not held_by_drain(obs, plan, canary):
        rollout(plan, obs, canary, desired)
    plan.requeue(BUSY)
    return plan


def held_by_drain(obs: Observation, plan: Plan, canary: Color) -> bool:
    """Whether the release waits for `canary`'s drain window, its version's pods not yet
    applied: a rollback or a promotion just moved the color's traffic away, and the
    router may send its pods requests until the window ends (it applies a route change
    late), as a scale-down would wait. A drain that has begun its waves holds nothing."""
    drain = plan.status.scale_down
    if drain is None or drain.color != canary or drain.wave > 0:
        return False
    state, due = drains.window(drain, unrouted(obs, canary), obs.now)
    if due is not None and obs.now >= due:
        return False
    for c in obs.spec.components:
        plan.act(ScaleDeployment(c.name, other(canary), c.replicas))
    plan.act(SetHeaderRoute(canary))
    plan.act(SetTraffic(canary, 0))
    until = (
        f"at {clock.rfc3339(due)}" if due is not None
        else f"once the router sends it no traffic ({weights_shown(obs, canary)})"
    )
    plan.update(
        scale_down=state,
        release_started_at=None,
        step_started_at=None,
        cost=None,
        message=f"releasing {plan.status.canary_version} on {canary} {until}: the pods "
        "there keep serving what the router still sends them until their drain window ends",
    )
    plan.requeue(BUSY if due is None else (due - obs.now).total_seconds())
    return True


def rollout(plan: Plan, obs: Observation, canary: Color, desired: str) -> None:
    """The new version's pods on `canary`, from now: the release's clock, its first
    step and its cost window start."""
    now = now_rfc3339(obs.now)
    plan.update(
        release_started_at=now,
        step_started_at=now,
        cost=costs.opened(canary, now),
        scale_down=None if plan.status.scale_down is None
        or plan.status.scale_down.color == canary else plan.status.scale_down,
    )
    for c in obs.spec.components:
        plan.act(ApplyDeployment(c.name, canary, desired, c.replicas))


def supersede(obs: Observation, desired: str) -> Plan:
    """The version in flight gives way to a newer one: a history entry and an Event say
    so, naming both (the caller then starts the newer one)."""
    status, spec = obs.status, obs.spec
    assert status.canary_revision is not None
    newer = f"{rev.summary(spec)} (revision {desired})"
    entry = ended(obs, status, "Superseded",
                  f"{status.canary_version} superseded by {newer} before it finished")
    plan = Plan(status)
    plan.update(history=st.append_history(status.history, entry, spec.history_limit))
    plan.event(
        "Normal",
        "Superseded",
        f"{status.canary_version} (revision {status.canary_revision}) superseded by {newer}",
    )
    return plan


def images_of(obs: Observation, revision: str) -> dict[str, str]:
    """`component/container` → image of `revision`, as its Deployments run it: the spec
    may already name another version (a revert, a newer version) when history records
    this one."""
    if revision == rev.revision(obs.spec):
        return rev.images(obs.spec)
    return {
        f"{d.component}/{container}": image
        for d in obs.deployments.values()
        if d.revision == revision
        for container, image in d.images.items()
    }


def ended(
    obs: Observation,
    status: ChatReleaseStatus,
    result: Literal["Succeeded", "RolledBack", "Superseded"],
    message: str,
) -> HistoryEntry:
    """The history entry of the version in flight (`status.canary_revision`), ending now."""
    assert status.canary_revision is not None
    return HistoryEntry(
        revision=status.canary_revision,
        images=images_of(obs, status.canary_revision),
        result=result,
        started_at=status.release_started_at,
        finished_at=now_rfc3339(obs.now),
        message=message,
        cost=status.cost,
    )


def abort(obs: Observation, reason: str, why: str) -> Plan:
    """Traffic back to the stable color first; the new version scales down after
    `abortScaleDownDelaySeconds` (a rolling update is put back on its old template)."""
    status, spec, now = obs.status, obs.spec, obs.now
    active = status.active_color
    assert active is not None and status.canary_revision is not None
    canary = new_color(obs, active)
    rolling = canary == active
    entry = ended(obs, status, "RolledBack", why)
    at = now + datetime.timedelta(seconds=st.abort_scale_down_delay(spec))
    delay = st.abort_scale_down_delay(spec)
    plan = Plan(status)
    plan.update(
        # RolledBack once the cluster shows it (see `_between_releases`): the router with
        # no traffic on the new version, and in place the stable template rolled out
        # again; until then Degraded.
        phase="Degraded",
        message=f"rolling back {status.canary_version}: {why}",
        canary_weight=0,
        aborted_revision=status.canary_revision,
        canary_revision=None,
        canary_version=None,
        current_step=None,
        header_route=None,
        promoted_at=None,
        release_started_at=None,
        cost=None,
        history=st.append_history(status.history, entry, spec.history_limit),
        scale_down=None if rolling else drains.begin(canary, at, delay, st.drain(spec)),
        webhooks=webhooks.rolled_back(status.webhooks, spec, status.canary_revision),
    )
    plan.act(SetHeaderRoute(canary))  # the dogfood users first back on stable, too
    if rolling:
        assert status.stable_revision is not None
        for c in spec.components:
            plan.act(RestoreRevision(c.name, active, status.stable_revision))
    else:
        plan.act(SetTraffic(canary, 0))
    plan.event("Warning", reason, plan.status.message or "")
    plan.requeue(BUSY)
    return plan


def promote(obs: Observation, plan: Plan) -> Plan:
    """The new version becomes the stable one and takes all traffic; the old color keeps
    serving open connections for `scaleDownDelaySeconds`, then scales down."""
    status, spec, now = plan.status, obs.spec, obs.now
    active = status.active_color
    assert active is not None and status.canary_revision is not None
    new = new_color(obs, active)
    entry = ended(obs, status, "Succeeded", "promoted")
    if new != active and not traffic_shows(obs, new, 100):
        # Stable is what serves: all traffic on the new color first, as the router shows.
        plan.act(SetTraffic(new, 100))
        plan.update(
            phase="Progressing",
            message=f"promoting {status.canary_version}: moving all traffic to {new} "
            f"({weights_shown(obs, new)})",
        )
        plan.requeue(BUSY)
        return plan
    switched = datetime.datetime.fromisoformat(status.promoted_at) if status.promoted_at else now
    at = max(now, switched + datetime.timedelta(seconds=st.scale_down_delay(spec)))
    plan.update(
        phase="Succeeded" if new == active else "Promoting",
        message=f"{status.canary_version} promoted",
        active_color=new,
        stable_revision=status.canary_revision,
        stable_version=status.canary_version,
        canary_revision=None,
        canary_version=None,
        canary_weight=None,
        current_step=None,
        header_route=None,
        release_started_at=None,
        promoted_at=None,
        analysis_started_at=None,
        step_started_at=None,
        cost=None,
        scale_down=None
        if new == active
        else drains.begin(active, at, st.scale_down_delay(spec), st.drain(spec)).model_copy(
            # the router shows all new connections on the new color since the switch
            # (blue-green) or since this look (canary): the drain counts from then
            update={"since": status.promoted_at or now_rfc3339(now)}
        ),
        history=st.append_history(status.history, entry, spec.history_limit),
    )
    plan.act(SetHeaderRoute(new))  # everyone on the new version now: the rule goes
    if new != active:
        plan.act(ApplyServices(new))
        plan.act(SetTraffic(active, 0))
    plan.event(
        "Normal",
        "Promoted",
        f"{status.canary_version} (revision {status.canary_revision}) is now stable",
    )
    plan.requeue(BUSY)
    return plan


def keep_stable(obs: Observation, plan: Plan, cut: bool = False) -> None:
    """Between releases: the stable version whole and serving everything; a draining
    color scaled down once its delay passed and the router shows no traffic on it, in
    the spec's waves (`cut`: the rest at once, as a human asked)."""
    status, spec, now = plan.status, obs.spec, obs.now
    active, stable = status.active_color, status.stable_revision
    assert active is not None and stable is not None
    for c in spec.components:
        d = obs.deployments.get((c.name, active))
        if spec.strategy.rolling is not None and d is not None and d.revision != stable:
            plan.act(RestoreRevision(c.name, active, stable))
        else:
            plan.act(ScaleDeployment(c.name, active, c.replicas))
    plan.act(SetHeaderRoute(other(active)))
    plan.act(SetTraffic(other(active), 0))
    drain = status.scale_down
    if drain is None:
        return
    plan.act(FinalizeTraffic(active))
    look = drains.Look(
        components=[c.name for c in spec.components],
        pods={
            d.component: drains.Pods(d.replicas, d.available)
            for (_, color), d in obs.deployments.items()
            if color == drain.color
        },
        traffic_left=unrouted(obs, drain.color),
        checks=obs.reconnects,
        cut=cut,
        now=now,
    )
    step = drains.advance(drain, look)
    for component, replicas in step.replicas.items():
        plan.act(ScaleDeployment(component, drain.color, replicas))
    for event in step.events:
        plan.event(event.type, event.reason, event.message)
    plan.update(scale_down=step.state)
    if step.check:
        plan.need(reconnects=active)
    plan.requeue(step.requeue)
    if step.state is None and status.phase == "Promoting":
        plan.update(phase="Succeeded", message=f"{status.stable_version} is live")
    elif step.state is not None and status.phase == "Promoting" and (
        step.state.waves > 1 or step.state.paused
    ):
        plan.update(
            message=f"{status.stable_version} promoted; draining {drains.summary(step.state)}"
        )


def not_ready(obs: Observation, color: Color, revision: str | None) -> str:
    """Components of `color` not Available at `revision`, e.g. `api-green 1/3 available`;
    empty when all are."""
    missing = []
    for c in obs.spec.components:
        d = obs.deployments.get((c.name, color))
        if d is None or d.revision != revision or not d.ready:
            have = d.available if d is not None and d.revision == revision else 0
            missing.append(f"{c.name}-{color} {have}/{c.replicas} available")
    return ", ".join(missing)


def unrouted(obs: Observation, color: Color) -> bool:
    """Whether the router shows no traffic of any component going to `color`, by weight
    or by a header route."""
    return not any(
        obs.weights.get(c.name, {}).get(color, 0)
        or any(shown == color for shown, _ in obs.header_routes.get(c.name, ()))
        for c in obs.spec.components
    )


def traffic_shows(obs: Observation, color: Color, weight: int) -> bool:
    """Whether the router shows `weight` % of every component's traffic on `color` and the
    rest on the other color (what a decision waits for before it records a weight)."""
    wanted = {color: weight, other(color): 100 - weight}
    return all(obs.weights.get(c.name) == wanted for c in obs.spec.components)


def weights_shown(obs: Observation, color: Color) -> str:
    """What the router shows on `color`, for a message: `the router shows api 0%, web 0%`."""
    if not obs.weights:
        return "the router shows no weights"
    shown = ", ".join(
        f"{c.name} {obs.weights[c.name].get(color, 0)}%" if c.name in obs.weights
        else f"{c.name} unknown"
        for c in obs.spec.components
    )
    return f"the router shows {shown} on {color}"

def scaled_to_zero(obs: Observation, component: str, color: Color) -> bool:
    d = obs.deployments.get((component, color))
    return d is None or (d.replicas == 0 and d.available == 0)


def past(since: str | None, limit_seconds: float, now: datetime.datetime) -> bool:
    """Whether `limit_seconds` have passed since `since` (RFC 3339)."""
    if since is None:
        return False
    start = datetime.datetime.fromisoformat(since)
    return now >= start + datetime.timedelta(seconds=limit_seconds)
