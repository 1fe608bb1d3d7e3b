"""What the doctor's answers mean: pure functions of what a probe saw and `now`.

A check is *configured* when its input is given (a flag or an environment variable; the
two Kubernetes checks need only a kube context). One that is not is *skipped*, not
failed — a team without Redis still gets a green doctor — unless the user demands it
(`--require`), when a missing input is a failure that says which flag to give.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from chatops.adapters.redact import redact

CHECKS = ("api", "mongodb", "redis", "websocket", "backups", "releases")
"""Every check, in the order the table shows them."""

State = Literal["ok", "failed", "skipped"]

SETTLED_PHASES = frozenset({"Succeeded"})
BAD_PHASES = frozenset({"RolledBack", "Failed", "Degraded"})
"""A release that ended in one of these stays failed in the doctor until a new version is
released or retried: someone has to look."""


@dataclass(frozen=True)
class Finding:
    """What one probe saw: fine or not, in a sentence with no secret in it."""

    ok: bool
    detail: str
    target: str | None = None
    """What was looked at, when only the look knows (the kube context's namespace)."""


@dataclass(frozen=True)
class Result:
    """One row of the report."""

    check: str
    state: State
    target: str
    """What was checked (a URL or URI without credentials or query; a namespace)."""
    detail: str
    seconds: float | None = None
    """How long the probe took; None when it did not run."""


def judged(check: str, target: str, finding: Finding, seconds: float) -> Result:
    state: State = "ok" if finding.ok else "failed"
    return Result(check, state, finding.target or target, finding.detail, seconds)


def unconfigured(check: str, how: str, required: bool) -> Result:
    """A check without its input: skipped, or failed when the user required it. `how`
    says which flag or variable configures it."""
    if required:
        return Result(check, "failed", "-", f"required but not configured: {how}")
    return Result(check, "skipped", "-", f"not configured ({how})")


def exit_code(results: Iterable[Result]) -> int:
    """0 when no check failed (skipped ones do not count), 1 otherwise."""
    return 1 if any(r.state == "failed" for r in results) else 0


_QUERY = re.compile(r"[?#].*$")


def shown(url: str) -> str:
    """A URL or connection string as the report prints it: no user or password, no
    query or fragment (where tokens and `authSource`-like secrets live)."""
    return redact(_QUERY.sub("", url))


def age(delta: datetime.timedelta) -> str:
    """A duration the way an on-call engineer says it: 45s, 12m, 5h10m, 3d."""
    s = max(0, int(delta.total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 172800:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m}m" if m else f"{h}h"
    return f"{s // 86400}d"


# -- backups --------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupSeen:
    """A ChatBackup as the doctor reads it: `namespace/name` and when its last good backup
    finished (`status.lastSuccessfulTime`), None if it never had one."""

    name: str
    last_success: datetime.datetime | None


def backups(seen: Sequence[BackupSeen], now: datetime.datetime,
            max_age: datetime.timedelta) -> Finding:
    """Every ChatBackup must have a good backup younger than `max_age` (the chart's
    alert says 26 h: a daily schedule and two hours of slack). No ChatBackup at all is a
    failure: nothing backs the database up."""
    if not seen:
        return Finding(False, "no ChatBackup: nothing backs MongoDB up")
    bad, good = [], []
    for b in sorted(seen, key=lambda b: b.name):
        if b.last_success is None:
            bad.append(f"{b.name}: no good backup yet")
        elif now - b.last_success > max_age:
            bad.append(f"{b.name}: last good backup {age(now - b.last_success)} ago "
                       f"(older than {age(max_age)})")
        else:
            good.append(f"{b.name}: last good backup {age(now - b.last_success)} ago")
    return Finding(not bad, "; ".join(bad or good))


# -- releases -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseSeen:
    """A ChatRelease as the doctor reads it. `since`: when the release in progress
    started (`status.releaseStartedAt`), else when the object was created."""

    name: str
    phase: str | None
    message: str
    since: datetime.datetime | None


def releases(seen: Sequence[ReleaseSeen], now: datetime.datetime,
             stuck_after: datetime.timedelta) -> Finding:
    """Releases not Succeeded: RolledBack, Failed and Degraded fail; one still in progress
    (Progressing, Paused, Promoting) fails once it has been so for longer than
    `stuck_after`, and one with no phase at all — the operator never acted on it — as
    well. None in scope is fine: nothing is being released."""
    if not seen:
        return Finding(True, "no ChatReleases")
    bad, moving, settled = [], [], 0
    for r in sorted(seen, key=lambda r: r.name):
        said = f": {r.message}" if r.message else ""
        if r.phase in SETTLED_PHASES:
            settled += 1
        elif r.phase in BAD_PHASES:
            bad.append(f"{r.name} {r.phase}{said}")
        else:
            phase = r.phase or "no status (is the operator running?)"
            took = now - r.since if r.since else None
            if took is None or took > stuck_after:
                how_long = f" for {age(took)}" if took is not None else ""
                bad.append(f"{r.name} stuck: {phase}{how_long} "
                           f"(longer than {age(stuck_after)}){said}")
            else:
                moving.append(f"{r.name} {phase} for {age(took)}")
    if bad:
        return Finding(False, "; ".join(bad))
    return Finding(True, "; ".join([f"{settled} Succeeded", *moving]))


# -- reading the cluster's objects (leniently: a status of another operator version) ---


def _time(text: object) -> datetime.datetime | None:
    from chatops import clock

    try:
        return clock.parse(text) if isinstance(text, str) and text else None
    except ValueError:
        return None


def _named(body: dict[str, object]) -> tuple[str, dict[str, object], dict[str, object]]:
    meta = body.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    status = body.get("status")
    status = status if isinstance(status, dict) else {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}", meta, status


def backup_seen(body: dict[str, object]) -> BackupSeen:
    """A ChatBackup object as the API server returns it."""
    name, _, status = _named(body)
    return BackupSeen(name, _time(status.get("lastSuccessfulTime")))


def release_seen(body: dict[str, object]) -> ReleaseSeen:
    """A ChatRelease object as the API server returns it."""
    name, meta, status = _named(body)
    phase = status.get("phase")
    message = status.get("message")
    since = _time(status.get("releaseStartedAt")) or _time(meta.get("creationTimestamp"))
    return ReleaseSeen(
        name,
        phase if isinstance(phase, str) and phase else None,
        message if isinstance(message, str) else "",
        since,
    )
