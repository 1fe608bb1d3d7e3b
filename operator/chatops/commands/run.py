"""`chatops run`: the operator process.

It serves `/metrics`, `/healthz` and `/readyz` on one port from the start, so a standby
replica is alive and ready while it waits for the leader Lease — alive meaning working:
the API server answers its credentials (adapters/reachability.py); with `--leader-elect`
it acts only once it holds the Lease, and exits the moment it cannot keep it (its
Deployment restarts it as a standby).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from typing import Any

from chatops import telemetry
from chatops.notify.outbox import Retry

log = logging.getLogger("chatops")


def add_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: the whole cluster",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json writes one JSON object per line, for log collectors",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve /metrics, /healthz and /readyz on this port (default: off)",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="act only while holding the Lease chatops-leader (for replicas > 1)",
    )
    run.add_argument(
        "--leader-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the leader Lease (default: $POD_NAMESPACE or default)",
    )
    run.add_argument(
        "--lease-namespace",
        default=None,
        help="namespace of the database Leases, where backups and restores from every "
        "namespace meet (default: $POD_NAMESPACE or default)",
    )
    run.add_argument(
        "--notify-retry",
        type=_retry,
        default=Retry(),
        metavar="FIRST,CAP,ATTEMPTS",
        help="when a notification attempt fails: seconds to the first retry (doubling "
        "after), the most between two, attempts in all (default 1,60,10: about 4 minutes)",
    )
    run.add_argument(
        "--sweep-interval",
        type=_seconds,
        default=2.0,
        metavar="SECONDS",
        help="check every analysis in progress this often between its rounds, with one "
        "Prometheus query per metric template for all releases, and take a release's "
        "next round at once when a metric is out of bounds; best your Prometheus scrape "
        "interval (default 2; 0 turns it off)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 300:
        raise argparse.ArgumentTypeError("between 0 (off) and 300 seconds")
    return value


def _retry(text: str) -> Retry:
    try:
        return Retry.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    from chatops.adapters import malloc

    malloc.configure()  # before any thread of ours starts: see adapters/malloc.py
    import kopf  # imported here: other commands need no operator machinery

    import chatops.handlers  # noqa: F401 - registers the handlers
    from chatops.adapters import reachability
    from chatops.handlers import sweep
    from chatops.handlers.settings import api_client
    from chatops.notify import dispatcher

    kopf.configure(
        debug=args.log_level == "debug",
        quiet=args.log_level in ("warning", "error"),
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    dispatcher.configure(args.notify_retry)
    sweep.configure(args.sweep_interval)
    if args.lease_namespace:
        from chatops.adapters.lease import NAMESPACE_ENV

        os.environ[NAMESPACE_ENV] = args.lease_namespace
    if args.metrics_port:
        telemetry.serve(args.metrics_port)
    stop = threading.Event()
    reachability.watch(telemetry.health, api_client, stop)
    if args.leader_elect:
        from chatops.adapters.lease import Election

        identity = f"{socket.gethostname()}-{os.getpid()}"
        election = Election(api_client(), args.leader_namespace, identity)
        telemetry.health.standing_by()
        # A standby stops at SIGTERM (in a container it is PID 1, whose unhandled SIGTERM
        # the kernel ignores: the kubelet would wait out the grace period and kill it);
        # once leading, kopf's own handler takes the signal over.
        waiting = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            if not election.acquire(stop):
                return 0
        finally:
            signal.signal(signal.SIGTERM, waiting)
        election.keep(_lost, stop)
    telemetry.health.leading()
    kwargs: dict[str, Any] = {
        "standalone": True,
        "clusterwide": not args.namespace,
        "namespaces": args.namespace or (),
    }
    if args.namespace:
        kwargs["settings"] = _namespaced_settings(kopf)
    kopf.run(**kwargs)
    stop.set()
    return 0


def _namespaced_settings(kopf: Any) -> Any:
    """kopf settings for `--namespace`: serve exactly the namespaces named.

    kopf's namespace discovery, at startup, leaves out a namespace being deleted whose
    content is still blocked — by our own finalizers — so an operator started after the
    namespace was deleted would never finish them and the namespace would stay
    Terminating forever. The names given are exact, so there is nothing to discover:
    without scanning, kopf watches each of them whatever its phase (and takes the CRDs
    present at startup, which the chart installs first)."""
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    return settings


def _lost() -> None:
    """Another replica may be acting already: stop now, without finishing anything."""
    log.critical("lost the leader Lease; exiting so that only one replica acts")
    logging.shutdown()
    os._exit(1)
