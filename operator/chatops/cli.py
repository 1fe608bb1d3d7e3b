"""The `chatops` command.

chatops run [--namespace NS ...]       run the operator against the current kube context
chatops crds [--out DIR]               print the CRDs (or write them as crds/ holds them)
chatops promote NAME [--full] [-n NS]  promote a ChatRelease one step (or fully)
chatops abort NAME [-n NS]             roll a ChatRelease back
chatops retry NAME [-n NS]             release a rolled-back version again
chatops status NAME [--watch] [-n NS]  phase, step, weight, versions, last measurements
chatops get release NAME [--watch]     the release as a tree: components, colors, weights
chatops backups NAME [-n NS]           a ChatBackup's backups in S3, with size and age
chatops backup-now NAME [-n NS]        ask for one backup now
chatops restore-points NAME [-n NS]    the times a point-in-time restore can target
chatops doctor [-o json] [-n NS|-A]    the daily health check: API, MongoDB, Redis,
                                       WebSocket, backups' age, releases not Succeeded
chatops completion bash|zsh|tcsh       the shell's tab completion of these commands
chatops --version                      the installed package's version (as the image reports it)

Installed as `kubectl-chatops` too, a kubectl plugin: `kubectl chatops status NAME`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import pathlib
import sys

from chatops.api import crd
from chatops.commands import CommandError, backups, doctor, get, release
from chatops.commands import run as run_command


def _crds(args: argparse.Namespace) -> int:
    if args.out is None:
        for _, definition in crd.definitions():
            sys.stdout.write(crd.render(definition))
        return 0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, definition in crd.definitions():
        (out / name).write_text(crd.render(definition))
        print(f"wrote {out / name}")
    return 0


def _completion(args: argparse.Namespace) -> int:
    import shtab  # only this command needs it

    sys.stdout.write(shtab.complete(parser(), shell=args.shell))  # of `chatops`
    return 0


def parser(prog: str = "chatops") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    top.add_argument(
        "--version", action="version", version=f"chatops {importlib.metadata.version('chatops')}"
    )
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kube context")
    run_command.add_arguments(run)
    run.set_defaults(func=run_command.run)

    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions")
    crds.add_argument("--out", default=None, help="write one file per CRD into this folder")
    crds.set_defaults(func=_crds)

    release.register(commands)
    get.register(commands)
    backups.register(commands)
    doctor.register(commands)

    completion = commands.add_parser(
        "completion", help="print the shell's tab completion of these commands",
        description="print the shell's tab completion of the chatops command: "
        "`source <(chatops completion bash)`",
    )
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    completion.set_defaults(func=_completion)
    return top


def kubectl_main(argv: list[str] | None = None) -> int:
    """`kubectl-chatops`: kubectl runs it for `kubectl chatops …` (a kubectl plugin)."""
    return main(argv, prog="kubectl chatops")


def main(argv: list[str] | None = None, prog: str = "chatops") -> int:
    args = parser(prog).parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
