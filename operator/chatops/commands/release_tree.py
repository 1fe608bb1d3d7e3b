"""What `chatops get release NAME` draws: a ChatRelease as a tree, the way
`kubectl argo rollouts get rollout` draws a Rollout — a header (status, strategy, step,
weight, images), then NAME / KIND / STATUS / AGE / INFO rows: the release, each
component, under it the Deployment of each color (stable, canary) with its traffic
weight, ready/desired replicas and image, and the latest measurement of each metric.

Pure: the rows are a function of the ChatRelease and its Deployments as the API server
returns them (raw, read leniently as `chatops status` reads them) and of `now`, so the
tree is tested as rows of text without a cluster. The header's fields come from
`release_view.view`, the one reading of a ChatRelease's status for people.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chatops import clock
from chatops.commands.backups import human_age
from chatops.commands.release_view import (
    ReleaseView,
    _mapping,
    _text,
    latest_measurements,
    step_position,
    table,
    view,
)

# The icons of `kubectl argo rollouts get rollout`, one per kind of node and per health.
RELEASE_ICON, COMPONENT_ICON, DEPLOYMENT_ICON, MEASUREMENT_ICON = "⟳", "#", "⧉", "⊞"
HEALTHY, PROGRESSING, PAUSED, DEGRADED, WARNING, UNKNOWN = "✔", "◌", "॥", "✖", "⚠", "•"

_PHASE_ICON = {
    "Succeeded": HEALTHY,
    "Progressing": PROGRESSING,
    "Promoting": PROGRESSING,
    "Paused": PAUSED,
    "Degraded": WARNING,
    "RolledBack": DEGRADED,
    "Failed": DEGRADED,
}
_VERDICT_ICON = {"Pass": HEALTHY, "Fail": DEGRADED, "Inconclusive": WARNING, "Error": WARNING}
"""An Error holds a release (Prometheus unreachable), it never fails it: a warning."""

_ANSI = {HEALTHY: "32", PROGRESSING: "33", PAUSED: "90", WARNING: "33", DEGRADED: "31",
         UNKNOWN: "90"}
"""Green, yellow, grey, red: the colors Argo's plugin gives the same states."""


@dataclass(frozen=True)
class Row:
    """One line of the tree: `name` holds the branch drawing and the node's icon."""

    name: str
    kind: str
    status: str
    age: str
    info: str


def tree(
    release: Mapping[str, Any],
    deployments: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
) -> tuple[Row, ...]:
    """The rows of the tree: the release, then per component (in the spec's order) its
    Deployments — the canary first, as Argo puts the newest revision first — and the
    latest measurement of each of its metrics. `now` (an aware datetime) gives the ages."""
    shown = view(release)
    spec, status = _mapping(release.get("spec")), _mapping(release.get("status"))
    meta = _mapping(release.get("metadata"))
    rows = [Row(f"{RELEASE_ICON} {shown.name}", "ChatRelease", _phase(shown.phase),
                _age(meta.get("creationTimestamp"), now), _release_info(shown, spec, status))]
    components = [_mapping(c) for c in spec.get("components") or () if isinstance(c, Mapping)]
    measured = latest_measurements(status.get("analysis"))
    for i, component in enumerate(components):
        name = _text(component.get("name"))
        last = i == len(components) - 1
        rows.append(Row(_branch(last) + f"{COMPONENT_ICON} {name}", "Component", "", "",
                        f"replicas:{_text(component.get('replicas'))}"))
        ours = sorted(
            (d for d in deployments if _labels(d).get(_COMPONENT) == name),
            key=lambda d: (_role(d, status) != "canary", _role(d, status) != "stable",
                           _text(_mapping(d.get("metadata")).get("name"))),
        )
        children: list[tuple[str, str, str, str, str]] = [
            (f"{DEPLOYMENT_ICON} {_text(_mapping(d.get('metadata')).get('name'))}", "Deployment",
             *_deployment(d, status, now))
            for d in ours
        ]
        children += [
            (f"{MEASUREMENT_ICON} {m.metric}", "Measurement", _verdict(m.verdict),
             _age(m.time, now), f"value:{m.value}")
            for m in measured if m.component == name
        ]
        indent = "   " if last else "│  "
        for j, (label, kind, state, age, info) in enumerate(children):
            rows.append(Row(indent + _branch(j == len(children) - 1) + label, kind, state,
                            age, info))
    return tuple(rows)


