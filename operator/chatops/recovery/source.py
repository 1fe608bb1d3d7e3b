"""Where a ChatRecovery's backup is and where it goes: resolved from the spec (and, for a
`backupRef`, the ChatBackup's spec and what its prefix holds in S3) at every step, so a
restarted operator needs nothing but the object.
"""

from __future__ import annotations

import dataclasses

from chatops.adapters.kube import Cluster
from chatops.api import validation
from chatops.api.backup import ChatBackupSpec, MongoURISecretRef, S3Endpoint
from chatops.api.recovery import ChatRecoverySpec, RestoredBackup
from chatops.backup import catalog, credentials
from chatops.backup.retention import RetentionPolicy
from chatops.errors import InvalidSpec, RestoreFailed


@dataclasses.dataclass(frozen=True)
class Plan:
    """The restore, with its secrets: source bucket and key, target database."""

    storage: S3Endpoint
    key: str | None
    """Direct source key; None for a backupRef until resolved."""
    prefix: str
    """The ChatBackup's prefix (backupRef only)."""
    owner: str | None
    """`namespace/name` of the ChatBackup (backupRef only)."""
    owner_uid: str | None
    """uid of the ChatBackup (backupRef only): only its own backups are restored by ref."""
    backup_id: str | None
    mongo_ref: MongoURISecretRef
    mongo_field: str
    databases: tuple[str, ...] | None
    require_manifest: bool
    allow_unverified: bool
    """A tarball chatops wrote may be restored without its manifest (source.s3 only)."""
    secrets: credentials.Secrets


def plan(cluster: Cluster, namespace: str, name: str, spec: ChatRecoverySpec) -> Plan:
    """The restore as the spec describes it, secrets read; InvalidSpec naming the field
    when a Secret or the ChatBackup is missing."""
    resource = f"ChatRecovery {namespace}/{name}"
    target = spec.target.mongodb
    databases = (target.database,) if target and target.database else None
    ref = spec.source.backup_ref
    if ref is not None:
        body = cluster.get("chatbackups", namespace, ref.name)
        if body is None:
            raise InvalidSpec(
                resource, "spec.source.backupRef.name",
                f"ChatBackup {namespace}/{ref.name} does not exist",
            )
        backup = validation.parsed(
            ChatBackupSpec, "ChatBackup", body["spec"], f"ChatBackup {namespace}/{ref.name}"
        )
        mongo_ref = target.uri_secret_ref if target else backup.mongodb.uri_secret_ref
        field = "spec.target.mongodb.uriSecretRef" if target else (
            f"ChatBackup {ref.name} spec.mongodb.uriSecretRef"
        )
        secrets = credentials.read(
            cluster, resource, namespace, mongo_ref, field, backup.storage.s3,
            f"ChatBackup {ref.name} spec.storage.s3",
        )
        return Plan(
            storage=backup.storage.s3, key=None, prefix=backup.storage.s3.prefix,
            owner=f"{namespace}/{ref.name}", owner_uid=str(body["metadata"].get("uid") or ""),
            backup_id=ref.id, mongo_ref=mongo_ref,
            mongo_field=field, databases=databases, require_manifest=True,
            allow_unverified=False, secrets=secrets,
        )
    s3 = spec.source.s3
    if s3 is None or target is None:  # the schema's CEL rules refuse this
        raise InvalidSpec(resource, "spec.source", "set source.s3 with target.mongodb")
    secrets = credentials.read(
        cluster, resource, namespace, target.uri_secret_ref, "spec.target.mongodb.uriSecretRef",
        s3, "spec.source.s3",
    )
    return Plan(
        storage=s3, key=s3.key, prefix="", owner=None, owner_uid=None, backup_id=None,
        mongo_ref=target.uri_secret_ref, mongo_field="spec.target.mongodb.uriSecretRef",
        databases=databases, require_manifest=False, allow_unverified=s3.allow_unverified,
        secrets=secrets,
    )


def resolve(plan: Plan) -> RestoredBackup:
    """The tarball to restore: the newest good backup of the ChatBackup (`latest`), the one
    with that id, or the direct key. RestoreFailed when there is none."""
    store = credentials.store(plan.storage, plan.secrets)
    if plan.key is not None:
        return RestoredBackup(key=plan.key)
    assert plan.owner is not None and plan.owner_uid is not None
    policy = RetentionPolicy(uid=plan.owner_uid)
    good = policy.good(catalog.list_backups(store, plan.prefix))
    if plan.backup_id in (None, "latest"):
        chosen = good[0] if good else None
    else:
        chosen = next((b for b in good if b.id == plan.backup_id), None)
    if chosen is None or chosen.manifest is None:
        which = "no complete backup" if plan.backup_id in (None, "latest") else (
            f"no complete backup with id {plan.backup_id}"
        )
        raise RestoreFailed(
            f"ChatBackup {plan.owner} has {which} in s3://{plan.storage.bucket}/{plan.prefix} "
            "(spec.source.backupRef)"
        )
    return RestoredBackup(
        id=chosen.id, key=chosen.manifest.tarball.key, sha256=chosen.manifest.tarball.sha256
    )
