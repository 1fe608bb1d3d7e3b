"""The checks the API server cannot make, run by the operator before it acts.

The schema and CEL rules have refused most bad specs already; what is left needs
knowledge CEL does not have: the IANA time zone database and cron's calendar. Each
problem names its field, so the `Accepted` condition can tell the user what to fix.
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import pydantic
from croniter import CroniterBadDateError, croniter

from chatops.api.backup import ChatBackupSpec
from chatops.api.common import Condition, Model, condition, set_condition
from chatops.api.recovery import ChatRecoverySpec
from chatops.api.release import ChatReleaseSpec

SPECS: dict[str, type[Model]] = {
    "ChatRelease": ChatReleaseSpec,
    "ChatBackup": ChatBackupSpec,
    "ChatRecovery": ChatRecoverySpec,
}


def problems(kind: str, spec: dict[str, Any]) -> list[str]:
    """What is wrong with `spec`, one `field: problem` per line; empty when it is usable."""
    try:
        parsed = SPECS[kind].model_validate(spec)
    except pydantic.ValidationError as err:
        return [f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
    if isinstance(parsed, ChatBackupSpec):
        return _backup_problems(parsed)
    if isinstance(parsed, ChatReleaseSpec) and parsed.analysis is not None:
        # imported here: the analysis package builds on this one
        from chatops.metrics.analysis import placeholder_problems

        return placeholder_problems(parsed.analysis)
    return []


def _backup_problems(spec: ChatBackupSpec) -> list[str]:
    found = []
    if spec.time_zone is not None:
        try:
            zoneinfo.ZoneInfo(spec.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            found.append(
                f"spec.timeZone: unknown time zone {spec.time_zone!r} (use an IANA "
                "name such as Europe/Paris)"
            )
    if spec.schedule is not None and not croniter.is_valid(spec.schedule):
        found.append(f"spec.schedule: {spec.schedule!r} is not a valid cron expression")
    elif spec.schedule is not None:
        start = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
        try:
            croniter(spec.schedule, start).get_next(datetime.datetime)
        except (CroniterBadDateError, ValueError):  # e.g. 31 February
            found.append(f"spec.schedule: {spec.schedule!r} never fires")
    return found


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