def header(release: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The fields above the tree, as Argo's plugin prints them: what moves, in words."""
    shown = view(release)
    spec, status = _mapping(release.get("spec")), _mapping(release.get("status"))
    fields = [
        ("Name", shown.name),
        ("Namespace", shown.namespace),
        ("Status", _phase(shown.phase)),
        ("Message", shown.message),
        ("Strategy", _strategy(spec)),
    ]
    position = step_position(spec, status)
    if position is not None:
        fields.append(("  Step", _step_text(position)))
    fields.append(("  Weight", shown.weight))
    fields.append(("Images", _images(status, "stable")))
    if status.get("canaryVersion") or status.get("canaryRevision"):
        fields.append(("", _images(status, "canary")))
    return fields


def _images(status: Mapping[str, Any], role: str) -> str:
    """`chat-api:1.1,chat-web:1.1 (canary, revision 9f2ab3c4)`."""
    revision = status.get(f"{role}Revision")
    about = f"{role}, revision {revision}" if revision else role
    return f"{_text(status.get(f'{role}Version'))} ({about})"


def render(
    release: Mapping[str, Any],
    deployments: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
    color: bool = False,
) -> str:
    """The text of one frame: the header, a blank line, the tree as a table."""
    fields = header(release)
    width = max(len(label) for label, _ in fields) + 3
    lines = [(f"{label + ':':<{width}}" if label else " " * width) + value
             for label, value in fields]
    rows = tree(release, deployments, now)
    lines.append("")
    lines += table(("NAME", "KIND", "STATUS", "AGE", "INFO"),
                   [(r.name, r.kind, r.status, r.age, r.info) for r in rows])
    text = "\n".join(lines) + "\n"
    return _colored(text) if color else text


def unchanged(rows: Sequence[Row]) -> tuple[Row, ...]:
    """The rows without their ages: what a watch compares to decide whether anything
    moved, so time passing alone prints no new frame."""
    return tuple(replace(r, age="") for r in rows)


# -- the parts -------------------------------------------------------------------------

_COMPONENT = "app.kubernetes.io/component"
_COLOR = "chatops.dev/color"
_REVISION = "chatops.dev/revision"


def _branch(last: bool) -> str:
    return "└──" if last else "├──"


def _release_info(shown: ReleaseView, spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    position = step_position(spec, status)
    parts = [f"step {_step_text(position)}"] if position is not None else []
    if shown.weight != "-":
        parts.append(f"weight:{shown.weight}")
    if shown.active_color != "-":
        parts.append(f"active:{shown.active_color}")
    return ", ".join(parts)


def _strategy(spec: Mapping[str, Any]) -> str:
    strategy = _mapping(spec.get("strategy"))
    names = {"canary": "Canary", "blueGreen": "BlueGreen", "rolling": "Rolling"}
    return next((label for key, label in names.items() if key in strategy), "-")


def _step_text(position: tuple[int, int, Mapping[str, Any]]) -> str:
    """`2/7: pause 4s`, `3/7: setWeight 25`, `4/7: pause (until promoted)`."""
    k, total, step = position
    if "setWeight" in step:
        what = f"setWeight {step['setWeight']}"
    elif "pause" in step:
        duration = _mapping(step["pause"]).get("duration")
        what = f"pause {duration}" if duration else "pause (until promoted)"
    else:
        what = "-"
    return f"{k}/{total}: {what}"


def _role(deployment: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    """What the color's Deployment is to the release: the version being released
    (`canary`), the one serving (`stable`), the one rolled back, or the previous one."""
    revision = _annotations(deployment).get(_REVISION)
    if revision and revision == status.get("canaryRevision"):
        return "canary"
    if _labels(deployment).get(_COLOR) == status.get("activeColor"):
        return "stable"
    if revision and revision == status.get("abortedRevision"):
        return "rolled back"
    return "previous"


def _weight(role: str, status: Mapping[str, Any]) -> int:
    """Percent of new connections on the color, from the status' weight as the router
    last showed it (`canaryWeight` on the new color, the rest on the stable one)."""
    weight = status.get("canaryWeight")
    canary = weight if isinstance(weight, int) else 0
    if role == "stable":
        return 100 if status.get("canaryRevision") is None else 100 - canary
    return canary if role == "canary" else 0


def _deployment(
    deployment: Mapping[str, Any], status: Mapping[str, Any], now: datetime.datetime
) -> tuple[str, str, str]:
    meta, spec = _mapping(deployment.get("metadata")), _mapping(deployment.get("spec"))
    observed = _mapping(deployment.get("status"))
    desired, ready = _count(spec.get("replicas")), _count(observed.get("readyReplicas"))
    running = _count(observed.get("replicas"))
    role = _role(deployment, status)
    weight = _weight(role, status)
    if role == "canary" and _labels(deployment).get(_COLOR) == status.get("activeColor"):
        role, weight = "canary, in place", 100  # a rolling update: the stable color itself
    if desired == 0:
        health = f"{UNKNOWN} ScaledDown" if running == 0 else f"{PROGRESSING} ScalingDown"
    elif _deadline_exceeded(observed):
        health = f"{DEGRADED} Degraded"
    elif ready >= desired and running <= desired and (
        _count(observed.get("updatedReplicas")) >= desired
    ):
        health = f"{HEALTHY} Healthy"
    else:
        health = f"{PROGRESSING} Progressing"
    info = [role, f"weight:{weight}%", f"ready:{ready}/{desired}"]
    if _mapping(status.get("scaleDown")).get("color") == _labels(deployment).get(_COLOR):
        info.append(f"scale-down:{_text(_mapping(status['scaleDown']).get('at'))}")
    containers = _mapping(_mapping(spec.get("template")).get("spec")).get("containers") or []
    info += [_text(_mapping(c).get("image")) for c in containers]
    revision = _annotations(deployment).get(_REVISION)
    if revision:
        info.append(f"revision:{revision}")
    return health, _age(meta.get("creationTimestamp"), now), ", ".join(info)


def _deadline_exceeded(observed: Mapping[str, Any]) -> bool:
    return any(
        _mapping(c).get("type") == "Progressing"
        and _mapping(c).get("reason") == "ProgressDeadlineExceeded"
        for c in observed.get("conditions") or ()
    )


def _phase(phase: str) -> str:
    return f"{_PHASE_ICON.get(phase, UNKNOWN)} {phase}"


def _verdict(verdict: str) -> str:
    return f"{_VERDICT_ICON.get(verdict.split()[0], UNKNOWN)} {verdict}"


def _age(at: object, now: datetime.datetime) -> str:
    if not isinstance(at, str) or not at:
        return ""
    try:
        return human_age(now - clock.parse(at))
    except ValueError:
        return ""


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(obj.get("metadata")).get("labels"))


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(obj.get("metadata")).get("annotations"))


def _colored(text: str) -> str:
    """Each health icon and the word after it in its color. Applied after padding, so the
    columns stay aligned: escape codes take no room on a terminal."""
    return _HEALTH.sub(lambda m: f"\x1b[{_ANSI[m.group(1)]}m{m.group(0)}\x1b[0m", text)


_HEALTH = re.compile(f"([{''.join(_ANSI)}]) (\\S+)")
