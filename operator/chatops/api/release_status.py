"""ChatRelease status: what the operator observed and decided, written once per look.

Apart from the spec models (`api/release.py`) so each module holds one thing: a
platform team's intent there, the operator's record here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chatops.api import bounds
from chatops.api.analysis import AnalysisRun, Measurement
from chatops.api.common import Condition, Model
from chatops.api.cost import ReleaseCost
from chatops.api.header_route import HeaderRoute
from chatops.api.webhooks import WebhookCall

# -- status ---------------------------------------------------------------------------

ReleasePhase = Literal[
    "Progressing", "Paused", "Promoting", "Succeeded", "Degraded", "RolledBack", "Failed"
]


class HistoryEntry(Model):
    """A finished release."""

    revision: str
    """Revision hash of the components' templates."""
    images: dict[str, str] = Field(default_factory=dict)
    """Image per component (`component/container` → image)."""
    result: Literal["Succeeded", "RolledBack", "Failed", "Superseded"]
    """How it ended; `Superseded`: a newer version replaced it before it finished."""
    started_at: str | None = None
    """When it started (RFC 3339)."""
    finished_at: str | None = None
    """When it ended (RFC 3339)."""
    message: str = ""
    """Why it ended so."""
    cost: ReleaseCost | None = None
    """What it cost its users (requests served and failed by it, WebSockets moved and
    dropped), counted once its window closed."""


class ScaleDown(Model):
    """A color to scale to zero once its drain window has passed."""

    color: Literal["blue", "green"]
    """The color to scale down."""
    at: str
    """Not before this time (RFC 3339): until then it keeps serving open connections."""
    delay_seconds: bounds.Seconds = 0
    """The drain window (`scaleDownDelaySeconds`, or `abortScaleDownDelaySeconds` after a
    rollback), counted from `since`."""
    since: str | None = None
    """When the router was first seen sending the color no new connections (RFC 3339):
    the drain window starts then, not when the switch was decided, so established
    connections get at least the whole window."""
    waves: int = Field(default=1, ge=1, le=100)
    """Waves the color's pods are scaled down in (`drain.waves` when the drain began)."""
    interval_seconds: float = Field(default=0, ge=0, le=3600)
    """Seconds from a wave done to the reconnect check that lets the next one go."""
    replicas: dict[str, int] = Field(default_factory=dict)
    """Pods of each component's Deployment of the color when the first wave began: the
    waves are batches of these."""
    wave: int = Field(default=0, ge=0, le=100)
    """Waves begun (0: none yet; `waves`: the last one, to zero pods)."""
    wave_started_at: str | None = None
    """When wave `wave` began (RFC 3339): the reconnect check looks back to then."""
    wave_done_at: str | None = None
    """When the cluster first showed wave `wave` done, its pods gone (RFC 3339): the
    interval to the next check counts from then."""
    checked_at: str | None = None
    """When the reconnect check last ran for the wave in progress (RFC 3339)."""
    paused: str | None = Field(default=None, max_length=1024)
    """Why the drain holds (a reconnect storm, Prometheus unreachable); none while it
    goes on."""
    check: str | None = Field(default=None, max_length=1024)
    """What the last reconnect check saw."""


class ChatReleaseStatus(Model):
    """What the operator observed and decided."""

    observed_generation: int | None = None
    """The .metadata.generation this status was computed from."""
    phase: ReleasePhase | None = None
    """Progressing, Paused, Promoting, Succeeded, Degraded, RolledBack or Failed."""
    message: str | None = None
    """What is happening, in a sentence."""
    active_color: Literal["blue", "green"] | None = None
    """The color serving stable traffic."""
    stable_revision: str | None = None
    """Revision of the version serving stable traffic."""
    canary_revision: str | None = None
    """Revision being released, if any."""
    stable_version: str | None = None
    """Images of the stable version, short form."""
    canary_version: str | None = None
    """Images of the version being released, short form."""
    current_step: int | None = None
    """Index of the canary step in progress."""
    canary_weight: int | None = None
    """Percent of new connections on the new version, as the router last showed it: a
    weight is recorded (and its pause starts) only once the router reads it back."""
    header_route: HeaderRoute | None = None
    """The header route a canary step set, as the router last showed it: requests
    carrying these headers go to the new version whatever its weight. Removed (and
    cleared) at promotion, rollback and deletion."""
    step_started_at: str | None = None
    """When the current step started (RFC 3339)."""
    release_started_at: str | None = None
    """When the release in progress started (RFC 3339)."""
    analysis_started_at: str | None = None
    """When the current analysis run started (RFC 3339): the step's pause, the
    pre-promotion check or the post-promotion window."""
    gates_passed: bool | None = None
    """Whether the new version passed its health checks and smoke test."""
    smoke_test_job: str | None = None
    """The smoke-test Job of the release in progress."""
    webhooks: list[WebhookCall] = Field(default_factory=list, max_length=16)
    """What each webhook answered for the release in flight, and the rollback webhooks
    still owed for the last rollback."""
    promoted_at: str | None = None
    """When traffic switched to the new color (blue-green; RFC 3339): set when the switch
    is decided, and again when the router shows it done."""
    aborted_revision: str | None = None
    """A revision rolled back: not released again until the spec changes or
    `chatops.dev/retry` is set."""
    scale_down: ScaleDown | None = None
    """A color waiting for its drain window to pass before it is scaled to zero."""
    cost: ReleaseCost | None = None
    """What the release in flight has cost its users so far, counted every few seconds
    by Prometheus from its start; moved into its history entry when it ends."""
    analysis_run: AnalysisRun | None = None
    """The counters of the analysis run in progress, from which its limits are judged."""
    analysis: list[Measurement] = Field(default_factory=list, max_length=200)
    """Measurements for people to read, oldest first: the latest of every metric of
    every component, and the most recent others (60 in all, or one per metric and
    component when there are more)."""
    history: list[HistoryEntry] = Field(default_factory=list)
    """Past releases, newest last."""
    conditions: list[Condition] = Field(default_factory=list)
    """In the Kubernetes shape, each with the observedGeneration it was computed from (so
    `kubectl wait` on a new spec never passes on the old one): `Complete` is True once
    the release of this generation finished whatever the outcome, its reason Succeeded,
    RolledBack, Failed, Degraded or InvalidSpec (`kubectl wait --for=condition=Complete`);
    `Ready` is True only while the spec's version is live and gets all new traffic
    (Succeeded, Promoting); `Progressing` while a release is in flight; `Accepted` False
    for a spec the operator cannot act on; `Reconciled` False (reason ActionFailed or
    LookFailed) while an action the cluster refuses, or an unexpected error, keeps the
    release from going on, its message naming the object and the API server's answer."""
