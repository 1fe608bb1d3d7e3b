"""What `chatops status` prints about a ChatRelease: a pure function of the object.

The CLI may meet a status written by an older or newer operator, so the view reads the
raw object leniently (a missing or odd field shows as `-`) instead of validating it
with the API models, which would refuse the whole object over one unknown value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chatops.api.release import DEFAULT_CANARY_STEPS

TERMINAL_PHASES = frozenset({"Succeeded", "RolledBack", "Failed"})
"""Phases after which nothing moves until the spec changes or a human asks for a retry."""

_NONE = "-"


@dataclass(frozen=True)
class MeasurementRow:
    """The latest measurement of one metric on one component."""

    metric: str
    component: str
    value: str
    verdict: str
    time: str


@dataclass(frozen=True)
class HistoryRow:
    """One finished release and what it cost its users."""

    revision: str
    result: str
    requests: str
    failed: str
    moved: str
    dropped: str
    finished: str


@dataclass(frozen=True)
class ReleaseView:
    """The fields of a ChatRelease a human checks while it moves."""

    namespace: str
    name: str
    phase: str
    step: str
    weight: str
    stable: str
    canary: str
    active_color: str
    message: str
    measurements: tuple[MeasurementRow, ...]
    finished: bool
    """The phase is terminal for the spec the operator last observed."""
    drain: str = _NONE
    """The drain in progress, e.g. `wave 2/4 of blue; paused: …`."""
    cost: str = _NONE
    """What the release in flight (or the latest one) has cost its users."""
    header_route: str = _NONE
    """The header route in force, e.g. `X-Canary: dogfood -> new version`."""
    history: tuple[HistoryRow, ...] = ()


def view(body: Mapping[str, Any]) -> ReleaseView:
    """The view of a ChatRelease object as the API server returns it."""
    meta = _mapping(body.get("metadata"))
    spec = _mapping(body.get("spec"))
    status = _mapping(body.get("status"))
    phase = _text(status.get("phase"))
    return ReleaseView(
        namespace=_text(meta.get("namespace")),
        name=_text(meta.get("name")),
        phase=phase,
        step=_step(spec, status),
        weight=_weight(status.get("canaryWeight")),
        stable=_version(status.get("stableVersion"), status.get("stableRevision")),
        canary=_version(status.get("canaryVersion"), status.get("canaryRevision")),
        active_color=_text(status.get("activeColor")),
        message=_text(status.get("message")),
        measurements=latest_measurements(status.get("analysis")),
        finished=phase in TERMINAL_PHASES and _observed_current(meta, status),
        drain=drain_text(status.get("scaleDown")),
        cost=cost_text(_latest_cost(status)),
        header_route=header_route_text(status.get("headerRoute")),
        history=history_rows(status.get("history")),
    )


def render(release: ReleaseView) -> str:
    """The text `chatops status` prints: a field per line, then the measurements."""
    fields = (
        ("Release", f"{release.namespace}/{release.name}"),
        ("Phase", release.phase),
        ("Step", release.step),
        ("Weight", release.weight),
        *((("Header route", release.header_route),) if release.header_route != _NONE else ()),
        ("Stable", release.stable),
        ("Canary", release.canary),
        ("Active color", release.active_color),
        ("Message", release.message),
        # shown when there is one: most releases have no drain in progress
        *((("Drain", release.drain),) if release.drain != _NONE else ()),
        *((("Cost", release.cost),) if release.cost != _NONE else ()),
    )
    width = max(len(label) for label, _ in fields) + 3  # the colon, two spaces
    lines = [f"{label + ':':<{width}}{value}" for label, value in fields]
    lines.append("")
    if not release.measurements:
        lines.append("Measurements: none yet")
    else:
        lines.append("Measurements (latest per metric and component):")
        header = ("METRIC", "COMPONENT", "VALUE", "VERDICT", "TIME")
        rows = [(m.metric, m.component, m.value, m.verdict, m.time) for m in release.measurements]
        lines.extend("  " + line for line in table(header, rows))
    if release.history:
        lines += ["", "History (newest last; what each release cost its users):"]
        columns = ("REVISION", "RESULT", "REQUESTS", "FAILED", "WS MOVED", "WS DROPPED",
                   "FINISHED")
        past = [(h.revision, h.result, h.requests, h.failed, h.moved, h.dropped, h.finished)
                for h in release.history]
        lines.extend("  " + line for line in table(columns, past))
    return "\n".join(lines) + "\n"


def header_route_text(route: object) -> str:
    """`X-Canary: dogfood -> canary` (a regex with `~`), or `-` when there is none."""
    matches = _mapping(route).get("match") if isinstance(route, Mapping) else None
    if not isinstance(matches, list) or not matches:
        return _NONE
    shown = [
        f"{_text(m.get('name'))}"
        f"{' ~ ' if m.get('type') == 'RegularExpression' else ': '}{_text(m.get('value'))}"
        for m in matches
        if isinstance(m, Mapping)
    ]
    return f"{' and '.join(shown)} -> canary"


def drain_text(drain: object) -> str:
    """`wave 2/4 of blue; paused: …`, or `-` when nothing drains."""
    if not isinstance(drain, Mapping):
        return _NONE
    color, wave, waves = _text(drain.get("color")), drain.get("wave"), drain.get("waves")
    if not isinstance(wave, int) or not wave:
        where = f"{color} keeps its open connections until {_text(drain.get('at'))}"
    else:
        where = f"wave {wave}/{waves if isinstance(waves, int) else 1} of {color}"
    paused = drain.get("paused")
    return f"{where}; paused: {paused}" if paused else where


def _latest_cost(status: Mapping[str, Any]) -> object:
    if isinstance(status.get("cost"), Mapping):
        return status["cost"]
    history = status.get("history")
    if isinstance(history, list):
        for entry in reversed(history):
            if isinstance(entry, Mapping) and isinstance(entry.get("cost"), Mapping):
                return entry["cost"]
    return None


def cost_text(cost: object) -> str:
    """What a release cost its users, in a sentence: unknown figures say `unknown`."""
    if not isinstance(cost, Mapping):
        return _NONE
    figures = [cost.get(k) for k in ("requests", "failedRequests", "websocketsMoved",
                                     "websocketsDropped")]
    if all(f is None for f in figures) and not cost.get("problem"):
        return "not counted yet"
    requests, failed, moved, dropped = (_count(f) for f in figures)
    state = "final" if cost.get("final") else (
        f"so far, until {_text(cost.get('countedUntil'))}" if cost.get("countedUntil")
        else "not counted yet"
    )
    text = (f"{requests} requests served by the new version, {failed} failed; "
            f"WebSockets {moved} moved, {dropped} dropped ({state})")
    problem = cost.get("problem")
    return f"{text}; {problem}" if problem else text


def history_rows(history: object) -> tuple[HistoryRow, ...]:
    if not isinstance(history, list):
        return ()
    rows = []
    for entry in history:
        if not isinstance(entry, Mapping):
            continue
        cost = _mapping(entry.get("cost"))
        figures = [cost.get(k) for k in ("requests", "failedRequests", "websocketsMoved",
                                         "websocketsDropped")]
        shown = [_count(f) if cost else _NONE for f in figures]
        if cost and not cost.get("final") and any(f is not None for f in figures):
            shown = [f"{f}+" if f != "unknown" else f for f in shown]  # still counting
        requests, failed, moved, dropped = shown
        rows.append(HistoryRow(_text(entry.get("revision")), _text(entry.get("result")),
                               requests, failed, moved, dropped, _text(entry.get("finishedAt"))))
    return tuple(rows)


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) else "unknown"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart, as kubectl prints them."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def latest_measurements(analysis: object) -> tuple[MeasurementRow, ...]:
    """The newest measurement of each (metric, component), in the order the metrics were
    first measured: one round of the analysis, which says why a release moved or not."""
    if not isinstance(analysis, list):
        return ()
    latest: dict[tuple[str, str], MeasurementRow] = {}
    for entry in analysis:  # oldest first, as the operator appends them
        if not isinstance(entry, Mapping):
            continue
        row = MeasurementRow(
            metric=_text(entry.get("metric")),
            component=_text(entry.get("component")),
            value=format_value(entry.get("value")),
            # a dryRun metric's verdict decided nothing: said beside it
            verdict=_text(entry.get("verdict")) + (" (dryRun)" if entry.get("dryRun") else ""),
            time=_text(entry.get("time")),
        )
        latest[(row.metric, row.component)] = row
    return tuple(latest.values())


def format_value(value: object) -> str:
    """A measured value in at most four significant digits; NaN and text as they came."""
    if value is None or value == "":
        return _NONE
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    if math.isnan(number) or math.isinf(number):
        return str(value)
    return f"{number:.4g}"


def _step(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    """`k/n` for a canary (k counts from 1, as the operator's events do); `-` otherwise."""
    position = step_position(spec, status)
    return _NONE if position is None else f"{position[0]}/{position[1]}"


def step_position(
    spec: Mapping[str, Any], status: Mapping[str, Any]
) -> tuple[int, int, Mapping[str, Any]] | None:
    """The canary step in progress: its number counted from 1, the number of steps, and
    the step as the spec writes it (`{"setWeight": 25}`, `{"pause": {...}}`); None when
    no canary step is in progress."""
    strategy = _mapping(spec.get("strategy"))
    current = status.get("currentStep")
    if "canary" not in strategy or not isinstance(current, int):
        return None
    steps = _mapping(strategy["canary"]).get("steps")
    if not isinstance(steps, list) or not steps:
        steps = [step.wire() for step in DEFAULT_CANARY_STEPS]
    k = min(current, len(steps) - 1)
    return k + 1, len(steps), _mapping(steps[k])


def _weight(weight: object) -> str:
    return f"{weight}%" if isinstance(weight, int) else _NONE


def _version(version: object, revision: object) -> str:
    """Images in short form, with the revision hash after them when both are known."""
    if version and revision:
        return f"{version} (revision {revision})"
    return _text(version or revision)


def _observed_current(meta: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """False while the operator has not yet seen the latest spec: its terminal phase
    belongs to the previous release, not the one just applied."""
    observed, generation = status.get("observedGeneration"), meta.get("generation")
    if not isinstance(observed, int) or not isinstance(generation, int):
        return True
    return observed >= generation


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    return _NONE if value is None or value == "" else str(value)
