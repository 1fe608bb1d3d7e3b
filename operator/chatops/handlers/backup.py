"""ChatBackup: one daemon per object. It looks (schedule, on-demand annotation, an
interrupted run to settle), runs a backup when the look says so on a thread of its own,
records it, and sleeps until the next scheduled time or a change wakes it.

While the daemon runs a backup it does not look, so `concurrencyPolicy: Forbid` holds by
construction and the status has one writer at a time. Stopping the operator (or deleting
the ChatBackup) interrupts the dump, which aborts its upload and records Failed.

Only a ChatBackup with `deletionPolicy: Delete` carries chatops' finalizer: its deletion
has work to do (the backups in S3). Any other is deleted at once, operator or not, so a
namespace or an uninstalled operator never leaves it hanging. (kopf puts a finalizer on
every object with a daemon; ours needs none: a deleted object's run is stopped by the
daemon's stop flag and aborts its own upload.)

The runners (`chatops.backup.runner`, `.archiver`) are imported inside the handlers that
use them: they bring pymongo and boto3, which an operator with no ChatBackup never needs
(see bench/memory_results.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client

from chatops.api import validation
from chatops.api.backup import ChatBackupSpec
from chatops.api.common import GROUP, VERSION
from chatops.errors import ChatopsError, InvalidSpec
from chatops.handlers import daemons
from chatops.handlers.threads import in_thread

log = logging.getLogger("chatops.backup")


@kopf.on.event(GROUP, VERSION, "chatbackups")
async def wake(memo: Any, meta: kopf.Meta, **_: Any) -> None:
    """A new spec or annotation (`chatops.dev/backup-now`): look now."""
    daemons.wake(memo, meta)


async def backup(
    name: str, namespace: str | None, memo: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    assert namespace is not None  # ChatBackup is namespaced
    from chatops.backup import runner  # pymongo and boto3: first ChatBackup only

    woken = daemons.alarm(memo)
    api = memo["api"]
    backoff = daemons.Backoff()
    while not stopped:
        try:
            look = await asyncio.to_thread(runner.look, api, namespace, name, daemons.poster(api))
            if look.run is not None:
                memo["running"] = True
                try:
                    await in_thread(
                        f"chatops-backup-{namespace}-{name}",
                        functools.partial(
                            runner.run, api, look.run, lambda: bool(stopped), daemons.poster(api)
                        ),
                    )
                finally:
                    memo["running"] = False
                continue
            delay = look.requeue_after
            backoff.succeeded()
        except (ChatopsError, client.ApiException, OSError) as err:
            delay = backoff.failed()
            log.warning("%s/%s: %s: %s", namespace, name, type(err).__name__, err)
        except Exception as err:  # a bug: say so in status, and look again later
            delay = backoff.failed()
            log.exception("%s/%s: unexpected error in a look", namespace, name)
            await asyncio.to_thread(
                daemons.report_stalled, api, runner.PLURAL, namespace, name, err
            )
        await daemons.nap(woken, stopped, delay)


def _archives(spec: Mapping[str, Any], **_: Any) -> bool:
    return bool((spec.get("pointInTime") or {}).get("enabled"))


async def archive(
    name: str, namespace: str | None, memo: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """`spec.pointInTime.enabled`: the continuous oplog archive, on a thread of its own.
    kopf starts it when the archive is enabled and stops it when it no longer is."""
    assert namespace is not None
    from chatops.backup import archiver  # pymongo and boto3: first ChatBackup only

    api = memo["api"]
    loop = asyncio.get_running_loop()
    backoff = daemons.Backoff()

    def wake_backups() -> None:  # a gap opened (a new base now) or closed (say so)
        woken = memo.get("wake")
        if isinstance(woken, asyncio.Event):
            loop.call_soon_threadsafe(woken.set)

    never = asyncio.Event()
    while not stopped:
        try:
            delay = await in_thread(
                f"chatops-archive-{namespace}-{name}",
                functools.partial(
                    archiver.archive_once, api, namespace, name, lambda: bool(stopped),
                    daemons.poster(api), wake_backups,
                ),
            )
            backoff.succeeded()
        except (ChatopsError, client.ApiException, OSError) as err:
            delay = backoff.failed()
            log.warning("%s/%s: archive: %s: %s", namespace, name, type(err).__name__, err)
        except Exception:
            delay = backoff.failed()
            log.exception("%s/%s: unexpected error in the archive", namespace, name)
        await daemons.nap(never, stopped, delay)


def _without_finalizer(fn: Any, **options: Any) -> None:
    """A daemon, registered as kopf.daemon does but without the finalizer kopf gives
    every daemon: see the module's docstring."""
    kopf.daemon(GROUP, VERSION, "chatbackups", **options)(fn)
    spawning = kopf.get_default_registry()._spawning
    for index, handler in enumerate(spawning._handlers):
        if getattr(handler, "fn", None) is fn:
            spawning._handlers[index] = dataclasses.replace(handler, requires_finalizer=False)


_without_finalizer(backup, cancellation_timeout=60)
_without_finalizer(archive, cancellation_timeout=30, when=_archives)


def _deletes_backups(spec: Mapping[str, Any], **_: Any) -> bool:
    return spec.get("deletionPolicy") == "Delete"


DELETE_TRIES = 10
"""Tries (30 s apart) at deleting a ChatBackup's backups before keeping them."""


@kopf.on.delete(GROUP, VERSION, "chatbackups", when=_deletes_backups)
def delete(
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    uid: str | None,
    memo: Any,
    logger: kopf.Logger,
    retry: int,
    **_: Any,
) -> None:
    """`deletionPolicy: Delete` removes this ChatBackup's backups (by its uid) from S3
    before the finalizer goes; `Retain` (the default) has no finalizer and keeps them.

    When they cannot be deleted — its Secrets went first, as when the whole namespace is
    deleted, or S3 stays away — it gives up after a few tries and keeps them: a stuck
    finalizer would hold the namespace forever, and kept data can still be deleted by
    hand, lost data cannot come back."""
    assert namespace is not None
    if memo.get("running"):
        raise kopf.TemporaryError("a backup is still stopping; deleting after it", delay=5)
    try:
        parsed = validation.parsed(
            ChatBackupSpec, "ChatBackup", dict(spec), f"ChatBackup {namespace}/{name}"
        )
    except InvalidSpec as err:  # stored under looser bounds: do not guess what to delete
        logger.warning(f"the backups are kept in S3: {err}")
        return
    if parsed.deletion_policy != "Delete" or not uid:
        logger.info("deletionPolicy Retain: the backups stay in S3")
        return
    from chatops.backup import runner  # boto3: first ChatBackup only

    try:
        count = runner.delete_backups(memo["api"], namespace, name, uid, parsed)
    except InvalidSpec as err:  # a Secret is gone: retrying cannot help
        logger.warning(f"deletionPolicy Delete: the backups are kept in S3: {err}")
        return
    except ChatopsError as err:
        if retry >= DELETE_TRIES:
            logger.warning(f"deletionPolicy Delete: gave up, the backups are kept in S3: {err}")
            return
        raise kopf.TemporaryError(f"deleting the backups failed: {err}", delay=30) from None
    logger.info(f"deletionPolicy Delete: deleted {count} backup(s) from S3")
