"""Leases (coordination.k8s.io/v1) that keep two things from happening at once.

- The database Lease, one per MongoDB deployment: a backup and a restore of the same
  database never run at once (the restore would race the dump, or the dump would save a
  half-restored database).
- The worker Lease, one per ChatBackup or ChatRecovery: only one operator process works
  on an object at a time, even with several replicas (or a restarted process whose
  predecessor is not quite dead). A `Running` status whose worker Lease is still renewed
  is a run going on elsewhere, not an interrupted one.

Whoever holds the Lease renews it every `RENEW_SECONDS`; a holder that dies stops
renewing, and after `LEASE_SECONDS` anyone may take it. The holder identity names the
resource and its uid (`chatbackup/ns/name uid=…`), so an operator restarted in the middle
of a run takes its own Lease back at once instead of waiting for it to expire.

The Lease is named after the deployment's hosts, not the database: a backup of every
database and a restore of one of them must exclude each other too. The cost is that two
backups of different databases on one server take turns, which also spares the server.
Updates use the Lease's resourceVersion, so two contenders never both win.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import re
import socket
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from chatops import clock

LEASE_SECONDS = 30
RENEW_SECONDS = 10
PREFIX = "chatops-db-"
PROCESS = f"{socket.gethostname()}-{os.getpid()}"
"""This operator process, as a worker Lease's holder."""
log = logging.getLogger("chatops.lease")


def hosts_of(uri: str) -> str:
    """The host list of a connection string, without scheme, credentials, database and
    options, lowercased and sorted: the identity of a MongoDB deployment."""
    rest = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", uri)
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    return ",".join(sorted(h.strip().lower() for h in rest.split(",") if h.strip()))


def lease_name(uri: str) -> str:
    """`chatops-db-<hash of the hosts>`: the same for every resource reaching that
    MongoDB, whatever credentials or options its connection string has."""
    return PREFIX + hashlib.sha256(hosts_of(uri).encode()).hexdigest()[:16]


def worker_lease_name(kind: str, name: str) -> str:
    """`chatops-<kind>-<name>`, e.g. chatops-chatbackup-nightly (in the object's namespace;
    names up to 63 characters plus the prefix fit a Lease name)."""
    return f"chatops-{kind.lower()}-{name}"


@dataclasses.dataclass(frozen=True)
class Holding:
    """Who holds a Lease, as the API server shows it."""

    holder: str | None
    renewed: datetime.datetime | None
    duration_seconds: int = LEASE_SECONDS

    def free_for(self, me: str, now: datetime.datetime) -> bool:
        """Nobody holds it, `me` does, or its holder stopped renewing it."""
        if not self.holder or self.holder == me or self.renewed is None:
            return True
        return (now - self.renewed).total_seconds() > self.duration_seconds


def _micro(now: datetime.datetime) -> str:
    # MicroTime wants exactly six fractional digits; isoformat() drops them at .000000.
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    """One Lease, contended for by one identity."""

    @classmethod
    def worker(cls, api: client.ApiClient, namespace: str, kind: str, name: str) -> Lease:
        """The worker Lease of one object, for this process."""
        return cls(api, namespace, worker_lease_name(kind, name), PROCESS)

    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str) -> None:
        self._api = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity

    def _body(self, now: datetime.datetime, version: str | None, acquired: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": _micro(now),
        }
        if acquired:
            spec["acquireTime"] = _micro(now)
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            meta["resourceVersion"] = version
        labels = {"app.kubernetes.io/managed-by": "chatops"}
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {**meta, "labels": labels},
            "spec": spec,
        }

    def holding(self) -> tuple[Holding, str] | None:
        """Who holds it and the resourceVersion; None when there is no Lease."""
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        spec = lease.spec
        renewed = spec.renew_time or spec.acquire_time
        return (
            Holding(spec.holder_identity, renewed, spec.lease_duration_seconds or LEASE_SECONDS),
            str(lease.metadata.resource_version),
        )

    def acquire(self) -> str | None:
        """Take or renew the Lease; None when we hold it now, else who holds it."""
        now = clock.now()
        found = self.holding()
        try:
            if found is None:
                self._api.create_namespaced_lease(self.namespace, self._body(now, None, True))
                return None
            holding, version = found
            if not holding.free_for(self.identity, now):
                return holding.holder
            body = self._body(now, version, holding.holder != self.identity)
            self._api.replace_namespaced_lease(self.name, self.namespace, body)
            return None
        except ApiException as err:
            if err.status == 409:  # someone else wrote it between our read and write
                again = self.holding()
                return again[0].holder if again else "another contender"
            raise

    def release(self) -> None:
        """Give the Lease up (only if we still hold it), so the other side starts at once."""
        found = self.holding()
        if found is None or found[0].holder != self.identity:
            return
        body = self._body(clock.now(), found[1], False)
        body["spec"] = {"holderIdentity": None, "leaseDurationSeconds": LEASE_SECONDS}
        try:
            self._api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as err:
            if err.status not in (404, 409):
                raise


class Renewal:
    """Keeps a held Lease renewed from a thread of its own until `stop()`. `lost` says why
    the Lease is no longer ours (another holder took it), so a run can stop."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._lease = lease
        self._stop = threading.Event()
        self.lost: str | None = None
        self._thread = threading.Thread(
            target=self._loop, name=f"chatops-lease-{lease.name}", daemon=True
        )

    def start(self) -> Renewal:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                holder = self._lease.acquire()
            except (ApiException, OSError) as err:  # the API server hiccuped: try again
                log.warning("renewing Lease %s: %s", self._lease.name, type(err).__name__)
                continue
            if holder is not None:
                self.lost = f"the database Lease {self._lease.name} was taken by {holder}"
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=RENEW_SECONDS)
