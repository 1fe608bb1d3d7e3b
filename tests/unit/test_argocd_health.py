"""The Argo CD health checks in charts/chatops/argocd, run the way Argo CD runs them.

Argo CD evaluates a custom health check in gopher-lua (Lua 5.1) with only the base, table
and os libraries (no `string`, no `math`, no string methods), the resource in the global
`obj`, and takes the table the chunk returns as `{status, message}`; a status outside
Healthy/Progressing/Suspended/Degraded/Missing/Unknown becomes Unknown. These tests build
that sandbox in Lua 5.1 (lupa) and feed each script sample objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml

from chatops.api.backup import BackupRecord, ChatBackupStatus
from chatops.api.common import Condition
from chatops.api.recovery import ChatRecoveryStatus, Step
from chatops.api.release_status import ChatReleaseStatus

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "charts" / "chatops" / "argocd"
HEALTH_CODES = {"Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown"}

_SANDBOX = """
local source, obj = ...
local env = {
  obj = obj,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = pcall, rawequal = rawequal, rawget = rawget, rawset = rawset, select = select,
  tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
  getmetatable = getmetatable, setmetatable = setmetatable,
  table = table,
  os = {time = os.time, date = os.date, clock = os.clock},
}
env._G = env
local chunk, err = loadstring(source, "=health.lua")
if chunk == nil then error(err) end
setfenv(chunk, env)
local strings = debug.getmetatable("")
local index = strings.__index
strings.__index = nil
local ok, result = pcall(chunk)
strings.__index = index
if not ok then error(result) end
return result
"""


def _lua_value(lua: Any, value: Any) -> Any:
    """A JSON value as Argo CD hands it to Lua: objects and arrays become tables (arrays
    indexed from 1), numbers numbers, null nil."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            table[key] = _lua_value(lua, item)
        return table
    if isinstance(value, list):
        table = lua.table()
        for i, item in enumerate(value, start=1):
            table[i] = _lua_value(lua, item)
        return table
    return value


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """What Argo CD would show for `obj` with the check of `kind`."""
    lua = lua51.LuaRuntime()
    source = (CHECKS / f"chatops.dev_{kind}.lua").read_text()
    result = lua.execute(_SANDBOX, source, _lua_value(lua, obj))
    assert lua.eval("type")(result) == "table", f"the {kind} check returned {result!r}"
    returned = {str(k): v for k, v in result.items()}
    assert set(returned) <= {"status", "message"}, returned
    decoded = json.loads(json.dumps(returned))
    assert decoded.get("status") in HEALTH_CODES, f"invalid health status: {decoded}"
    return decoded


def condition(type_: str, status: Any, reason: str, message: str) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time="2026-01-01T00:00:00Z",
        observed_generation=3,
    )


