"""The cron dialect ChatBackup accepts: five fields, or a macro like `@daily`.

One definition guards the field twice: as CEL at the API server (so `kubectl apply`
refuses a bad schedule, naming `spec.schedule`) and in the model, which the operator
runs before it asks croniter for the next run. Fields are checked for their ranges
(minute 0-59, hour 0-23, day 1-31, month 1-12 or JAN-DEC, weekday 0-7 or SUN-SAT), with
lists, ranges and steps, and for what a regular expression cannot see:

- a range goes upwards: `59-0` or `FRI-MON` is refused (croniter would wrap it round,
  a Kubernetes CronJob refuses it; a list says what is meant: `FRI,SAT,SUN,MON`);
- a step is at least 1 (`*/0` never fires);
- `?` stands only for a whole day-of-month or day-of-week field and not for both: it
  means "any", as in Quartz, which croniter computes for it; `0 0 ? * ?` is refused as
  Quartz refuses it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from chatops.api.bounds import cel_string

_MACROS = "@(yearly|annually|monthly|weekly|daily|midnight|hourly)"


def _field(value: str) -> str:
    """A cron field: `*`, values and ranges, optional steps of 1 or more, comma lists."""
    item = rf"(\*|({value})(-({value}))?)(/[1-9][0-9]?)?"
    return rf"{item}(,{item})*"


_MINUTE = "[0-5]?[0-9]"
_HOUR = "[01]?[0-9]|2[0-3]"
_DAY = "0?[1-9]|[12][0-9]|3[01]"
_MONTH = "0?[1-9]|1[0-2]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_WEEKDAY = "[0-7]|SUN|MON|TUE|WED|THU|FRI|SAT"

PATTERN = (
    rf"^({_MACROS}|{_field(_MINUTE)} +{_field(_HOUR)} +(\?|{_field(_DAY)}) +"
    rf"{_field(_MONTH)} +(\?|{_field(_WEEKDAY)}))$"
)
"""A full-match regular expression (RE2 and Python agree on it)."""

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = {**{m: i + 1 for i, m in enumerate(_MONTHS)}, **{d: i for i, d in enumerate(_DAYS)}}
_CEL_NAMES = "{" + ", ".join(f"'{k}': {v}" for k, v in _NAMES.items()) + "}"


def _cel_value(text: str) -> str:
    return f"({text} in {_CEL_NAMES} ? {_CEL_NAMES}[{text}] : int({text}))"


_SHAPED = f"!self.matches({cel_string(PATTERN)}) || "
_RANGE = "[0-9A-Z]+-[0-9A-Z]+"
_LOW, _HIGH = _cel_value("r.split('-')[0]"), _cel_value("r.split('-')[1]")
UPWARD_RANGES = _SHAPED + f"self.findAll('{_RANGE}').all(r, {_LOW} <= {_HIGH})"
"""CEL: every range in the schedule goes upwards."""
ONE_QUESTION_MARK = _SHAPED + "self.startsWith('@') || " + (
    "!(self.split(' ').filter(f, f != '')[2] == '?' && "
    "self.split(' ').filter(f, f != '')[4] == '?')"
)
"""CEL: `?` in day-of-month and day-of-week at once is refused."""

SHAPE_MESSAGE = (
    "must be a cron expression of five fields (minute hour day-of-month month "
    "day-of-week) or a macro like @daily, with values in range and steps of 1 or more"
)
RANGE_MESSAGE = "a range must go upwards, e.g. 1-5 or MON-FRI (for FRI-MON write FRI,SAT,SUN,MON)"
QUESTION_MESSAGE = "? may stand for day-of-month or day-of-week, not both (write 0 0 * * *)"


def _number(text: str) -> int:
    return _NAMES[text] if text in _NAMES else int(text)


def problem(schedule: str) -> str | None:
    """What is wrong with `schedule` in this dialect, or None: the CEL rules' checks."""
    if not re.fullmatch(PATTERN, schedule):
        return SHAPE_MESSAGE
    if schedule.startswith("@"):
        return None
    for span in re.findall(_RANGE, schedule):
        low, high = span.split("-")
        if _number(low) > _number(high):
            return RANGE_MESSAGE
    fields = schedule.split()
    if fields[2] == "?" and fields[4] == "?":
        return QUESTION_MESSAGE
    return None


def _valid(schedule: str) -> str:
    found = problem(schedule)
    if found is not None:
        raise ValueError(found)
    return schedule


Schedule = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": f"self.matches({cel_string(PATTERN)})", "message": SHAPE_MESSAGE},
                {"rule": UPWARD_RANGES, "message": RANGE_MESSAGE},
                {"rule": ONE_QUESTION_MARK, "message": QUESTION_MESSAGE},
            ]
        },
    ),
    AfterValidator(_valid),
]
"""A cron schedule in this dialect."""
