"""A release in flight, step by step: the new version Available, its gates passed, then
the strategy's own walk — canary weights and pauses, a blue-green switch and its
watch window, or a rolling update's watch window — every step gated by the analysis."""

from __future__ import annotations

import datetime
from dataclasses import replace

from chatops import clock
from chatops.annotations import PROMOTE
from chatops.api.common import now_rfc3339, seconds
from chatops.metrics.analysis import Outcome, count, last_round_at, next_measurement_at, outcome
from chatops.release import webhooks
from chatops.release.headers import describe_headers, header_matches, headers_show, headers_shown
from chatops.release.model import (
    ApplyDeployment,
    Color,
    Observation,
    ScaleDeployment,
    SetHeaderRoute,
    SetTraffic,
    StartSmokeTest,
)
from chatops.release.plan import BUSY, Plan
from chatops.release.transitions import (
    abort,
    held_by_drain,
    new_color,
    not_ready,
    past,
    promote,
    rollout,
    traffic_shows,
    weights_shown,
)


def progress(obs: Observation) -> Plan:
    """One look at a release in flight."""
    status, spec = obs.status, obs.spec
    active, revision = status.active_color, status.canary_revision
    assert active is not None and revision is not None
    canary = new_color(obs, active)
    plan = Plan(status)
    drain = status.scale_down
    if drain is not None and drain.color == canary:
        if held_by_drain(obs, plan, canary):
            return plan
        rollout(plan, obs, canary, revision)  # the window ended: the new pods, from now
    for c in spec.components:
        plan.act(ApplyDeployment(c.name, canary, revision, c.replicas))
        if canary != active:
            plan.act(ScaleDeployment(c.name, active, c.replicas))
    if canary != active:
        plan.act(SetTraffic(canary, status.canary_weight or 0))
        plan.act(SetHeaderRoute(canary, header_matches(status.header_route)))

    pending = not_ready(obs, canary, revision)
    if pending:
        if (status.canary_weight or 0) > 0 or status.header_route is not None:
            return abort(obs, "CanaryUnavailable", f"lost availability under traffic: {pending}")
        if past(status.release_started_at, spec.progress_deadline_seconds, obs.now):
            return abort(
                obs,
                "ProgressDeadlineExceeded",
                f"not Available within progressDeadlineSeconds "
                f"({spec.progress_deadline_seconds} s): {pending}",
            )
        plan.update(phase="Progressing", message=f"waiting for {pending}")
        plan.requeue(BUSY)
        return plan
    if not status.gates_passed:
        plan = _gates(obs, plan, canary)
        if not plan.status.gates_passed:
            return plan  # else on to the first step in the same look
    if spec.paused:
        plan.update(phase="Paused", message="paused by spec.paused")
        return plan
    if spec.strategy.canary is not None:
        return _canary(obs, plan, canary)
    if spec.strategy.blue_green is not None:
        return _blue_green(obs, plan, canary)
    return _rolling(obs, plan, canary)


def _gates(obs: Observation, plan: Plan, color: Color) -> Plan:
    """Health checks, the smoke test, then the pre-rollout webhooks, before any traffic
    reaches the new version."""
    spec, status, now = obs.spec, plan.status, obs.now
    if any(c.health_check for c in spec.components):
        if obs.health is None:
            plan.need(health=color)
            return plan
        sick = "; ".join(f"{name}: {why}" for name, why in obs.health.items() if why)
        if sick:
            if past(status.release_started_at, spec.progress_deadline_seconds, now):
                return abort(obs, "HealthCheckFailed", f"health checks failing: {sick}")
            plan.update(phase="Progressing", message=f"waiting for health checks: {sick}")
            plan.requeue(BUSY)
            return plan
    if spec.smoke_test is not None:
        job = status.smoke_test_job or _job_name(obs.name, status.canary_revision or "")
        plan.act(StartSmokeTest(job, color))
        if status.smoke_test_job is None or obs.smoke in (None, "Running"):
            plan.update(
                phase="Progressing", smoke_test_job=job, message=f"smoke test Job {job} running"
            )
            plan.requeue(BUSY)
            return plan
        if obs.smoke == "Failed":
            return abort(obs, "SmokeTestFailed", f"smoke test Job {job} failed")
    state, why = webhooks.gate(obs, plan, "pre-rollout")
    if state == "failed":
        # from the status this look wrote: the last failure is in the rollback's record
        return abort(replace(obs, status=plan.status), "PreRolloutWebhookFailed",
                     f"pre-rollout webhook {why}")
    if state == "waiting":
        plan.update(phase="Progressing", message=f"waiting for pre-rollout webhooks: {why}")
        return plan
    plan.update(
        gates_passed=True,
        step_started_at=now_rfc3339(now),
        analysis_started_at=now_rfc3339(now),
        message="health and smoke gates passed",
    )
    plan.event("Normal", "GatesPassed", f"{status.canary_version} passed its gates")
    return plan


