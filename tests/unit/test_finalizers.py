"""Which objects carry a finalizer (issue 8, case 21): a ChatBackup only when its
`deletionPolicy: Delete` needs a handler at deletion, so `helm uninstall` never leaves a
default ChatBackup (or its namespace) undeletable. The daemon's finalizer is switched off
through kopf's registry: if a kopf upgrade moves that registry, this test says so first."""

from __future__ import annotations

import kopf

import chatops.handlers.backup as backup_handlers


def _spawning() -> list[object]:
    return list(kopf.get_default_registry()._spawning.get_all_handlers())


def test_the_chatbackup_daemons_ask_for_no_finalizer() -> None:
    for fn in (backup_handlers.backup, backup_handlers.archive):
        daemons = [h for h in _spawning() if getattr(h, "fn", None) is fn]
        assert len(daemons) == 1
        assert daemons[0].requires_finalizer is False  # type: ignore[attr-defined]
    assert backup_handlers._archives(spec={"pointInTime": {"enabled": True}})
    assert not backup_handlers._archives(spec={"pointInTime": {"enabled": False}})
    assert not backup_handlers._archives(spec={})


def test_only_a_delete_policy_needs_the_deletion_handler() -> None:
    deleting = [
        h
        for h in kopf.get_default_registry()._changing.get_all_handlers()
        if getattr(h, "fn", None) is backup_handlers.delete
    ]
    assert [h.requires_finalizer for h in deleting] == [True]  # type: ignore[attr-defined]
    assert backup_handlers._deletes_backups(spec={"deletionPolicy": "Delete"})
    assert not backup_handlers._deletes_backups(spec={})
    assert not backup_handlers._deletes_backups(spec={"deletionPolicy": "Retain"})
