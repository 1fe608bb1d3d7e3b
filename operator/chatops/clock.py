"""The one clock of chatops, and the one way its times are written and read.

Every `now()` in the package comes from here, so a test can control time in one place
(`clock.now = …` in a fixture, or a pure function given `now` as an argument). Times in
statuses are RFC 3339 in UTC with microseconds (`2026-12-01T23:10:04.123456Z`): a
duration a spec promises (a pause, a drain window) is computed from the moment it began,
not from that moment cut to the second, so it never lasts less than the spec says.
Statuses written before this change hold whole seconds (`2026-12-01T23:10:04Z`);
`parse` reads both.
"""

from __future__ import annotations

import datetime


def now() -> datetime.datetime:
    """The current time, aware, in UTC."""
    return datetime.datetime.now(datetime.UTC)


def rfc3339(at: datetime.datetime) -> str:
    """`at` as RFC 3339 in UTC with a `Z`, with microseconds unless it is a whole
    second (a cron time, a test's round number stay as kubectl prints them)."""
    utc = at.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime.datetime:
    """An RFC 3339 time as status and the API server write it (`Z` or an offset, with
    or without fractional seconds); a time without a zone is taken as UTC."""
    at = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return at if at.tzinfo is not None else at.replace(tzinfo=datetime.UTC)
