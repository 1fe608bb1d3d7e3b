"""The doctor's report: a table for a person, JSON for a machine (a CronJob's log, a
monitoring probe), both from the same results so they never disagree."""

from __future__ import annotations

import json
from collections.abc import Sequence

from chatops.doctor.checks import Result, exit_code

JSON_VERSION = 1
"""Version of the JSON document; a field is only ever added within a version."""


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def table(results: Sequence[Result]) -> str:
    """One row per check — CHECK, STATUS, TIME, TARGET, DETAIL — and a last line that
    names the failed checks."""
    header = ("CHECK", "STATUS", "TIME", "TARGET", "DETAIL")
    rows = [header] + [
        (r.check, r.state, _took(r.seconds), r.target, r.detail) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "   ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        .rstrip()
        for row in rows
    ]
    failed = [r.check for r in results if r.state == "failed"]
    skipped = sum(1 for r in results if r.state == "skipped")
    ran = len(results) - skipped
    if failed:
        lines.append(f"{len(failed)} of {ran} checks failed: {', '.join(failed)}")
    elif ran:
        lines.append(f"all {ran} checks ok" + (f", {skipped} skipped" if skipped else ""))
    else:
        lines.append(f"no check ran: {skipped} skipped")
    return "\n".join(lines) + "\n"


def document(results: Sequence[Result]) -> str:
    """`--output json`: `{"version", "ok", "failed": [names], "checks": [{"name",
    "status", "target", "detail", "durationSeconds"}]}`."""
    body = {
        "version": JSON_VERSION,
        "ok": exit_code(results) == 0,
        "failed": [r.check for r in results if r.state == "failed"],
        "checks": [
            {
                "name": r.check,
                "status": r.state,
                "target": r.target,
                "detail": r.detail,
                "durationSeconds": None if r.seconds is None else round(r.seconds, 4),
            }
            for r in results
        ],
    }
    return json.dumps(body, indent=2) + "\n"
