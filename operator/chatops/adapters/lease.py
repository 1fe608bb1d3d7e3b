"""Leases (coordination.k8s.io/v1) that keep two things from happening at once: the one
implementation of a Lease in chatops.

- The database Lease, one per MongoDB deployment: a backup and a restore of the same
  database never run at once (the restore would race the dump, or the dump would save a
  half-restored database).
- The worker Lease, one per ChatBackup or ChatRecovery: only one operator process works
  on an object at a time, even with several replicas (or a restarted process whose
  predecessor is not quite dead). A `Running` status whose worker Lease is still renewed
  is a run going on elsewhere, not an interrupted one.
- The leader Lease (`Election`): with several replicas, only one acts.

Whoever holds a Lease renews it well within its duration; a holder that dies stops
renewing, and after the duration anyone may take it. The holder identity names the
resource (`chatbackup/ns/name`), so an operator restarted in the middle of a run takes its
own Lease back at once instead of waiting for it to expire.

The database Lease is named after the deployment's identity as the server tells it, not
the connection string: the replica set name from `hello` when there is one, else the
server addresses resolved to IPs (see `Mongo.identity`). So `localhost` and `127.0.0.1`,
or an SRV record and a seed list, meet on one Lease. It is kept in one namespace for all
(`lease_namespace`: the operator's own), so runs from every namespace meet there. It is
per server, not per database: a backup of every database and a restore of one of them
must exclude each other too; two backups of different databases on one server take
turns, which also spares the server. Updates carry the Lease's resourceVersion, so two
contenders never both win.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from chatops import clock

LEASE_SECONDS = 30
RENEW_SECONDS = 10
PREFIX = "chatops-db-"
NAMESPACE_ENV = "CHATOPS_LEASE_NAMESPACE"
PROCESS = f"{socket.gethostname()}-{os.getpid()}"
"""This operator process, as a worker Lease's holder."""
log = logging.getLogger("chatops.lease")


def lease_namespace() -> str:
    """Where database Leases live, for every namespace's runs to meet: `--lease-namespace`
    (`$CHATOPS_LEASE_NAMESPACE`), else the operator's own namespace (`$POD_NAMESPACE`, set
    by the chart), else `default`."""
    return os.environ.get(NAMESPACE_ENV) or os.environ.get("POD_NAMESPACE") or "default"


def database_lease_name(identity: str) -> str:
    """`chatops-db-<hash of the deployment's identity>` (see `Mongo.identity`)."""
    return PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:16]


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

    @classmethod
    def database(cls, api: client.ApiClient, identity: str, holder: str) -> Lease:
        """The database Lease of the deployment `identity` (`Mongo.identity`), in the
        namespace where every namespace's runs meet."""
        return cls(api, lease_namespace(), database_lease_name(identity), holder)

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, identity: str,
        seconds: int = LEASE_SECONDS,
    ) -> None:
        self._api = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.seconds = seconds

    def _body(self, now: datetime.datetime, version: str | None, acquired: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.seconds,
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
            Holding(spec.holder_identity, renewed, spec.lease_duration_seconds or self.seconds),
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
        body["spec"] = {"holderIdentity": None, "leaseDurationSeconds": self.seconds}
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


class Election:
    """Leader election on a Lease, so two replicas of the operator can run and only one
    acts (as controller-runtime and Argo Rollouts do). A replica waits until the Lease is
    free or expired, takes it, then renews it every third of its duration; when renewals
    fail for longer than the Lease lasts, another replica may already act: `keep` calls
    `lost`, and the process exits (its Deployment restarts it as a standby)."""

    def __init__(
        self, api: client.ApiClient, namespace: str, identity: str,
        name: str = "chatops-leader", lease_seconds: int = 15,
    ) -> None:
        self.lease = Lease(api, namespace, name, identity, lease_seconds)
        self.lease_seconds = lease_seconds

    @property
    def where(self) -> str:
        return f"{self.lease.namespace}/{self.lease.name}"

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica leads (True) or `stop` is set (False)."""
        waiting_said = False
        while not stop.is_set():
            try:
                if self.lease.acquire() is None:
                    log.info("leading as %s (Lease %s)", self.lease.identity, self.where)
                    return True
            except (ApiException, OSError) as err:
                log.warning("cannot reach the Lease %s: %s", self.where, err)
            if not waiting_said:
                log.info("standing by: another replica holds Lease %s", self.where)
                waiting_said = True
            stop.wait(self.lease_seconds / 3)
        return False

    def keep(self, lost: Callable[[], None], stop: threading.Event) -> threading.Thread:
        """Renew every third of the Lease in a thread; call `lost` when it cannot be
        renewed before it expires."""

        def renew() -> None:
            last = clock.now()
            while not stop.wait(self.lease_seconds / 3):
                try:
                    if self.lease.acquire() is None:
                        last = clock.now()
                        continue
                    log.error("the Lease %s was taken over", self.where)
                except (ApiException, OSError) as err:
                    log.warning("cannot renew the Lease: %s", err)
                    if clock.now() - last < datetime.timedelta(seconds=self.lease_seconds * 2 / 3):
                        continue
                lost()
                return

        thread = threading.Thread(target=renew, name="lease", daemon=True)
        thread.start()
        return thread
