"""Building blocks shared by the three resources: the model base, durations, references,
and conditions in the Kubernetes shape.

Models are frozen: a "change" is `model_copy(update=...)`, so a decision can never edit
the observation it was given. Field names are snake_case in Python and camelCase on the
wire, as every Kubernetes API is.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from chatops import clock

GROUP = "chatops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class Model(BaseModel):
    """Base of every spec and status model: camelCase on the wire, immutable in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="ignore",
        use_attribute_docstrings=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
DURATION_PATTERN = r"^([0-9]{1,6}(\.[0-9]{1,6})?(ms|s|m|h))+$"
"""At most six digits a number and 16 characters (`Duration`): at most about 228 years,
so no duration overflows datetime or Go's (and CEL's) int64 nanoseconds."""
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=16,
        json_schema_extra={"example": "30s"},
    ),
]
"""A Go-style duration such as `30s`, `5m`, `1h30m` (units ms, s, m, h)."""


def seconds(duration: str) -> float:
    """Seconds in a `Duration` string; the schema has already checked its shape."""
    if not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(f"not a duration: {duration!r} (expected e.g. 30s, 5m, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
"""A Kubernetes object name that is also a DNS label."""


class SecretKeyRef(Model):
    """A key of a Secret in the resource's own namespace."""

    name: Name
    """Name of the Secret."""
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the Secret's data."""


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """A condition in the shape `kubectl wait --for=condition=…` and Argo CD understand."""

    type: str
    """Kind of condition, e.g. Ready, Accepted, Progressing."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str
    """One CamelCase word a machine can match on."""
    message: str = ""
    """What a human needs to know, including what to do."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The .metadata.generation the condition was computed from."""


def now_rfc3339(now: datetime.datetime) -> str:
    """RFC 3339 in UTC with microseconds and a `Z` (`chatops.clock.rfc3339`): a
    duration counted from a time in status is never shortened by a cut to the second."""
    return clock.rfc3339(now)


def condition(
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime.datetime,
    generation: int,
) -> Condition:
    """A condition computed now from `.metadata.generation` `generation` (so `kubectl
    wait` on a newer generation does not pass on it)."""
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now_rfc3339(now),
        observed_generation=generation,
    )


def set_condition(
    conditions: tuple[Condition, ...] | list[Condition],
    new: Condition,
) -> list[Condition]:
    """Conditions with `new` in place of its type, keeping the transition time when the
    status did not change (so `lastTransitionTime` means what it says)."""
    out: list[Condition] = []
    replaced = False
    for old in conditions:
        if old.type != new.type:
            out.append(old)
            continue
        replaced = True
        if old.status == new.status:
            new = new.model_copy(update={"last_transition_time": old.last_transition_time})
        out.append(new)
    if not replaced:
        out.append(new)
    return out


STALLED = "Stalled"
"""kstatus' condition for looks that fail on an unexpected error (ChatBackup, ChatRecovery)."""


def stalled(
    conditions: list[Condition], problem: str, now: datetime.datetime, generation: int
) -> list[Condition]:
    """`Stalled=True` (reason UnexpectedError): looks fail on something no branch expects,
    so it is seen in `kubectl get -o yaml` and by Argo CD, not only in the operator's log."""
    told = condition(
        STALLED, "True", "UnexpectedError",
        f"{problem}; the operator keeps looking, backing off (its log has the traceback)",
        now, generation,
    )
    return set_condition(conditions, told)


def unstalled(
    conditions: list[Condition], now: datetime.datetime, generation: int
) -> list[Condition]:
    """`Stalled=False` once a look succeeds again (unchanged if it was not stalled)."""
    if not any(c.type == STALLED and c.status == "True" for c in conditions):
        return conditions
    return set_condition(
        conditions,
        condition(STALLED, "False", "LookSucceeded", "looks succeed again", now, generation),
    )
