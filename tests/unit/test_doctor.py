"""`chatops doctor`'s pure parts: the verdicts on backups and releases, what a check
without its input becomes, the report (table and JSON), and that no secret reaches it."""

from __future__ import annotations

import argparse
import datetime
import json

import pytest

from chatops import cli
from chatops.commands import doctor
from chatops.doctor import checks, report
from chatops.doctor.checks import BackupSeen, Finding, ReleaseSeen, Result

NOW = datetime.datetime(2026, 12, 4, 9, 0, tzinfo=datetime.UTC)
H = datetime.timedelta(hours=1)
DAY_AND_A_BIT = 26 * H


def ago(delta: datetime.timedelta) -> datetime.datetime:
    return NOW - delta


# -- backups ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "ok", "said"),
    [
        ([], False, "no ChatBackup: nothing backs MongoDB up"),
        ([BackupSeen("chat/nightly", None)], False, "chat/nightly: no good backup yet"),
        ([BackupSeen("chat/nightly", ago(27 * H))], False,
         "chat/nightly: last good backup 27h ago (older than 26h)"),
        ([BackupSeen("chat/nightly", ago(2 * H))], True, "chat/nightly: last good backup 2h ago"),
        # exactly at the limit is still in time; the stale one is named, the fresh one not
        ([BackupSeen("chat/a", ago(DAY_AND_A_BIT)), BackupSeen("chat/b", ago(30 * H))], False,
         "chat/b: last good backup 30h ago (older than 26h)"),
    ],
)
def test_every_chatbackup_needs_a_good_backup_younger_than_the_max_age(
    seen: list[BackupSeen], ok: bool, said: str
) -> None:
    assert checks.backups(seen, NOW, DAY_AND_A_BIT) == Finding(ok, said)


# -- releases ---------------------------------------------------------------------------

STUCK = 2 * H


@pytest.mark.parametrize(
    ("seen", "ok", "said"),
    [
        ([], True, "no ChatReleases"),
        ([ReleaseSeen("chat/app", "Succeeded", "live", ago(H))], True, "1 Succeeded"),
        ([ReleaseSeen("chat/app", "RolledBack", "error-rate 0.2 > 0.01", ago(H))], False,
         "chat/app RolledBack: error-rate 0.2 > 0.01"),
        ([ReleaseSeen("chat/app", "Degraded", "", ago(H))], False, "chat/app Degraded"),
        ([ReleaseSeen("chat/app", "Paused", "", ago(10 * datetime.timedelta(minutes=1)))],
         True, "0 Succeeded; chat/app Paused for 10m"),
        ([ReleaseSeen("chat/app", "Paused", "waiting for a promote", ago(3 * H))], False,
         "chat/app stuck: Paused for 3h (longer than 2h): waiting for a promote"),
        ([ReleaseSeen("chat/app", None, "", ago(3 * H))], False,
         "chat/app stuck: no status (is the operator running?) for 3h (longer than 2h)"),
        ([ReleaseSeen("chat/a", "Succeeded", "", None),
          ReleaseSeen("chat/b", "Failed", "no version", None)], False, "chat/b Failed: no version"),
    ],
)
def test_releases_not_succeeded_fail_and_one_in_progress_fails_once_stuck(
    seen: list[ReleaseSeen], ok: bool, said: str
) -> None:
    assert checks.releases(seen, NOW, STUCK) == Finding(ok, said)


def test_objects_are_read_leniently_from_what_the_api_server_returns() -> None:
    release = {
        "metadata": {
            "namespace": "chat", "name": "app", "creationTimestamp": "2026-12-04T05:00:00Z"
        },
        "status": {"phase": "Progressing", "message": 7, "releaseStartedAt": "not a time"},
    }
    # an odd message is none, a bad start time falls back to the object's creation
    assert checks.release_seen(release) == ReleaseSeen(
        "chat/app", "Progressing", "", datetime.datetime(2026, 12, 4, 5, tzinfo=datetime.UTC)
    )
    assert checks.release_seen({"metadata": {"namespace": "chat", "name": "new"}}) == ReleaseSeen(
        "chat/new", None, "", None
    )
    backup = {"metadata": {"namespace": "chat", "name": "nightly"},
              "status": {"lastSuccessfulTime": "2026-12-04T08:00:00.5Z"}}
    assert checks.backup_seen(backup).last_success == datetime.datetime(
        2026, 12, 4, 8, 0, 0, 500000, tzinfo=datetime.UTC
    )
    assert checks.backup_seen({"metadata": {}, "status": None}).last_success is None


# -- inputs -----------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    return cli.parser().parse_args(["doctor", *argv])


def test_a_check_without_its_input_is_skipped_unless_required() -> None:
    planned = doctor.plan(_args("--require", "redis", "--skip", "backups,releases"), {})
    by_name = {p.check: p for p in planned}
    assert by_name["api"] == Result(
        "api", "skipped", "-", "not configured (--api-url or $API_HEALTH_URL)"
    )
    assert by_name["redis"] == Result(
        "redis", "failed", "-", "required but not configured: --redis-url or $REDIS_URL"
    )
    assert by_name["backups"] == Result("backups", "skipped", "-", "skipped (--skip)")
    assert [p.check for p in planned] == list(checks.CHECKS)


