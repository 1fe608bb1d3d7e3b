"""The `chatops` subcommands a human runs against a cluster (promote, abort, retry,
status). `chatops.cli` only wires them into argparse; each module here keeps its I/O
apart from the pure text it prints, so the text is tested without a cluster.

Modules that talk to the cluster are imported only when their command runs, so
`chatops crds` and `chatops --help` stay quick and need no kube context.
"""

from __future__ import annotations

from chatops.errors import ChatopsError


class CommandError(ChatopsError):
    """A command cannot do what was asked; the message says what to fix. The CLI prints
    it without a traceback and exits with status 1."""
