"""`chatops doctor`: the runbook's daily health check, one command, one exit status.

Each check's input comes from its flag, else its environment variable (a CronJob gives
them from a Secret). The checks run at once, each within `--timeout`; the report is the
table, or JSON with `--output json`; the exit status is 1 when any check failed, 0
otherwise — skipped checks are no failure unless `--require`d.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from chatops.doctor import checks
from chatops.doctor.checks import CHECKS, Finding, Result

INPUTS = {
    "api": ("api_url", "--api-url", "API_HEALTH_URL"),
    "mongodb": ("mongodb_uri", "--mongodb-uri", "MONGODB_URI"),
    "redis": ("redis_url", "--redis-url", "REDIS_URL"),
    "websocket": ("websocket_url", "--websocket-url", "WEBSOCKET_URL"),
}
"""Check -> (argparse dest, flag, environment variable) of the checks that need a URL."""
KUBE_CHECKS = ("backups", "releases")


def _duration(text: str) -> datetime.timedelta:
    """`26h`, `90m`, `45s`, `2d`, or seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration like 26h, 90m, 45s") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than zero")
    return datetime.timedelta(seconds=value)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown check {', '.join(unknown)}: use {', '.join(CHECKS)} or all"
        )
    return names


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `doctor` to the `chatops` parser."""
    help_ = "the daily health check: API, MongoDB, Redis, WebSocket, backups, releases"
    p = commands.add_parser("doctor", help=help_, description=help_ + (
        ". A check without its input is skipped; exit status 1 when any check failed."
    ))
    for check, (dest, flag, variable) in INPUTS.items():
        p.add_argument(flag, dest=dest, default=None, metavar="URL",
                       help=f"the {check} check's target (default: ${variable})")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--namespace", "-n", default=None,
                       help="where the ChatBackups and ChatReleases are (default: the kube "
                            "context's namespace)")
    where.add_argument("--all-namespaces", "-A", action="store_true",
                       help="check the ChatBackups and ChatReleases of every namespace")
    p.add_argument("--backup-max-age", type=_duration, default=_duration("26h"),
                   metavar="AGE", help="the oldest a last good backup may be (default 26h, "
                                       "as the chart's alert)")
    p.add_argument("--release-stuck-after", type=_duration, default=_duration("2h"),
                   metavar="AGE", help="a release still in progress after this is stuck "
                                       "(default 2h)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="per check (default 5)")
    p.add_argument("--require", type=_names, default=[], metavar="CHECKS",
                   help="comma-separated checks that fail when not configured, or `all`")
    p.add_argument("--skip", type=_names, default=[], metavar="CHECKS",
                   help="comma-separated checks not to run")
    p.add_argument("--output", "-o", choices=["table", "json"], default="table")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Planned:
    """A check to run: what it looks at (for the report) and how."""

    check: str
    target: str
    look: Callable[[], Finding]


def plan(args: argparse.Namespace, environ: Mapping[str, str]) -> list[Planned | Result]:
    """Every check, in order: planned with its input, or already a Result (skipped, or
    failed when required and missing). Pure: no I/O until a plan's `look` is called."""
    from chatops.adapters import probes

    out: list[Planned | Result] = []
    looks = {"api": probes.api_health, "mongodb": probes.mongodb_ping,
             "redis": probes.redis_ping, "websocket": probes.websocket_echo}
    for check in CHECKS:
        if check in args.skip:
            out.append(Result(check, "skipped", "-", "skipped (--skip)"))
        elif check in KUBE_CHECKS:
            scope = "all namespaces" if args.all_namespaces else (args.namespace or "")
            out.append(Planned(check, scope, functools.partial(_kube, check, args)))
        else:
            dest, flag, variable = INPUTS[check]
            url = getattr(args, dest) or environ.get(variable) or ""
            if not url:
                out.append(checks.unconfigured(check, f"{flag} or ${variable}",
                                               check in args.require))
            else:
                look = functools.partial(looks[check], url, args.timeout)
                out.append(Planned(check, checks.shown(url), look))
    return out


def _kube(check: str, args: argparse.Namespace) -> Finding:
    """The ChatBackups' or ChatReleases' verdict, from what the API server lists."""
    import urllib3
    from kubernetes import client

    from chatops import clock
    from chatops.adapters.kube import Cluster
    from chatops.commands.kube import connect

    api, namespace = connect(args.namespace)
    scope = None if args.all_namespaces else namespace
    where = scope or "all namespaces"
    plural = "chatbackups" if check == "backups" else "chatreleases"
    try:
        bodies = Cluster(api).resources(plural, scope, timeout=args.timeout)
    except client.ApiException as err:
        return Finding(False, f"listing {plural}: {err.status} {err.reason}", where)
    except (OSError, urllib3.exceptions.HTTPError) as err:  # refused, timed out
        return Finding(False, f"listing {plural}: the API server did not answer "
                              f"({type(err).__name__})", where)
    if check == "backups":
        found = checks.backups([checks.backup_seen(b) for b in bodies], clock.now(),
                               args.backup_max_age)
    else:
        found = checks.releases([checks.release_seen(b) for b in bodies], clock.now(),
                                args.release_stuck_after)
    return dataclasses.replace(found, target=where)


def _run(item: Planned | Result, args: argparse.Namespace) -> Result:
    from chatops.commands import CommandError

    if isinstance(item, Result):
        return item
    start = time.monotonic()
    try:
        finding = item.look()
    except CommandError as err:  # no kube context: the Kubernetes checks cannot run
        if item.check in args.require:
            return Result(item.check, "failed", item.target or "-", str(err))
        return Result(item.check, "skipped", item.target or "-", f"no kube context: {err}")
    return checks.judged(item.check, item.target, finding, time.monotonic() - start)


def results(args: argparse.Namespace, environ: Mapping[str, str]) -> list[Result]:
    """Every check's result, the checks run side by side."""
    planned = plan(args, environ)
    # the kubernetes client, imported before any check's clock starts
    import chatops.adapters.kube
    import chatops.commands.kube  # noqa: F401
    with ThreadPoolExecutor(max_workers=len(planned)) as pool:
        return list(pool.map(lambda item: _run(item, args), planned))


def run(args: argparse.Namespace) -> int:
    from chatops.doctor import report

    found: Sequence[Result] = results(args, os.environ)
    render = report.document if args.output == "json" else report.table
    sys.stdout.write(render(found))
    return checks.exit_code(found)
