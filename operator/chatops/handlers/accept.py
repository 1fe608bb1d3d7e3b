"""Acceptance: every resource's spec is checked when it appears or changes, and the
verdict is written as the `Accepted` condition with the generation it was made from."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import kopf

from chatops.api import crd, validation
from chatops.api.common import GROUP, VERSION, Condition


def _accept(kind: str) -> Callable[..., None]:
    def handler(
        spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, **_: Any
    ) -> None:
        generation = int(meta.get("generation") or 0)
        previous = [Condition.model_validate(c) for c in status.get("conditions", [])]
        conditions = validation.accepted(
            kind, dict(spec), generation, previous, datetime.datetime.now(datetime.UTC)
        )
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = [c.wire() for c in conditions]

    return handler


# Each kind's conditions are written by its daemon alone (handlers.release, .backup,
# .recovery), so two writers never race on one list.
_DAEMON_WRITTEN = {"ChatRelease", "ChatBackup", "ChatRecovery"}
for _kind in (k for k in crd.KINDS if k.kind not in _DAEMON_WRITTEN):
    _handler = _accept(_kind.kind)
    _id = f"accept-{_kind.plural}"
    kopf.on.resume(GROUP, VERSION, _kind.plural, id=_id)(_handler)
    kopf.on.create(GROUP, VERSION, _kind.plural, id=_id)(_handler)
    kopf.on.update(GROUP, VERSION, _kind.plural, id=_id, field="spec")(_handler)