def test_a_flag_wins_over_the_environment_and_targets_never_show_secrets() -> None:
    environ = {
        "MONGODB_URI": "mongodb://chat:s3cret@db.internal:27017/chat?authSource=admin",
        "REDIS_URL": "redis://:hunter2@redis:6379/0",
        "API_HEALTH_URL": "https://chat.example.com/api/health",
    }
    planned = doctor.plan(
        _args("--api-url", "https://other.example.com/api/health?token=t0ken",
              "--websocket-url", "wss://chat.example.com/ws?room=doctor&token=t0ken"),
        environ,
    )
    targets = {p.check: p.target for p in planned}
    assert targets["api"] == "https://other.example.com/api/health"
    assert targets["mongodb"] == "mongodb://***@db.internal:27017/chat"
    assert targets["redis"] == "redis://***@redis:6379/0"
    assert targets["websocket"] == "wss://chat.example.com/ws"
    assert not any(s in json.dumps(targets) for s in ("s3cret", "hunter2", "t0ken"))


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--require", "dns"], "unknown check dns"),
        (["--backup-max-age", "a day"], "a duration like 26h"),
        (["--release-stuck-after", "0"], "must be more than zero"),
        (["-n", "chat", "-A"], "not allowed with argument"),
    ],
)
def test_bad_flags_are_refused_naming_what_is_wrong(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _args(*argv)
    assert exited.value.code == 2
    assert error in capsys.readouterr().err


def test_durations_read_as_an_engineer_writes_them() -> None:
    assert _args().backup_max_age == DAY_AND_A_BIT
    assert _args("--backup-max-age", "90m").backup_max_age == 1.5 * H
    assert _args("--release-stuck-after", "2d").release_stuck_after == 48 * H
    assert _args("--backup-max-age", "30").backup_max_age == datetime.timedelta(seconds=30)


# -- the report -------------------------------------------------------------------------

RESULTS = [
    Result("api", "ok", "https://chat.example.com/api/health", "answered 2xx", 0.012),
    Result("redis", "failed", "redis://***@redis:6379/0", "ConnectionError: refused", 1.5),
    Result("websocket", "skipped", "-", "not configured (--websocket-url or $WEBSOCKET_URL)"),
]


def test_the_table_has_a_row_per_check_and_names_the_failed_ones() -> None:
    lines = report.table(RESULTS).splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "TIME", "TARGET", "DETAIL"]
    assert lines[1].split()[:3] == ["api", "ok", "12ms"]
    assert lines[2].split()[:3] == ["redis", "failed", "1.5s"]
    assert lines[3].split()[:3] == ["websocket", "skipped", "-"]
    assert lines[-1] == "1 of 2 checks failed: redis"
    # columns line up: every DETAIL starts at the same place
    assert len({line.index(d) for line, d in zip(lines[1:4], ("answered", "Conn", "not"),
                                                   strict=True)}) == 1
    assert report.table(RESULTS[:1]).splitlines()[-1] == "all 1 checks ok"
    assert report.table(RESULTS[2:]).splitlines()[-1] == "no check ran: 1 skipped"


def test_the_json_says_ok_the_failed_names_and_every_check() -> None:
    body = json.loads(report.document(RESULTS))
    assert body["version"] == 1 and body["ok"] is False and body["failed"] == ["redis"]
    assert body["checks"][1] == {
        "name": "redis", "status": "failed", "target": "redis://***@redis:6379/0",
        "detail": "ConnectionError: refused", "durationSeconds": 1.5,
    }
    assert body["checks"][2]["durationSeconds"] is None
    assert json.loads(report.document(RESULTS[:1]))["ok"] is True


def test_the_exit_status_is_one_on_any_failure_and_skips_are_no_failure() -> None:
    assert checks.exit_code(RESULTS) == 1
    assert checks.exit_code([RESULTS[0], RESULTS[2]]) == 0


def test_nothing_configured_and_everything_skipped_exits_zero_in_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("API_HEALTH_URL", "MONGODB_URI", "REDIS_URL", "WEBSOCKET_URL"):
        monkeypatch.delenv(variable, raising=False)
    assert cli.main(["doctor", "--skip", "backups,releases", "-o", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["ok"] is True and {c["status"] for c in body["checks"]} == {"skipped"}
    assert cli.main(["doctor", "--skip", "backups,releases", "--require", "all"]) == 1
    assert "4 of 4 checks failed: api, mongodb, redis, websocket" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("delta", "said"),
    [(datetime.timedelta(seconds=45), "45s"), (12 * datetime.timedelta(minutes=1), "12m"),
     (5 * H + 10 * datetime.timedelta(minutes=1), "5h10m"), (26 * H, "26h"), (72 * H, "3d")],
)
def test_ages_read_as_an_engineer_says_them(delta: datetime.timedelta, said: str) -> None:
    assert checks.age(delta) == said
