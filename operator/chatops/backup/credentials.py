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
from chatops.adapters.redact import redact, uri_secrets
from chatops.api.backup import MongoURISecretRef, S3Endpoint
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
    """The run's secrets; InvalidSpec naming the field and the Secret when one is missing."""
    uri = _secret(cluster, resource, namespace, mongo_field, mongo.name, mongo.key)
    ref = storage.credentials_secret_ref
    if ref is None:
        return Secrets(uri)
    field = f"{storage_field}.credentialsSecretRef"
    key_id = _secret(cluster, resource, namespace, field, ref.name, ref.access_key_id_key)
    secret = _secret(cluster, resource, namespace, field, ref.name, ref.secret_access_key_key)
    return Secrets(uri, s3.Credentials(key_id, secret))


def store(endpoint: S3Endpoint, secrets: Secrets) -> s3.Store:
    """The bucket, reached with the Secret's keys or else the default AWS chain (IRSA)."""
    return s3.Store(endpoint, secrets.s3)