def _job_name(release: str, revision: str) -> str:
    return f"{release[:40]}-smoke-{revision}"


def _canary(obs: Observation, plan: Plan, canary: Color) -> Plan:
    spec, now = obs.spec, obs.now
    assert spec.strategy.canary is not None
    steps = spec.strategy.canary.steps
    if obs.manual.promote == "full":
        # recorded as the step past the last, so the promotion goes on in the next looks
        # (until the router shows all traffic moved) without the annotation
        plan.act(obs.manual.clear(PROMOTE))
        plan.update(current_step=len(steps))
        webhooks.confirm(plan, spec, "confirmed by chatops.dev/promote")
    k = plan.status.current_step or 0
    while k < len(steps) and steps[k].pause is None:
        if steps[k].header_route is not None:
            if not _header_step(obs, plan, canary, k):
                return plan
            k += 1
            continue
        weight = steps[k].set_weight or 0
        where = f"step {k + 1}/{len(steps)}"
        if weight == 100 and (held := _unconfirmed(obs, plan, canary, where, True)):
            return held  # all traffic on the new version is its promotion: confirmed first
        plan.act(SetTraffic(canary, weight))
        if not traffic_shows(obs, canary, weight):
            # A weight is recorded (and its pause starts) only once the router shows it.
            plan.update(
                phase="Progressing",
                message=f"step {k + 1}/{len(steps)}: setting {weight}% of new connections "
                f"on {canary} ({weights_shown(obs, canary)})",
            )
            plan.requeue(BUSY)
            return plan
        k += 1
        plan.update(
            canary_weight=weight,
            current_step=k,
            step_started_at=now_rfc3339(now),
            analysis_started_at=now_rfc3339(now),
        )
        plan.event(
            "Normal",
            "WeightSet",
            f"{weight}% of new connections to {plan.status.canary_version} (step {k}/{len(steps)})",
            step=k, steps=len(steps), weight=weight,
        )
    if k >= len(steps):
        return _unconfirmed(obs, plan, canary, f"step {k}/{len(steps)}", True) or promote(
            obs, plan
        )

    pause = steps[k].pause
    assert pause is not None
    verdict, why = _analysis(obs, plan, canary)
    if verdict == "Failed":
        return abort(obs, "AnalysisFailed", why)
    where = f"step {k + 1}/{len(steps)} at {plan.status.canary_weight}%"
    if obs.manual.promote == "step":
        plan.act(obs.manual.clear(PROMOTE))
        return _next_step(obs, plan, k + 1)
    if verdict == "Inconclusive":
        plan.update(
            phase="Paused", message=f"{where}: analysis inconclusive ({why}); promote or abort"
        )
        return plan
    if pause.duration is None:
        plan.update(phase="Paused", message=f"{where}: paused until chatops.dev/promote")
        return plan
    # The step (and so its pause) started at the first look that saw the router show
    # its weight, with microseconds: it lasts at least its duration at that weight.
    started = clock.parse(plan.status.step_started_at or now_rfc3339(now))
    end = started + datetime.timedelta(seconds=seconds(pause.duration))
    if now < end:
        left = (end - now).total_seconds()
        # "until <time>", not a countdown: the message (and so the status) stays the same
        # from one look to the next, so it is written only when something changed
        plan.update(phase="Progressing", message=f"{where} until {_clock(end)}; {why}")
        plan.requeue(left)
        return plan
    if verdict != "Successful":
        plan.update(
            phase="Progressing", message=f"{where}: pause over, waiting for the analysis: {why}"
        )
        return plan
    # The pause is over and the analysis holds: set the next weight in this same look,
    # rather than a look later (under load that look can queue for seconds).
    _next_step(obs, plan, k + 1)
    return _canary(obs, plan, canary)


