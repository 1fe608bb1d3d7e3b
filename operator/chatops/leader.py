"""Leader election on a coordination.k8s.io Lease, so two replicas of the operator can
run and only one acts (as controller-runtime and Argo Rollouts do).

A replica waits until the Lease is free or expired, takes it by an update that carries
the resourceVersion it read (so two replicas cannot both win), then renews it. When a
renewal fails for longer than the Lease lasts, another replica may already act: the
leader must stop at once, and does so by exiting, which the Deployment restarts.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.rest import ApiException

from chatops import clock

log = logging.getLogger("chatops.leader")


@dataclass(frozen=True)
class Holding:
    """Who holds the Lease, as last written."""

    holder: str | None
    renewed: datetime.datetime | None
    seconds: int


def may_take(holding: Holding, identity: str, now: datetime.datetime) -> bool:
    """Whether `identity` may write itself as holder: the Lease is unheld, already its
    own, or its holder stopped renewing it for longer than it lasts."""
    if holding.holder in (None, "", identity) or holding.renewed is None:
        return True
    return now > holding.renewed + datetime.timedelta(seconds=holding.seconds)


class Election:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        identity: str,
        name: str = "chatops-leader",
        lease_seconds: int = 15,
    ) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds = lease_seconds

    def _try(self) -> bool:
        """One attempt to take or renew the Lease."""
        now = clock.now()
        try:
            lease = self.leases.read_namespaced_lease(self.name, self.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(now, acquired=now),
            )
            try:
                self.leases.create_namespaced_lease(self.namespace, body)
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        spec = lease.spec or client.V1LeaseSpec()
        holding = Holding(spec.holder_identity, spec.renew_time, spec.lease_duration_seconds or 0)
        if not may_take(holding, self.identity, now):
            return False
        acquired = spec.acquire_time if spec.holder_identity == self.identity else now
        lease.spec = self._spec(now, acquired=acquired or now)
        try:
            self.leases.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as conflict:
            if conflict.status == 409:  # someone else wrote it since we read it
                return False
            raise
        return True

    def _spec(self, now: datetime.datetime, acquired: datetime.datetime) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.lease_seconds,
            acquire_time=acquired,
            renew_time=now,
        )

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica leads (True) or `stop` is set (False)."""
        waiting_said = False
        while not stop.is_set():
            try:
                if self._try():
                    log.info(
                        "leading as %s (Lease %s/%s)", self.identity, self.namespace, self.name
                    )
                    return True
            except (ApiException, OSError) as err:
                log.warning("cannot reach the Lease %s/%s: %s", self.namespace, self.name, err)
            if not waiting_said:
                log.info(
                    "standing by: another replica holds Lease %s/%s", self.namespace, self.name
                )
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
                    if self._try():
                        last = clock.now()
                        continue
                    log.error("the Lease %s/%s was taken over", self.namespace, self.name)
                except (ApiException, OSError) as err:
                    log.warning("cannot renew the Lease: %s", err)
                    if clock.now() - last < datetime.timedelta(seconds=self.lease_seconds * 2 / 3):
                        continue
                lost()
                return

        thread = threading.Thread(target=renew, name="lease", daemon=True)
        thread.start()
        return thread
