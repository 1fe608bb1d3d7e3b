"""Every error chatops raises on purpose, in one hierarchy.

    ChatopsError
    ├── InvalidSpec          a resource's spec cannot be acted on; names resource and field
    │   └── UnknownPlaceholder   a metric query names a {{placeholder}} chatops cannot fill
    ├── TrafficRoutingError  an HTTPRoute, Ingress or Service cannot carry the traffic split
    │                        asked for; names the object and what it must contain
    ├── RevisionUnavailable  a Deployment cannot be put back on a revision: nothing kept it
    ├── MetricsUnavailable   Prometheus gave no single number: unreachable, HTTP error, bad
    │   │                    query, or more than one series (an Error measurement, not a Fail)
    │   └── WebMetricUnavailable a `web` metric's endpoint gave no number (timeout, HTTP
    │                        status, not JSON, not a number): an Error measurement too
    ├── StorageError         S3 refused or failed a request (bucket, key, error code)
    ├── DatabaseError        MongoDB refused or failed a request (host at most)
    ├── BackupFailed         a backup run produced no complete backup (nothing listed)
    └── RestoreFailed        a restore could not be completed
        └── VerificationFailed   a backup or restored data does not match the manifest

A user-facing error says which resource, which field, and what to do. None of them may
carry a secret: messages are built from names and field paths, never from values read
out of Secrets.
"""

from __future__ import annotations


class ChatopsError(Exception):
    """Base of the errors chatops raises on purpose."""


class InvalidSpec(ChatopsError):
    """The spec of a resource passed the API server's schema but cannot be acted on."""

    def __init__(self, resource: str, field: str, problem: str) -> None:
        self.resource = resource
        self.field = field
        self.problem = problem
        super().__init__(f"{resource}: {field}: {problem}")


class StorageError(ChatopsError):
    """The object store (S3) refused or failed a request. The message names the bucket,
    key and the store's error code; never a credential."""


class DatabaseError(ChatopsError):
    """MongoDB refused or failed a request. The message has the host at most, never the
    user or password of the connection string."""


class OplogGap(DatabaseError):
    """The oplog no longer holds a position a reader resumes from: it rolled over past
    it, and the entries between are lost. `after` is the position asked for, `oldest` the
    first the oplog still holds (both `chatops.backup.oplog.OpTime`, or None)."""

    def __init__(self, message: str, after: object = None, oldest: object = None) -> None:
        super().__init__(message)
        self.after, self.oldest = after, oldest


class BackupFailed(ChatopsError):
    """A backup run did not produce a complete backup. Whatever it had uploaded was
    aborted and no manifest was written, so nothing half-done is ever listed."""


class RestoreFailed(ChatopsError):
    """A restore could not be completed."""


class VerificationFailed(RestoreFailed):
    """A backup does not match its manifest (a changed byte, a missing collection), or the
    restored database does not match the backup. Raised before the database is touched
    when the tarball itself is at fault."""


class UnknownPlaceholder(InvalidSpec):
    """A metric's query uses a `{{placeholder}}` chatops has no value for: left in, it would
    reach Prometheus with braces and fail at every measurement, so it is refused up front."""

    def __init__(self, field: str, placeholder: str, known: tuple[str, ...]) -> None:
        self.placeholder = placeholder
        choices = ", ".join("{{" + name + "}}" for name in known)
        super().__init__(
            "ChatRelease", field, f"unknown placeholder {{{{{placeholder}}}}}; use one of {choices}"
        )


class TrafficRoutingError(ChatopsError):
    """Traffic cannot be moved as asked: the user's routing object is missing, does not route
    to the Services the release owns, or the router cannot express the weight. Retrying
    does not help until a human fixes the object the message names."""

    def __init__(self, resource: str, problem: str) -> None:
        self.resource = resource
        self.problem = problem
        super().__init__(f"{resource}: {problem}")


class RevisionUnavailable(ChatopsError):
    """A rolling rollback cannot put a Deployment back on the stable version: neither the
    ControllerRevision chatops keeps nor a ReplicaSet holds that template. A human must
    apply it; the release says so instead of claiming a rollback."""

    def __init__(self, resource: str, problem: str) -> None:
        self.resource = resource
        self.problem = problem
        super().__init__(f"{resource}: {problem}")


class MetricsUnavailable(ChatopsError):
    """A query got no usable answer: Prometheus unreachable or too slow, an HTTP error, a
    query Prometheus refused, or a result that is not one number. The analysis records an
    *Error* measurement: it pauses a release and never promotes it; only more than
    `consecutiveErrorLimit` in a row abort. The message never carries the bearer token."""

    def __init__(self, address: str, problem: str) -> None:
        self.address = address
        self.problem = problem
        super().__init__(f"Prometheus at {address}: {problem}")


class WebMetricUnavailable(MetricsUnavailable):
    """A `web` metric got no usable answer: no answer within its timeout, a status other
    than 2xx, a body that is not JSON, a jsonPath matching something that is not one
    number, or a header Secret that cannot be read. An Error measurement, as when
    Prometheus is down. The message names the metric and the endpoint (`GET url`, without
    any user-info), never a header's value."""

    def __init__(self, metric: str, endpoint: str, problem: str) -> None:
        self.metric = metric
        self.address = endpoint
        self.problem = problem
        ChatopsError.__init__(self, f"web metric {metric}: {endpoint}: {problem}")
