"""`chatops backups NAME`, `chatops restore-points NAME` and `chatops backup-now NAME`: a
human's view of a ChatBackup.

`restore-points` shows what a ChatRecovery's `pointInTime` can reach: the windows from
each base backup's consistent time to the last op its slices carry, and the gaps between.

`backups` lists what S3 really holds under the ChatBackup's prefix (not what the status
remembers): each backup's size, documents and age, and whether it is complete. It reads
the same Secrets the operator does, with the caller's own kube credentials. `backup-now`
only sets the `chatops.dev/backup-now` annotation, exactly what a GitOps commit would do;
the operator runs the backup and clears it.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Sequence
from typing import Any

from chatops import clock
from chatops.annotations import BACKUP_NOW as ON_DEMAND
from chatops.commands import CommandError

PLURAL = "chatbackups"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the backup commands to the `chatops` parser."""
    for name, help_, func in (
        ("backups", "list a ChatBackup's backups in S3 with size and age", _backups),
        ("backup-now", "ask for one backup now (the chatops.dev/backup-now annotation)",
         _backup_now),
        ("restore-points", "the times a point-in-time restore can target, and the gaps",
         _restore_points),
    ):
        parser = commands.add_parser(name, help=help_, description=help_)
        parser.add_argument("name", metavar="NAME", help="the ChatBackup")
        parser.add_argument(
            "--namespace", "-n", default=None, help="its namespace (default: the kube context's)"
        )
        parser.set_defaults(func=func)


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_age(age: datetime.timedelta) -> str:
    """kubectl's style: 45s, 12m, 5h, 3d."""
    s = max(0, int(age.total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def render(rows: Sequence[dict[str, Any]], now: datetime.datetime) -> str:
    """The table: one row per backup id, oldest first. A row: id, size, documents,
    started (datetime), state, key."""
    header = ("ID", "SIZE", "DOCUMENTS", "AGE", "STATE", "KEY")
    lines = [header] + [
        (
            r["id"],
            human_size(r["size"]),
            "-" if r["documents"] is None else str(r["documents"]),
            human_age(now - r["started"]),
            r["state"],
            r["key"] or "-",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "".join(
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def render_points(line: Any, folder: str, count: int) -> str:
    """`chatops restore-points`: each recoverable window (inclusive, to the second) and
    each gap, oldest first (`line` is a `backup.pitr.Timeline`)."""
    from chatops.backup import pitr

    out = [f"{count} slice(s) in {folder}"]
    if not line.windows:
        out.append("no point in time can be restored yet: no point-in-time base backup")
        return "\n".join(out) + "\n"
    rows = [("FROM", "TO", "BASE BACKUPS", "SLICES")]
    for w in line.windows:
        bases = ", ".join(w.bases[-3:]) + (f" (+{len(w.bases) - 3})" if len(w.bases) > 3 else "")
        rows.append((pitr.rfc3339(w.start), pitr.rfc3339(w.end), bases, str(w.slices)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out += ["   ".join(c.ljust(n) for c, n in zip(r, widths, strict=True)).rstrip() for r in rows]
    for gap in line.gaps:
        out.append(
            f"gap: {pitr.rfc3339(gap.after)} to {pitr.rfc3339(gap.before)}: the oplog "
            "between was lost, no restore can target a time inside"
        )
    return "\n".join(out) + "\n"


def _restore_points(args: argparse.Namespace) -> int:
    from chatops.api.backup import ChatBackupStatus
    from chatops.backup import pitr, slices
    from chatops.errors import ChatopsError

    owner, spec, body, store = _open(args)
    uid = str(body["metadata"].get("uid") or "")
    try:
        look = slices.listing(store, spec.storage.s3.prefix, uid)
    except ChatopsError as err:
        raise CommandError(str(err)) from None
    folder = f"s3://{spec.storage.s3.bucket}/{pitr.directory(spec.storage.s3.prefix, uid)}"
    state = ChatBackupStatus.model_validate(body.get("status") or {}).point_in_time
    enabled = "enabled" if spec.point_in_time.enabled else "disabled"
    said = f"chatbackup {owner}: point-in-time archive {enabled}"
    if state is not None:
        said += f", {state.state}"
        if state.last_archived_time:
            said += f", last archived op {state.last_archived_time}"
    print(said)
    print(render_points(pitr.timeline(look.bases, look.slices), folder, len(look.slices)),
          end="")
    return 0


def _open(args: argparse.Namespace) -> tuple[str, Any, dict[str, Any], Any]:
    """The ChatBackup named on the command line, its spec, and its bucket."""
    from kubernetes import client

    from chatops.adapters.kube import Cluster
    from chatops.api import validation
    from chatops.api.backup import ChatBackupSpec
    from chatops.backup import credentials
    from chatops.commands.kube import connect
    from chatops.errors import ChatopsError, InvalidSpec

    api, namespace = connect(args.namespace)
    cluster = Cluster(api)
    try:
        body = cluster.get(PLURAL, namespace, args.name)
    except client.ApiException as err:
        raise CommandError(f"reading chatbackup {namespace}/{args.name}: {err.reason}") from None
    if body is None:
        raise CommandError(f"chatbackup {namespace}/{args.name} not found")
    owner = f"{namespace}/{args.name}"
    try:
        spec = validation.parsed(ChatBackupSpec, "ChatBackup", body["spec"], f"chatbackup {owner}")
    except InvalidSpec as err:
        raise CommandError(str(err)) from None
    try:
        secrets = credentials.read(
            cluster, f"ChatBackup {owner}", namespace, spec.mongodb.uri_secret_ref,
            "spec.mongodb.uriSecretRef", spec.storage.s3, "spec.storage.s3",
        )
        store = credentials.store(spec.storage.s3, secrets)
    except ChatopsError as err:
        raise CommandError(str(err)) from None
    return owner, spec, body, store


def _backups(args: argparse.Namespace) -> int:
    from chatops.backup import catalog
    from chatops.backup.retention import RetentionPolicy
    from chatops.errors import ChatopsError

    owner, spec, body, store = _open(args)
    try:
        everything = catalog.list_backups(store, spec.storage.s3.prefix)
    except ChatopsError as err:
        raise CommandError(str(err)) from None
    policy = RetentionPolicy(uid=str(body["metadata"].get("uid") or ""))
    found = [b for b in everything if policy.owns(b)]
    others = len(everything) - len(found)
    rows = [
        {
            "id": b.id,
            "size": b.tarball_size,
            "documents": b.manifest.documents if b.manifest else None,
            "started": b.started_at,
            "state": "complete" if b.complete else "incomplete",
            "key": b.tarball_key,
        }
        for b in found
    ]
    where = f"s3://{spec.storage.s3.bucket}/{spec.storage.s3.prefix}"
    if others:
        # Backups of another ChatBackup (elsewhere, or an earlier one of this name): never
        # counted nor deleted by this one; restore them with a ChatRecovery's source.s3.
        print(f"chatbackup {owner}: {others} other backup(s) in {where} belong to other "
              "ChatBackups (by uid) and are left alone")
    if not rows:
        print(f"chatbackup {owner}: no backups in {where}")
        return 0
    good = sum(1 for r in rows if r["state"] == "complete")
    print(f"chatbackup {owner}: {good} complete backup(s) in {where} "
          f"(keepLast {spec.retention.keep_last})")
    print(render(rows, clock.now()), end="")
    return 0


def _backup_now(args: argparse.Namespace) -> int:
    from kubernetes import client

    from chatops.commands.kube import connect

    api, namespace = connect(args.namespace)
    stamp = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            "chatops.dev", "v1alpha1", namespace, PLURAL, args.name,
            {"metadata": {"annotations": {ON_DEMAND: stamp}}},
        )
    except client.ApiException as err:
        if err.status == 404:
            raise CommandError(f"chatbackup {namespace}/{args.name} not found") from None
        raise CommandError(f"annotating chatbackup {namespace}/{args.name}: {err.reason}") from None
    print(f"chatbackup {namespace}/{args.name}: backup requested ({ON_DEMAND}={stamp}); "
          f"follow it with: kubectl get cbak {args.name} -n {namespace} -w")
    return 0
