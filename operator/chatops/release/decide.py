"""The release decision core: one pure function from an observation to a decision.

The status is the release's memory and the single record of intent: a decision writes
the new status, and its actions only converge the cluster towards what that status says
(which color serves, at what weight, which color drains). The operator can be killed at
any line: the next look recomputes the same actions from the status and the cluster.

Two safety rules hold in every branch:
- traffic reaches a color only when all its Deployments are Available, and leaves it
  before anything there is scaled down (a scale-down waits for the router to show 0 %);
- the stable color is never scaled below its replicas while a release is in flight.
"""

from __future__ import annotations

from dataclasses import replace

from chatops.annotations import ABORT, PROMOTE, RETRY
from chatops.api.common import now_rfc3339
from chatops.api.release_status import HistoryEntry
from chatops.events import Event
from chatops.metrics.analysis import count
from chatops.release import cost, webhooks
from chatops.release import revision as rev
from chatops.release import status as st
from chatops.release.headers import headers_show
from chatops.release.model import (
    Action,
    ApplyDeployment,
    ApplyServices,
    Color,
    Decision,
    Observation,
    ScaleDeployment,
    SetHeaderRoute,
    SetTraffic,
    other,
)
from chatops.release.plan import BUSY, STEADY, Plan
from chatops.release.strategies import progress
from chatops.release.transitions import (
    abort,
    keep_stable,
    not_ready,
    past,
    start,
    supersede,
    traffic_shows,
    unrouted,
    weights_shown,
)


def decide(obs: Observation) -> Decision:
    """The next status and actions of a release, given what was observed."""
    status, desired = obs.status, rev.revision(obs.spec)
    quiesced = sorted({d.quiesced_by for d in obs.deployments.values() if d.quiesced_by})
    if quiesced:
        return _finish(obs, _held(obs, quiesced))
    if status.active_color is None or status.stable_revision is None:
        plan = _first_release(obs, desired)
    elif status.canary_revision is None:
        plan = _between_releases(obs, desired)
    elif obs.manual.abort:
        plan = abort(obs, "Aborted", "aborted by chatops.dev/abort")
    elif desired == status.stable_revision:
        plan = abort(obs, "Reverted", "the spec went back to the stable version")
        plan.update(
            phase="Succeeded",
            aborted_revision=None,
            message=f"reverted: {status.stable_version} stays stable",
        )
    elif desired != status.canary_revision:
        # A newer version replaces the one in flight; it starts over from no traffic.
        plan = start(obs, supersede(obs, desired), desired)
    else:
        plan = progress(obs)
    return _finish(obs, plan)


def _held(obs: Observation, recoveries: list[str]) -> Plan:
    """A restore stopped the app's Deployments: touch nothing (scaling them back would
    race the restore with live writers) until the ChatRecovery brings them back."""
    plan = Plan(obs.status)
    plan.update(
        phase="Paused",
        message=f"held: ChatRecovery {', '.join(recoveries)} has stopped the app for a restore",
    )
    plan.requeue(BUSY)
    return plan


def _first_color(obs: Observation) -> Color:
    """Where a first release runs: blue, or the one color whose Deployments a deleted
    ChatRelease of the same name left serving (adopted, they go on serving there)."""
    if obs.status.active_color is not None:
        return obs.status.active_color
    left = {color for (_, color) in obs.deployments}
    return "green" if left == {"green"} else "blue"


def _first_release(obs: Observation, desired: str) -> Plan:
    """Nothing to compare with yet: run the version on one color and give it all traffic."""
    spec, status, now = obs.spec, obs.status, obs.now
    fresh = status.canary_revision != desired  # a new version restarts the deadline
    started = (
        now_rfc3339(now) if fresh or not status.release_started_at else status.release_started_at
    )
    color = _first_color(obs)
    plan = Plan(status)
    plan.update(
        active_color=color,
        canary_revision=desired,
        release_started_at=started,
        canary_version=rev.summary(spec),
    )
    plan.act(ApplyServices(color))
    for c in spec.components:
        plan.act(ApplyDeployment(c.name, color, desired, c.replicas))
    pending = not_ready(obs, color, desired)
    if not pending:
        plan.act(SetTraffic(other(color), 0))
    if not pending and not traffic_shows(obs, color, 100):
        # Live means serving: not Succeeded until the router shows all traffic on it.
        plan.update(
            phase="Progressing",
            message=f"first release: waiting for the router to send all traffic to {color} "
            f"({weights_shown(obs, color)})",
        )
        plan.requeue(BUSY)
    elif not pending:
        entry = HistoryEntry(
            revision=desired,
            images=rev.images(spec),
            result="Succeeded",
            started_at=started,
            finished_at=now_rfc3339(now),
            message="first release",
        )
        plan.update(
            phase="Succeeded",
            stable_revision=desired,
            canary_revision=None,
            stable_version=rev.summary(spec),
            canary_version=None,
            release_started_at=None,
            message=f"{rev.summary(spec)} is live",
            history=st.append_history(status.history, entry, spec.history_limit),
        )
    elif past(started, spec.progress_deadline_seconds, now):
        plan.update(
            phase="Failed",
            message=f"not Available within progressDeadlineSeconds "
            f"({spec.progress_deadline_seconds} s): {pending}",
        )
    else:
        plan.update(phase="Progressing", message=f"first release: waiting for {pending}")
        plan.requeue(BUSY)
    return plan


