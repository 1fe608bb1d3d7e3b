"""The cron dialect ChatBackup accepts, as one regular expression.

The same pattern guards the field twice: as CEL at the API server (so `kubectl apply`
refuses a bad schedule) and in the operator, which also asks croniter for the next run.
Fields are checked for their ranges (minute 0-59, hour 0-23, day 1-31, month 1-12 or
JAN-DEC, weekday 0-7 or SUN-SAT), with lists, ranges and steps.
"""

from __future__ import annotations

import json

_MACROS = "@(yearly|annually|monthly|weekly|daily|midnight|hourly)"


def _field(value: str) -> str:
    """A cron field: `*`, values and ranges, optional steps, comma lists."""
    item = rf"(\*|({value})(-({value}))?)(/[0-9]{{1,2}})?"
    return rf"{item}(,{item})*"


_MINUTE = "[0-5]?[0-9]"
_HOUR = "[01]?[0-9]|2[0-3]"
_DAY = "0?[1-9]|[12][0-9]|3[01]|\\?"
_MONTH = "0?[1-9]|1[0-2]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_WEEKDAY = "[0-7]|SUN|MON|TUE|WED|THU|FRI|SAT|\\?"

PATTERN = (
    rf"^({_MACROS}|{_field(_MINUTE)} +{_field(_HOUR)} +{_field(_DAY)} +"
    rf"{_field(_MONTH)} +{_field(_WEEKDAY)})$"
)
"""A full-match regular expression (RE2 and Python agree on it)."""

CEL_PATTERN_LITERAL = json.dumps(PATTERN)
"""PATTERN as a CEL string literal (JSON string escaping is valid CEL)."""