def obj(
    kind: str, status: dict[str, Any] | None, *, generation: int = 3, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "chatops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "chat", "namespace": "prod", "generation": generation},
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


def release(phase: Any, message: str | None = None, **more: Any) -> dict[str, Any]:
    """A ChatRelease whose status is what the operator writes (the model's wire form), so
    a renamed status field breaks these tests as it would break the check."""
    status = ChatReleaseStatus(observed_generation=3, phase=phase, message=message, **more)
    return obj("ChatRelease", status.wire())


ACCEPTED = condition("Accepted", "True", "SpecValid", "the spec is valid")
INVALID = condition(
    "Accepted", "False", "InvalidSpec", "spec.strategy.canary.steps[2].setWeight: 120 > 100"
)

RELEASES = [
    pytest.param(obj("ChatRelease", None), "Progressing", "observe the spec", id="no-status"),
    pytest.param(
        obj("ChatRelease", {"phase": "Succeeded", "observedGeneration": 2}),
        "Progressing",
        "observe the spec",
        id="spec-changed-since-last-look",
    ),
    pytest.param(
        obj("ChatRelease", {"phase": "Succeeded", "observedGeneration": "2"}),
        "Progressing",
        "observe the spec",
        id="generation-as-text",
    ),
    pytest.param(
        release("Succeeded", "api=chat:v2 is live", conditions=[ACCEPTED]),
        "Healthy",
        "api=chat:v2 is live",
        id="succeeded",
    ),
    pytest.param(release("Succeeded"), "Healthy", "serves all traffic", id="succeeded-no-msg"),
    pytest.param(
        release("Progressing", "step 1/4 at 10% until 12:00:42Z; analysis passing"),
        "Progressing",
        "step 1/4 at 10%",
        id="progressing",
    ),
    pytest.param(release("Promoting", "promoted"), "Progressing", "Promoting", id="promoting"),
    pytest.param(
        release("Paused", "step 2/4 at 25%: paused until chatops.dev/promote"),
        "Suspended",
        "paused until chatops.dev/promote",
        id="paused",
    ),
    pytest.param(release("Paused"), "Suspended", "chatops promote", id="paused-no-msg"),
    pytest.param(
        release("Degraded", "the stable version is not Available: api-blue"),
        "Degraded",
        "not Available",
        id="degraded",
    ),
    pytest.param(
        release("RolledBack", "rolled back api=chat:v3: error-rate 4.2 > 1"),
        "Degraded",
        "RolledBack: rolled back api=chat:v3",
        id="rolled-back",
    ),
    pytest.param(
        release("Failed", "not Available within progressDeadlineSeconds"),
        "Degraded",
        "progressDeadlineSeconds",
        id="failed",
    ),
    pytest.param(
        release("Succeeded", "api=chat:v2 is live", conditions=[INVALID]),
        "Degraded",
        "setWeight: 120 > 100",
        id="invalid-spec",
    ),
    pytest.param(
        release(
            "Progressing",
            "cannot carry out the release: Deployment prod/chat-api-green: 422",
            conditions=[
                condition(
                    "Reconciled", "False", "ActionFailed",
                    "Deployment prod/chat-api-green: 422 Unprocessable Entity: invalid label",
                )
            ],
        ),
        "Degraded",
        "ActionFailed: Deployment prod/chat-api-green",
        id="action-refused",
    ),
    pytest.param(release(None), "Progressing", "start the release", id="observed-no-phase"),
    pytest.param(
        obj("ChatRelease", {"observedGeneration": 3, "phase": "Exploded"}),
        "Unknown",
        "Exploded",
        id="unknown-phase",
    ),
]


@pytest.mark.parametrize(("body", "status", "message"), RELEASES)
def test_chatrelease_health(body: dict[str, Any], status: str, message: str) -> None:
    got = health("ChatRelease", body)
    assert (got["status"], message in got["message"]) == (status, True), got


def backup(status: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    spec.setdefault("schedule", "0 3 * * *")
    wire = None if status is None else ChatBackupStatus(observed_generation=3, **status).wire()
    return obj("ChatBackup", wire, **spec)


GOOD = BackupRecord(
    id="20260101_030000", result="Succeeded", size=123456, documents=5000, duration_seconds=12.5
)
BAD = BackupRecord(
    id="20260102_030000", result="Failed", message="S3 said AccessDenied on PutObject"
)
RUNNING = BackupRecord(
    id="20260103_030000",
    result="Running",
    started_at="2026-01-03T03:00:00Z",
    message="waiting for the database Lease, held by restore-1",
)

BACKUPS = [
    pytest.param(backup(None), "Progressing", "observe the spec", id="no-status"),
    pytest.param(
        obj("ChatBackup", {"observedGeneration": 2, "lastBackup": GOOD.wire()}),
        "Progressing",
        "observe the spec",
        id="spec-changed-since-last-look",
    ),
    pytest.param(
        backup({"last_backup": GOOD, "next_schedule_time": "2026-01-02T03:00:00Z"}),
        "Healthy",
        "succeeded: 5000 documents, 123456 bytes; next run at 2026-01-02T03:00:00Z",
        id="last-run-succeeded",
    ),
    pytest.param(
        backup({"last_backup": BAD, "last_successful_time": "2026-01-01T03:00:12Z"}),
        "Degraded",
        "AccessDenied",
        id="last-run-failed",
    ),
    pytest.param(
        backup({"last_backup": BAD}),
        "Degraded",
        "no backup has succeeded yet",
        id="never-succeeded",
    ),
    pytest.param(
        backup({"last_backup": BAD, "last_successful_time": "2026-01-01T03:00:12Z"}, suspend=True),
        "Degraded",
        "failed",
        id="failed-beats-suspended",
    ),
    pytest.param(
        backup({"last_backup": RUNNING}),
        "Progressing",
        "waiting for the database Lease",
        id="running",
    ),
    pytest.param(
        backup({"last_backup": GOOD, "last_successful_time": "2026-01-01T03:00:12Z"}, suspend=True),
        "Suspended",
        "suspended; last good backup at 2026-01-01T03:00:12Z",
        id="suspended",
    ),
    pytest.param(
        backup({"next_schedule_time": "2026-01-02T03:00:00Z"}),
        "Healthy",
        "No backup has run yet; next run at",
        id="scheduled-never-run",
    ),
    pytest.param(
        backup({"conditions": [ACCEPTED]}, schedule=None),
        "Progressing",
        "one-off backup",
        id="one-off-not-started",
    ),
    pytest.param(
        backup({"conditions": [INVALID], "last_backup": GOOD}),
        "Degraded",
        "Invalid spec",
        id="invalid-spec",
    ),
]


@pytest.mark.parametrize(("body", "status", "message"), BACKUPS)
def test_chatbackup_health(body: dict[str, Any], status: str, message: str) -> None:
    got = health("ChatBackup", body)
    assert (got["status"], message in got["message"]) == (status, True), got


def recovery(phase: Any, message: str | None = None, **more: Any) -> dict[str, Any]:
    status = ChatRecoveryStatus(observed_generation=3, phase=phase, message=message, **more)
    return obj("ChatRecovery", status.wire())


RECOVERIES = [
    pytest.param(obj("ChatRecovery", None), "Progressing", "observe the spec", id="no-status"),
    pytest.param(
        recovery("Succeeded", "restored 5000 documents; the app is back"),
        "Healthy",
        "restored 5000 documents",
        id="succeeded",
    ),
    pytest.param(
        recovery(
            "Failed",
            "Verify failed: chat.messages has 4999 documents, the manifest "
            "says 5000; the app was scaled back up",
        ),
        "Degraded",
        "Verify failed: chat.messages has 4999",
        id="failed",
    ),
    pytest.param(
        recovery("Failed", steps=[Step(name="Download", state="Failed", message="NoSuchKey")]),
        "Degraded",
        "Download failed: NoSuchKey",
        id="failed-step-only",
    ),
    *(
        pytest.param(recovery(phase, "doing it"), "Progressing", f"{phase}: doing it", id=phase)
        for phase in ("Pending", "Quiescing", "Downloading", "Restoring", "Verifying", "Resuming")
    ),
    pytest.param(
        recovery("Restoring", steps=[Step(name="Restore", state="Running")]),
        "Progressing",
        "step Restore running",
        id="running-step-only",
    ),
    pytest.param(
        recovery("Pending", conditions=[INVALID]), "Degraded", "Invalid spec", id="invalid-spec"
    ),
]


@pytest.mark.parametrize(("body", "status", "message"), RECOVERIES)
def test_chatrecovery_health(body: dict[str, Any], status: str, message: str) -> None:
    got = health("ChatRecovery", body)
    assert (got["status"], message in got["message"]) == (status, True), got


def _kinds() -> set[str]:
    kinds = set()
    for path in (ROOT / "crds").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                kinds.add(f"{doc['spec']['group']}_{doc['spec']['names']['kind']}")
    return kinds


def test_there_is_one_check_per_kind_named_after_its_argocd_cm_key() -> None:
    """Argo CD finds a check by `resource.customizations.health.<group>_<Kind>`: a file
    named otherwise would be silently ignored."""
    assert {p.stem for p in CHECKS.glob("*.lua")} == _kinds()


def test_the_readme_installs_every_check() -> None:
    readme = (CHECKS / "README.md").read_text()
    for key in _kinds():
        assert f"resource.customizations.health.{key}" in readme
    assert "jqPathExpressions" in readme and ".spec.rules[].backendRefs[].weight" in readme
    assert "RespectIgnoreDifferences=true" in readme


def test_a_check_uses_nothing_outside_argo_cds_sandbox() -> None:
    """A script calling string.* would work in a full Lua and fail in Argo CD."""
    with pytest.raises(lua51.LuaError):
        lua = lua51.LuaRuntime()
        lua.execute(_SANDBOX, 'return {status = string.upper("healthy")}', lua.table())
    with pytest.raises(lua51.LuaError):
        lua = lua51.LuaRuntime()
        lua.execute(_SANDBOX, 'return {status = ("healthy"):upper()}', lua.table())
