"""`chatops get release NAME [--watch [--until-done]]`: a ChatRelease drawn as a tree
(`release_tree`), read once, or redrawn on every change as `kubectl argo rollouts get
rollout --watch` does.

A watch follows two things at once through the watch API: the ChatRelease and the
Deployments chatops made for it, each on a thread of its own that hands what it saw to
the drawing loop. On a terminal every frame replaces the last (the screen is cleared,
and redrawn each second so the ages move); into a pipe or a file each frame is printed
after a blank line, and only when something other than an age changed, so a log of the
watch reads as the story of the release.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from chatops import clock
from chatops.commands import CommandError, release_tree, release_view
from chatops.commands.release import EXIT_ROLLED_BACK  # as `chatops status --watch`

if TYPE_CHECKING:
    from chatops.commands.releases import Releases

EXIT_INTERRUPTED = 130
"""Ctrl-C, as a shell reports a command ended by SIGINT."""
_TICK = 1.0
"""Seconds between redraws on a terminal (ages move), and between wake-ups elsewhere: a
Ctrl-C that the kernel hands to a watch thread only sets Python's flag, and the main
thread acts on it when it next wakes — never, if it waited on the queue without end."""
"""Seconds between redraws on a terminal when nothing changed (the ages move)."""
_CLEAR = "\x1b[H\x1b[2J"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `get release` to the `chatops` parser."""
    get = commands.add_parser(
        "get", help="draw a chatops object as a tree", description="draw a chatops object"
    )
    kinds = get.add_subparsers(dest="kind", required=True, metavar="KIND")
    help = "draw a ChatRelease's components, colors, weights, replicas and measurements"
    release = kinds.add_parser(
        "release", aliases=["releases", "chatrelease", "crel"], help=help, description=help
    )
    release.add_argument("name", metavar="NAME", help="the ChatRelease")
    release.add_argument(
        "--namespace", "-n", default=None, help="its namespace (default: the kube context's)"
    )
    release.add_argument(
        "--watch", "-w", action="store_true",
        help="redraw on every change of the release or its Deployments, until Ctrl-C",
    )
    release.add_argument(
        "--until-done", action="store_true",
        help="with --watch: stop when the release ends; exit 0 if it Succeeded, "
        f"{EXIT_ROLLED_BACK} if it RolledBack or Failed",
    )
    release.add_argument(
        "--no-color", action="store_true",
        help="no colors (the default on anything but a terminal, or with NO_COLOR set)",
    )
    release.set_defaults(func=_get_release)


def _get_release(args: argparse.Namespace) -> int:
    if args.until_done and not args.watch:
        raise CommandError("--until-done follows a watch: add --watch")
    tty = sys.stdout.isatty()
    color = tty and not args.no_color and not os.environ.get("NO_COLOR")
    from chatops.commands.releases import Releases  # the kubernetes client, only now

    with Releases.connect(args.namespace) as releases:
        if not args.watch:
            body = releases.get(args.name)
            sys.stdout.write(
                release_tree.render(body, releases.deployments(args.name), clock.now(), color)
            )
            return 0
        try:
            return _watch(releases, args.name, args.until_done, tty, color)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED


def _watch(releases: Releases, name: str, until_done: bool, tty: bool, color: bool) -> int:
    shown: tuple[release_tree.Row, ...] | None = None
    for release, deployments in _states(releases, name, tick=_TICK):
        rows = release_tree.unchanged(release_tree.tree(release, deployments, clock.now()))
        if tty or rows != shown:
            frame = release_tree.render(release, deployments, clock.now(), color)
            sys.stdout.write(_CLEAR + frame if tty else ("\n" if shown else "") + frame)
            sys.stdout.flush()
            shown = rows
        state = release_view.view(release)
        if until_done and state.finished:
            return 0 if state.phase == "Succeeded" else EXIT_ROLLED_BACK
    raise CommandError(f"{releases.resource(name)} was deleted from namespace {releases.namespace}")


def _states(
    releases: Releases, name: str, tick: float
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(the release, its Deployments) once both were read, then after every change of
    either, and every `tick` seconds. Ends when the release is deleted."""
    seen: queue.Queue[tuple[str, Any]] = queue.Queue()
    _follow(seen, "release", lambda: releases.changes(name))
    _follow(seen, "deployments", lambda: releases.deployment_changes(name))
    latest: dict[str, Any] = {}
    while True:
        try:
            kind, value = seen.get(timeout=tick)
        except queue.Empty:
            kind, value = "tick", None
        if isinstance(value, Exception):
            raise value  # from the thread that met it, to the command's exit
        if kind == "release" and value is None:
            return  # deleted
        if kind != "tick":
            latest[kind] = value
        if len(latest) == 2:
            yield latest["release"], latest["deployments"]


def _follow(into: queue.Queue[tuple[str, Any]], kind: str, source: Any) -> None:
    """Read `source()` on a daemon thread (it ends with the command), putting each item
    into `into` as (kind, item), then (kind, None) when it ends, or the error it raised."""

    def pump() -> None:
        try:
            for item in source():
                into.put((kind, item))
            into.put((kind, None))
        except Exception as err:  # handed to the drawing loop, which raises it
            into.put((kind, err))

    threading.Thread(target=pump, name=f"watch-{kind}", daemon=True).start()