def _header_step(obs: Observation, plan: Plan, canary: Color, k: int) -> bool:
    """Step `k` routes a header to the canary: recorded once the router shows it (as a
    weight is), and the walk goes on in the same look; False while it is not shown."""
    steps = obs.spec.strategy.canary.steps if obs.spec.strategy.canary else []
    route = steps[k].header_route
    matches = header_matches(route)
    plan.act(SetHeaderRoute(canary, matches))
    where = f"step {k + 1}/{len(steps)}"
    if not headers_show(obs, canary, matches):
        what = f"routing requests with {describe_headers(matches)}" if matches else (
            "removing the header route")
        plan.update(
            phase="Progressing",
            message=f"{where}: {what} to {canary} ({headers_shown(obs)})",
        )
        plan.requeue(BUSY)
        return False
    now = now_rfc3339(obs.now)
    plan.update(
        header_route=route if matches else None,
        current_step=k + 1,
        step_started_at=now,
        analysis_started_at=now,
    )
    version = plan.status.canary_version
    plan.event(
        "Normal",
        "HeaderRouteSet" if matches else "HeaderRouteRemoved",
        f"requests with {describe_headers(matches)} go to {version} ({where})"
        if matches else f"no header route to {version} any more ({where})",
    )
    return True


def _next_step(obs: Observation, plan: Plan, k: int) -> Plan:
    now = now_rfc3339(obs.now)
    plan.update(phase="Progressing", current_step=k, step_started_at=now, analysis_started_at=now)
    plan.requeue(0.5)
    return plan


def _blue_green(obs: Observation, plan: Plan, new: Color) -> Plan:
    spec, status, now = obs.spec, plan.status, obs.now
    bg = spec.strategy.blue_green
    assert bg is not None
    if (status.canary_weight or 0) < 100 and status.promoted_at is None:
        if bg.pre_promotion_analysis and obs.manual.promote is None:
            verdict, why = _analysis(obs, plan, new)
            if verdict == "Failed":
                return abort(obs, "AnalysisFailed", f"pre-promotion analysis: {why}")
            if verdict != "Successful":
                paused = verdict == "Inconclusive"
                plan.update(
                    phase="Paused" if paused else "Progressing",
                    message=f"pre-promotion analysis: {why}",
                )
                return plan
        if not bg.auto_promote and obs.manual.promote is None:
            plan.update(
                phase="Paused",
                message=f"{status.canary_version} is ready on {new}; "
                "waiting for chatops.dev/promote",
            )
            return plan
        if obs.manual.promote is not None:
            plan.act(obs.manual.clear(PROMOTE))
            webhooks.confirm(plan, spec, "confirmed by chatops.dev/promote")
        state, why = webhooks.gate(obs, plan, "confirm-promotion")
        if state != "passed":
            plan.update(
                phase="Paused",
                message=f"{status.canary_version} is ready on {new}; waiting for "
                f"confirm-promotion webhooks: {why}",
            )
            return plan
        # The switch is decided: recorded, so the next looks carry it out whatever the
        # annotation or the analysis say meanwhile.
        plan.update(promoted_at=now_rfc3339(now))
    if (status.canary_weight or 0) < 100:
        plan.act(SetTraffic(new, 100))
        if not traffic_shows(obs, new, 100):
            plan.update(
                phase="Progressing",
                message=f"switching traffic to {new} ({weights_shown(obs, new)})",
            )
            plan.requeue(BUSY)
            return plan
        # The router shows the switch: only now is it recorded, and the window starts.
        plan.update(
            phase="Progressing",
            canary_weight=100,
            promoted_at=now_rfc3339(now),
            analysis_started_at=now_rfc3339(now),
            message=f"traffic switched to {new}; watching for {bg.post_promotion_window}",
        )
        plan.event(
            "Normal", "TrafficSwitched", f"new connections go to {status.canary_version} on {new}"
        )
        plan.requeue(0.5)
        return plan
    if obs.manual.promote == "full":
        plan.act(obs.manual.clear(PROMOTE))
        return promote(obs, plan)
    return _watch(obs, plan, new, status.promoted_at, bg.post_promotion_window)


