"""What backups S3 holds under a prefix, read for retention, `chatops backups` and a
ChatRecovery's `backupRef` (the I/O half of `retention`)."""

from __future__ import annotations

from chatops.adapters import s3
from chatops.backup import layout
from chatops.backup import manifest as manifests
from chatops.backup.retention import StoredBackup


def list_backups(store: s3.Store, prefix: str) -> list[StoredBackup]:
    """Every backup id under `prefix`, oldest first, with its manifest read, whoever
    wrote it (callers keep their own by uid). A tarball without manifest is asked for its
    owner metadata (one HEAD each: there are few)."""
    objects: dict[str, dict[str, s3.StoredObject]] = {}
    for obj in store.objects(prefix):
        name = layout.parse_key(prefix, obj.key)
        if name is not None:
            objects.setdefault(name.backup, {})[name.kind] = obj
    found = []
    for backup, parts in sorted(objects.items()):
        tarball, manifest_obj = parts.get("tarball"), parts.get("manifest")
        manifest = None
        owner = uid = None
        if manifest_obj is not None:
            raw = store.get(manifest_obj.key)
            try:
                manifest = manifests.parse(raw) if raw is not None else None
            except ValueError:
                manifest = None
            if manifest is not None and manifest.source is not None:
                owner, uid = manifest.source.ref, manifest.source.uid
        elif tarball is not None:
            head = store.head(tarball.key)
            if head is not None:
                owner = head[1].get(layout.OWNER_METADATA)
                uid = head[1].get(layout.UID_METADATA)
        found.append(
            StoredBackup(
                id=backup,
                tarball_key=tarball.key if tarball else None,
                tarball_size=tarball.size if tarball else None,
                manifest_key=manifest_obj.key if manifest_obj else None,
                manifest=manifest,
                owner=owner,
                uid=uid,
                last_modified=max(o.last_modified for o in parts.values()),
            )
        )
    return found


def delete(store: s3.Store, backups: list[StoredBackup]) -> None:
    """Delete backups, the manifest of each first: a backup whose manifest is gone is no
    longer listed even if deleting its tarball then fails (retention retries it)."""
    store.delete([b.manifest_key for b in backups if b.manifest_key])
    store.delete([b.tarball_key for b in backups if b.tarball_key])
