"""The checks the API server cannot make, run by the operator before it acts.

The schema and CEL rules have refused most bad specs already, and the models check the
same bounds and rules again (`chatops.api.bounds`), for a spec that reached the operator
past an older CRD. What is left needs knowledge CEL does not have: the IANA time zone
database, cron's calendar, the query placeholders. Each problem names its field, as the
API server writes field paths, so the `Accepted` condition tells the user what to fix.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from typing import Any, TypeVar

import pydantic
from croniter import CroniterBadDateError, croniter

from chatops.api.analysis import Analysis
from chatops.api.backup import ChatBackupSpec
from chatops.api.common import Condition, Model, condition, set_condition
from chatops.api.cost import CostQueries
from chatops.api.recovery import ChatRecoverySpec
from chatops.api.release import ChatReleaseSpec, Strategy
from chatops.errors import InvalidSpec

SPECS: dict[str, type[Model]] = {
    "ChatRelease": ChatReleaseSpec,
    "ChatBackup": ChatBackupSpec,
    "ChatRecovery": ChatRecoverySpec,
}

M = TypeVar("M", bound=Model)


def problems(kind: str, spec: dict[str, Any]) -> list[str]:
    """What is wrong with `spec`, one `field: problem` per line; empty when it is usable.
    The checks beyond the schema run on every field the schema's checks passed, so one
    mistake never hides another."""
    try:
        SPECS[kind].model_validate(spec)
        found = []
    except pydantic.ValidationError as err:
        found = [
            f"{field_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors()
        ]
    named = {problem.split(": ", 1)[0] for problem in found}
    if kind == "ChatBackup":
        found += _backup_problems(spec, named)
    if kind == "ChatRelease":
        # imported here: the analysis package builds on this one
        from chatops.metrics.analysis import (
            WINDOW_PLACEHOLDERS,
            placeholder_problems,
            query_problems,
        )

        analysis = _part(Analysis, spec, "analysis", named)
        found += placeholder_problems(analysis) if analysis is not None else []
        found += query_problems(_window_queries(spec, named), WINDOW_PLACEHOLDERS)
    return found


def _window_queries(spec: dict[str, Any], named: set[str]) -> list[tuple[str, str]]:
    """`(field, query)` of the queries counted over a window: the drain's reconnect
    check and the cost of a release, each of a part whose shape passed."""
    queries = []
    strategy = _part(Strategy, spec, "strategy", named)
    for name, steps in (("blueGreen", strategy and strategy.blue_green),
                        ("canary", strategy and strategy.canary)):
        if steps and steps.drain is not None:
            queries.append(
                (f"spec.strategy.{name}.drain.reconnect.query", steps.drain.reconnect.query)
            )
    cost = _part(CostQueries, spec, "cost", named)
    if cost is not None:
        for field in ("requests", "failed_requests", "websockets_moved", "websockets_dropped"):
            camel = field.split("_")[0] + "".join(w.title() for w in field.split("_")[1:])
            queries.append((f"spec.cost.{camel}", getattr(cost, field)))
    return queries


def _part(model: type[M], spec: dict[str, Any], key: str, named: set[str]) -> M | None:
    """`spec[key]` as `model`, or None when it is absent or a problem was named in it."""
    inside = re.compile(rf"spec\.{key}($|[.\[])")
    if spec.get(key) is None or any(inside.match(f) for f in named):
        return None
    return model.model_validate(spec[key])


_TYPE_TAGS = re.compile(r"^(int|str|float|bool|none|list|dict)$|\[")
"""Segments pydantic adds to an error's location for the branch of a union it tried
(`int`, `str`, `function-after[...]`); no field of ours has such a name."""


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as Kubernetes writes a field path:
    `spec.components[0].template.spec.containers[0].image`."""
    out = "spec"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _TYPE_TAGS.search(part):
            out += f".{part}"
    return out


def _backup_problems(spec: dict[str, Any], named: set[str]) -> list[str]:
    """The time zone and the schedule against the IANA database and cron's calendar,
    each when its shape passed."""
    found = []
    zone, schedule = spec.get("timeZone"), spec.get("schedule")
    if isinstance(zone, str) and "spec.timeZone" not in named:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            found.append(
                f"spec.timeZone: unknown time zone {zone!r} (use an IANA name such as "
                "Europe/Paris)"
            )
    verification = spec.get("verification")
    drills = verification.get("schedule") if isinstance(verification, dict) else None
    for field, value in (("spec.schedule", schedule), ("spec.verification.schedule", drills)):
        if isinstance(value, str) and field not in named:
            found += _cron_problems(field, value)
    return found


def _cron_problems(field: str, schedule: str) -> list[str]:
    if not croniter.is_valid(schedule):
        return [f"{field}: {schedule!r} is not a valid cron expression"]
    start = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    try:
        croniter(schedule, start).get_next(datetime.datetime)
    except (CroniterBadDateError, ValueError):  # e.g. 31 February
        return [f"{field}: {schedule!r} never fires"]
    return []


def parsed(model: type[M], kind: str, spec: dict[str, Any], resource: str) -> M:
    """`spec` as its model, or InvalidSpec naming its first problem: for code reading an
    object it did not accept itself (a referenced ChatBackup, one being deleted), which
    may have been stored under an older CRD with looser bounds."""
    found = problems(kind, spec)
    if found:
        field, _, problem = found[0].partition(": ")
        raise InvalidSpec(resource, field, problem)
    return model.model_validate(spec)


def accepted(
    kind: str,
    spec: dict[str, Any],
    generation: int,
    conditions: list[Condition],
    now: datetime.datetime,
) -> list[Condition]:
    """`conditions` with `Accepted` set from the spec's problems: True when the operator
    can act on the spec, False with every problem listed when it cannot."""
    found = problems(kind, spec)
    accepted = condition(
        "Accepted",
        "False" if found else "True",
        "InvalidSpec" if found else "SpecValid",
        "; ".join(found) if found else "the spec is valid",
        now,
        generation,
    )
    return set_condition(conditions, accepted)
