"""The restore's first step: the tarball and its manifest read from S3, and everything
checked that can be checked before the database is touched (see backup/restore.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection

from chatops.adapters import s3
from chatops.backup import layout
from chatops.backup import manifest as manifests
from chatops.backup.contents import Contents, Downloaded, inspect
from chatops.errors import ChatopsError, RestoreFailed, VerificationFailed


def download(store: s3.Store, key: str, directory: str) -> Downloaded:
    """The tarball at `key`, streamed to a file in `directory` and hashed."""
    path = os.path.join(directory, os.path.basename(key) or "backup.tar.gz")
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as out:
        for chunk in store.stream(key):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return Downloaded(path, size, digest.hexdigest())


def manifest_for(
    store: s3.Store, key: str, *, require: bool = False, allow_unverified: bool = False
) -> manifests.Manifest | None:
    """The manifest beside the tarball at `key`; None for a runbook tarball without one.
    RestoreFailed ("manifest missing") when one must exist: the caller requires it, or
    chatops wrote the tarball (its owner metadata) and `allow_unverified` is false."""
    try:
        raw = store.get(layout.manifest_key_for(key))
    except ChatopsError as err:
        raise RestoreFailed(f"reading the manifest of {key} failed: {err}") from err
    if raw is not None:
        try:
            return manifests.parse(raw)
        except ValueError as err:
            raise VerificationFailed(f"the manifest of {key} is unreadable: {err}") from err
    if require:
        raise RestoreFailed(f"manifest missing: {key} has none, it is an incomplete backup")
    try:
        head = store.head(key)
    except ChatopsError as err:
        raise RestoreFailed(f"reading {key} failed: {err}") from err
    if head is None:
        raise RestoreFailed(f"{key} does not exist")
    owner = head[1].get(layout.OWNER_METADATA)
    if owner and not allow_unverified:
        raise RestoreFailed(
            f"manifest missing: {key} was written by chatops (ChatBackup {owner}) but its "
            "manifest is gone, so it cannot be verified; nothing was restored (set "
            "spec.source.s3.allowUnverified to restore it anyway)"
        )
    return None


def fetch(
    store: s3.Store, key: str, directory: str, databases: Collection[str] | None = None,
    *, require_manifest: bool = False, allow_unverified: bool = False,
) -> tuple[Downloaded, Contents]:
    """The tarball downloaded and inspected: everything checked that can be checked
    without the database."""
    manifest = manifest_for(
        store, key, require=require_manifest, allow_unverified=allow_unverified
    )
    try:
        downloaded = download(store, key, directory)
    except ChatopsError as err:
        raise RestoreFailed(f"downloading {key} failed: {err}") from err
    try:
        return downloaded, inspect(downloaded, manifest, databases)
    except BaseException:
        os.unlink(downloaded.path)
        raise