def _between_releases(obs: Observation, desired: str) -> Plan:
    """No release in flight: keep the stable version whole, drain what is left, and start
    a release when the spec asks for a revision that is neither stable nor rolled back."""
    plan = Plan(obs.status)
    if obs.manual.retry:
        plan.act(obs.manual.clear(RETRY))
        plan.update(aborted_revision=None)
    if obs.manual.abort:
        plan.act(obs.manual.clear(ABORT))
    if obs.manual.promote is not None:  # stale: it must not skip the next release's checks
        plan.act(obs.manual.clear(PROMOTE))
    status = plan.status
    if desired not in (status.stable_revision, status.aborted_revision):
        return start(replace(obs, status=status), plan, desired)
    if desired == status.stable_revision:
        plan.update(aborted_revision=None)
    keep_stable(obs, plan, cut=obs.manual.promote == "full")
    if desired == status.aborted_revision:
        last = status.history[-1].message if status.history else "rolled back"
        active = plan.status.active_color
        assert active is not None
        # RolledBack only once the cluster shows the stable version back and Available
        # (a rolling rollback re-applies its template, which takes a rollout) and the
        # router no traffic on the other color.
        pending = not_ready(obs, active, status.stable_revision)
        if not unrouted(obs, other(active)):
            pending = ", ".join(p for p in (pending, weights_shown(obs, other(active))) if p)
        if pending:
            plan.update(
                phase="Degraded",
                message=f"rolling back to {status.stable_version}: waiting for {pending}; {last}",
            )
            plan.requeue(BUSY)
        elif status.phase != "RolledBack":  # e.g. back from a hold
            plan.update(phase="RolledBack", message=f"rolled back: {last}")
        return plan
    if plan.status.phase in ("Failed", "Promoting"):
        return plan
    active = plan.status.active_color
    assert active is not None
    pending = not_ready(obs, active, status.stable_revision)
    if pending:
        plan.update(phase="Degraded", message=f"the stable version is not Available: {pending}")
        plan.requeue(BUSY)
    else:
        plan.update(phase="Succeeded", message=f"{status.stable_version} is live")
    return plan


def _finish(obs: Observation, plan: Plan) -> Decision:
    """Drop actions the cluster already satisfies, add conditions and a phase Event."""
    old = obs.status
    active = plan.status.active_color
    webhooks.settle_rollbacks(
        obs, plan, active is not None and (obs.spec.strategy.rolling is not None
                                           or unrouted(obs, other(active)))
    )
    # The round measured for this look is counted in the same status patch that keeps
    # it, whatever branch decided (an abort starts from the observed status): counted
    # once, since `count` skips a round it has already counted.
    run = count(plan.status.analysis_run, plan.status.analysis_started_at, obs.measurements)
    analysis = st.kept_measurements([*plan.status.analysis, *obs.measurements], obs.spec)
    new = plan.status.model_copy(
        update={
            "analysis": analysis,
            "analysis_run": run,
            "observed_generation": obs.generation,
        }
    )
    new, window, settles = cost.account(new, obs.spec, obs.now, obs.cost)
    needs = plan.needs if window is None else replace(plan.needs, cost=window)
    requeue = min(plan.requeue_after, STEADY, settles if settles is not None else STEADY)
    new = st.with_conditions(new, obs.now, obs.generation)
    events = list(plan.events)
    if new.phase != old.phase and new.phase is not None and not events:
        bad = new.phase in ("Degraded", "RolledBack", "Failed")
        events.append(Event("Warning" if bad else "Normal", new.phase, new.message or new.phase))
    actions = tuple(a for a in plan.actions if not _satisfied(obs, a))
    going_on = new.analysis_started_at is not None and new.phase in ("Progressing", "Paused")
    return Decision(
        status=new,
        actions=actions,
        events=tuple(events),
        needs=needs,
        requeue_after=max(requeue, 0.5),
        analyzing=plan.analyzing if going_on else None,
    )


def _satisfied(obs: Observation, action: Action) -> bool:
    """Whether the cluster already shows what `action` asks for (so it is not sent)."""
    if isinstance(action, SetTraffic):
        return traffic_shows(obs, action.canary, action.weight)
    if isinstance(action, SetHeaderRoute):
        return headers_show(obs, action.canary, action.matches)
    if isinstance(action, ScaleDeployment):
        d = obs.deployments.get((action.component, action.color))
        return d is not None and d.replicas == action.replicas
    if isinstance(action, ApplyDeployment):
        d = obs.deployments.get((action.component, action.color))
        return d is not None and d.revision == action.revision and d.replicas == action.replicas
    return False