def _rolling(obs: Observation, plan: Plan, color: Color) -> Plan:
    rolling = obs.spec.strategy.rolling
    assert rolling is not None
    if obs.manual.promote == "full":
        plan.act(obs.manual.clear(PROMOTE))
        return promote(obs, plan)
    return _watch(obs, plan, color, plan.status.analysis_started_at, rolling.analysis_window,
                  confirm=True)


def _unconfirmed(
    obs: Observation, plan: Plan, color: Color, where: str, analyse: bool
) -> Plan | None:
    """None once every confirm-promotion webhook answered 2xx; until then the plan that
    holds the release here (`analyse`: with the analysis going on, rolling back if it
    fails)."""
    state, why = webhooks.gate(obs, plan, "confirm-promotion")
    if state == "passed":
        return None
    if analyse:
        verdict, said = _analysis(obs, plan, color)
        if verdict == "Failed":
            return abort(replace(obs, status=plan.status), "AnalysisFailed", said)
    plan.update(phase="Paused", message=f"{where}: waiting for confirm-promotion webhooks: {why}")
    return plan


def _watch(
    obs: Observation,
    plan: Plan,
    color: Color,
    since: str | None,
    window: str,
    confirm: bool = False,
) -> Plan:
    """The new version serves; keep it if the analysis holds for `window`."""
    verdict, why = _analysis(obs, plan, color)
    if verdict == "Failed":
        return abort(obs, "AnalysisFailed", why)
    if verdict == "Inconclusive":
        plan.update(phase="Paused", message=f"analysis inconclusive ({why}); promote or abort")
        return plan
    start = clock.parse(since or now_rfc3339(obs.now))
    end = start + datetime.timedelta(seconds=seconds(window))
    if obs.now < end:
        left = (end - obs.now).total_seconds()
        plan.update(phase="Progressing", message=f"watching {color} until {_clock(end)}; {why}")
        plan.requeue(left)
        return plan
    if verdict != "Successful":
        plan.update(phase="Progressing", message=f"window over, waiting for the analysis: {why}")
        return plan
    if confirm:
        return _unconfirmed(obs, plan, color, "window over", False) or promote(obs, plan)
    return promote(obs, plan)


def _analysis(obs: Observation, plan: Plan, color: Color) -> tuple[Outcome, str]:
    """The current analysis run: its counters with this look's round (if one was
    taken), whether a round is due now, and what the counters say."""
    analysis = obs.spec.analysis
    if analysis is None:
        return "Successful", "no analysis configured"
    if plan.status.analysis_started_at is None:
        plan.update(analysis_started_at=now_rfc3339(obs.now))
    started_at = plan.status.analysis_started_at
    run = count(plan.status.analysis_run, started_at, obs.measurements)
    plan.update(analysis_run=run)
    due_at = next_measurement_at(analysis, clock.parse(started_at or ""), last_round_at(run),
                                 obs.breach)
    plan.analyzing = color
    if not obs.measurements and obs.now >= due_at:
        plan.need(measure=color)
    else:
        plan.requeue((due_at - obs.now).total_seconds())
    return outcome(analysis, run, [c.name for c in obs.spec.components])


def _clock(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).strftime("%H:%M:%SZ")
