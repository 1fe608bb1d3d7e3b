"""Where a ChatBackup or ChatRecovery gets its secrets: the MongoDB connection string and
the S3 access keys, read from the Secrets the spec names at the moment a run needs them.

They are kept in memory only as long as the run, and every message that leaves a run
goes through `Secrets.scrub`, so a driver error quoting a connection string or a key
cannot carry it into a status, an Event or a log line.
"""

from __future__ import annotations

import dataclasses

from kubernetes import client

from chatops.adapters import s3
from chatops.adapters.kube import Cluster
from chatops.adapters.mongo import uri_problem
from chatops.adapters.redact import redact, uri_secrets
from chatops.api.backup import MongoURISecretRef, S3Endpoint
from chatops.api.common import SecretKeyRef
from chatops.errors import InvalidSpec


@dataclasses.dataclass(frozen=True)
class Secrets:
    """The values read out of Secrets for one run; none of them shows in a repr."""

    mongo_uri: str = dataclasses.field(repr=False)
    s3: s3.Credentials | None = dataclasses.field(default=None, repr=False)

    @property
    def values(self) -> list[str]:
        found = uri_secrets(self.mongo_uri)
        if self.s3 is not None:
            found.append(self.s3.secret_access_key)
        return found

    def scrub(self, text: str) -> str:
        """`text` without any credential of this run (URI user-info, password, S3 key)."""
        return redact(text, self.values)


def _secret(
    cluster: Cluster, resource: str, namespace: str, field: str, name: str, key: str
) -> str:
    try:
        return cluster.secret_value(namespace, name, key)
    except KeyError:
        raise InvalidSpec(
            resource, field, f"Secret {namespace}/{name} has no key {key!r}; add it"
        ) from None
    except client.ApiException as err:
        problem = "does not exist" if err.status == 404 else f"cannot be read (HTTP {err.status})"
        raise InvalidSpec(
            resource, field, f"Secret {namespace}/{name} {problem}; create it or fix the name"
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise InvalidSpec(
            resource, field, f"Secret {namespace}/{name} key {key!r} is not UTF-8 text"
        ) from None


def read(
    cluster: Cluster,
    resource: str,
    namespace: str,
    mongo: MongoURISecretRef,
    mongo_field: str,
    storage: S3Endpoint,
    storage_field: str,
) -> Secrets:
    """The run's secrets; InvalidSpec naming the field and the Secret when one is missing
    (or the connection string would be misread)."""
    uri = read_uri(cluster, resource, namespace, mongo, mongo_field)
    return Secrets(uri, read_s3(cluster, resource, namespace, storage, storage_field))


def read_uri(
    cluster: Cluster, resource: str, namespace: str, mongo: SecretKeyRef, field: str
) -> str:
    """The connection string, refused (without quoting it) if pymongo would misread it."""
    uri = _secret(cluster, resource, namespace, field, mongo.name, mongo.key)
    problem = uri_problem(uri)
    if problem is not None:
        raise InvalidSpec(
            resource, field, f"Secret {namespace}/{mongo.name} key {mongo.key!r}: {problem}"
        )
    return uri


def read_s3(
    cluster: Cluster, resource: str, namespace: str, storage: S3Endpoint, storage_field: str
) -> s3.Credentials | None:
    """The S3 key pair the spec names; None for the default AWS chain."""
    ref = storage.credentials_secret_ref
    if ref is None:
        return None
    field = f"{storage_field}.credentialsSecretRef"
    key_id = _secret(cluster, resource, namespace, field, ref.name, ref.access_key_id_key)
    secret = _secret(cluster, resource, namespace, field, ref.name, ref.secret_access_key_key)
    return s3.Credentials(key_id, secret)


@dataclasses.dataclass(frozen=True)
class References:
    """The Secrets a resource's spec names, and the fields naming them."""

    resource: str
    namespace: str
    mongo: MongoURISecretRef
    mongo_field: str
    storage: S3Endpoint
    storage_field: str

    def read(self, cluster: Cluster) -> Secrets:
        return read(cluster, self.resource, self.namespace, self.mongo, self.mongo_field,
                    self.storage, self.storage_field)

    def unresolved(self, cluster: Cluster) -> list[str]:
        """What the referenced Secrets lack, one `field: problem` each (empty when a run
        could read everything it needs). Checked at every look, so a Secret that appears or
        is fixed is noticed without waiting for the schedule; the values are dropped."""
        found = []
        for check in (
            lambda: read_uri(cluster, self.resource, self.namespace, self.mongo,
                             self.mongo_field),
            lambda: read_s3(cluster, self.resource, self.namespace, self.storage,
                            self.storage_field),
        ):
            try:
                check()
            except InvalidSpec as err:
                found.append(f"{err.field}: {err.problem}")
        return found


def store(endpoint: S3Endpoint, secrets: Secrets) -> s3.Store:
    """The bucket, reached with the Secret's keys or else the default AWS chain (IRSA)."""
    return s3.Store(endpoint, secrets.s3)
