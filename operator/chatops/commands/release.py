"""`chatops promote | abort | retry | status`: a human's hands on a ChatRelease.

The commands only set the annotations the operator reads (`chatops.dev/promote`,
`chatops.dev/abort`, `chatops.dev/retry`) and read the status it writes; they never
move traffic or scale anything themselves, so what a human does by CLI is exactly what
a GitOps commit of the same annotation would do, and the operator stays the only writer
of the cluster's release state. Each request carries a value of its own (`step@<time>`),
and the operator removes it only if it still has the value it acted on: a second
`chatops promote` while the first is being acted on is a second request, never lost.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from chatops import clock
from chatops.annotations import ABORT, PROMOTE, RETRY, request
from chatops.commands import CommandError, release_view

if TYPE_CHECKING:
    from chatops.commands.releases import Releases

PENDING_WAIT = 60.0
"""Seconds a request waits for an earlier one of the same kind to be taken: two
`chatops promote` in a row are two steps, the second written once the first is taken."""
EXIT_ROLLED_BACK = 2
"""`status --watch` exit status when the release ended RolledBack or Failed, so a
pipeline step can wait on a release and fail with it."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the release commands to the `chatops` parser."""
    promote = _command(commands, "promote", "promote a ChatRelease one step, or fully")
    promote.add_argument(
        "--full", action="store_true", help="skip the remaining steps and analysis: go to 100%%"
    )
    promote.set_defaults(func=_promote)
    _command(commands, "abort", "roll a ChatRelease back to its stable version").set_defaults(
        func=_annotate(ABORT, "abort: traffic goes back to the stable version")
    )
    _command(commands, "retry", "release again a version that was rolled back").set_defaults(
        func=_annotate(RETRY, "retry the rolled-back version")
    )
    status = _command(commands, "status", "show a ChatRelease's phase, step and measurements")
    status.add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="follow it live until it ends (Succeeded, RolledBack, Failed) or Ctrl-C; "
        f"exits {EXIT_ROLLED_BACK} if it rolled back or failed",
    )
    status.set_defaults(func=_status)


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help, description=help)
    parser.add_argument("name", metavar="NAME", help="the ChatRelease")
    parser.add_argument(
        "--namespace", "-n", default=None, help="its namespace (default: the kube context's)"
    )
    return parser


# -- the commands -------------------------------------------------------------------


def _promote(args: argparse.Namespace) -> int:
    how = "full" if args.full else "step"
    what = "promote fully (skip the remaining steps)" if args.full else "promote one step"
    return _set_annotation(args, PROMOTE, how, what)


def _annotate(key: str, what: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        return _set_annotation(args, key, "true", what)

    return command


def _set_annotation(args: argparse.Namespace, key: str, how: str, what: str) -> int:
    value = request(how, clock.now())
    with _connect(args.namespace) as releases:
        body = releases.request(args.name, key, value, PENDING_WAIT)
    print(f"chatrelease {releases.namespace}/{args.name}: asked to {what} ({key}={value})")
    release = release_view.view(body)
    if release.finished and key != RETRY:
        print(
            f"note: the release is {release.phase}; the operator acts on this only "
            "while a new version is in progress",
            file=sys.stderr,
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    with _connect(args.namespace) as releases:
        if args.watch:
            return _follow(releases, args.name)
        sys.stdout.write(release_view.render(release_view.view(releases.get(args.name))))
    return 0


def _follow(releases: Releases, name: str) -> int:
    """Print the status whenever its text changes, until the release ends."""
    shown = ""
    try:
        for body in releases.changes(name):
            release = release_view.view(body)
            text = release_view.render(release)
            if text != shown:
                sys.stdout.write(("\n" if shown else "") + text)
                sys.stdout.flush()
                shown = text
            if release.finished:
                return 0 if release.phase == "Succeeded" else EXIT_ROLLED_BACK
    except KeyboardInterrupt:
        return 130
    raise CommandError(f"{releases.resource(name)} was deleted from namespace {releases.namespace}")


def _connect(namespace: str | None) -> Releases:
    from chatops.commands.releases import Releases  # the kubernetes client, only now

    return Releases.connect(namespace)
