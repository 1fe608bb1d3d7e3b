"""Defaults, durations and the cron dialect, as a user writing YAML meets them."""

from __future__ import annotations

import datetime
import re

import pytest

from chatops.api import cron, validation
from chatops.api.backup import ChatBackupSpec
from chatops.api.common import Condition, seconds, set_condition
from chatops.api.recovery import ChatRecoverySpec
from chatops.api.release import ChatReleaseSpec

COMPONENT = {
    "name": "api",
    "template": {"spec": {"containers": [{"name": "api", "image": "chat-api:1.0"}]}},
    "service": {"port": 8080},
}
BACKUP = {
    "mongodb": {"uriSecretRef": {"name": "mongo"}},
    "storage": {"s3": {"bucket": "chat-backups"}},
}


def test_canary_defaults_to_the_runbook_steps() -> None:
    spec = ChatReleaseSpec.model_validate(
        {
            "components": [COMPONENT],
            "strategy": {"canary": {}},
            "trafficRouting": {"gatewayAPI": {"httpRoute": "chat"}},
            "analysis": {},
        }
    )
    assert spec.strategy.canary is not None and spec.analysis is not None
    weights = [s.set_weight for s in spec.strategy.canary.steps if s.set_weight]
    assert weights == [10, 25, 50, 100]
    assert {m.name: (m.min, m.max) for m in spec.analysis.metrics} == {
        "error-rate": (None, 0.01),
        "latency-p95": (None, 0.5),
        "websocket-success": (0.99, None),
    }
    assert all(m.on_no_data == "Error" for m in spec.analysis.metrics)


def test_wire_form_is_camel_case_without_nulls() -> None:
    spec = ChatReleaseSpec.model_validate(
        {"components": [COMPONENT], "strategy": {"blueGreen": {"autoPromote": False}}}
    )
    wire = spec.wire()
    assert wire["strategy"] == {
        "blueGreen": {
            "autoPromote": False,
            "prePromotionAnalysis": False,
            "postPromotionWindow": "10m",
            "scaleDownDelaySeconds": 30,
            "abortScaleDownDelaySeconds": 30,
        }
    }
    assert "trafficRouting" not in wire


def test_backup_and_recovery_defaults() -> None:
    backup = ChatBackupSpec.model_validate(BACKUP)
    assert backup.retention.keep_last == 30
    assert backup.mongodb.uri_secret_ref.key == "uri"
    assert backup.deletion_policy == "Retain"
    recovery = ChatRecoverySpec.model_validate({"source": {"backupRef": {"name": "nightly"}}})
    assert recovery.source.backup_ref is not None
    assert recovery.source.backup_ref.id == "latest"
    assert recovery.mode == "DropCollections" and recovery.verify


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400)],
)
def test_durations(text: str, expected: float) -> None:
    assert seconds(text) == expected


@pytest.mark.parametrize("text", ["", "5", "m", "5 m", "-5s", "5d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        seconds(text)


@pytest.mark.parametrize(
    "schedule",
    [
        "0 3 * * *",
        "*/15 * * * *",
        "0 0 1 JAN *",
        "30 2 * * MON-FRI",
        "0 0,12 1-15/2 * 0",
        "@daily",
        "@hourly",
        "59 23 31 12 7",
    ],
)
def test_cron_pattern_accepts(schedule: str) -> None:
    assert re.fullmatch(cron.PATTERN, schedule)


@pytest.mark.parametrize(
    "schedule",
    [
        "0 3 * *",
        "60 * * * *",
        "0 24 * * *",
        "0 0 32 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "@often",
        "every day",
        "0 3 * * * *",
    ],
)
def test_cron_pattern_refuses(schedule: str) -> None:
    assert not re.fullmatch(cron.PATTERN, schedule)


def test_problems_name_the_field() -> None:
    assert validation.problems("ChatBackup", BACKUP) == []
    bad_zone = validation.problems("ChatBackup", {**BACKUP, "timeZone": "Mars/Olympus"})
    assert bad_zone == [
        "spec.timeZone: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Paris)"
    ]
    never = validation.problems("ChatBackup", {**BACKUP, "schedule": "0 3 31 2 *"})
    assert never == ["spec.schedule: '0 3 31 2 *' never fires"]
    missing = validation.problems("ChatRelease", {"strategy": {"canary": {}}})
    assert missing == ["spec.components: Field required"]


def test_accepted_condition_keeps_its_transition_time() -> None:
    t0 = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.UTC)
    first = validation.accepted("ChatBackup", BACKUP, 1, [], t0)
    assert [(c.type, c.status, c.reason, c.observed_generation) for c in first] == [
        ("Accepted", "True", "SpecValid", 1)
    ]
    later = validation.accepted("ChatBackup", BACKUP, 2, first, t0 + datetime.timedelta(hours=1))
    assert later[0].last_transition_time == "2026-11-26T10:00:00Z"
    assert later[0].observed_generation == 2
    broken = validation.accepted(
        "ChatBackup",
        {**BACKUP, "timeZone": "Nowhere/City"},
        3,
        later,
        t0 + datetime.timedelta(hours=2),
    )
    assert (broken[0].status, broken[0].reason) == ("False", "InvalidSpec")
    assert broken[0].last_transition_time == "2026-11-26T12:00:00Z"
    assert "spec.timeZone" in broken[0].message


def test_set_condition_leaves_other_types_alone() -> None:
    ready = Condition(type="Ready", status="True", reason="Done", last_transition_time="t")
    accepted = Condition(
        type="Accepted", status="True", reason="SpecValid", last_transition_time="u"
    )
    assert set_condition([ready], accepted) == [ready, accepted]


def test_an_unknown_query_placeholder_is_refused_naming_the_field() -> None:
    spec = {
        "components": [COMPONENT],
        "strategy": {"blueGreen": {}},
        "analysis": {"metrics": [{"name": "errors", "query": "up{pod='{{pod}}'}", "max": 1}]},
    }
    [problem] = validation.problems("ChatRelease", spec)
    assert problem.startswith("spec.analysis.metrics[0].query: unknown placeholder {{pod}}")
