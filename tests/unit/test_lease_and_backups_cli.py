"""The Lease rules and the `chatops backups` table: pure parts, no cluster."""

from __future__ import annotations

import datetime

import pytest

from chatops.adapters.lease import Holding, database_lease_name, lease_namespace
from chatops.adapters.mongo import resolve, uri_problem
from chatops.commands.backups import human_age, human_size, render

NOW = datetime.datetime(2026, 11, 26, 3, 0, tzinfo=datetime.UTC)


def test_two_names_of_one_server_are_one_deployment() -> None:
    """Case 13: `localhost` and `127.0.0.1` reach one server, so they meet on one Lease."""
    assert resolve("localhost", 27017) == resolve("127.0.0.1", 27017) == ["127.0.0.1:27017"]
    assert resolve("no-such-host.invalid", 27017) == ["no-such-host.invalid:27017"]


def test_the_database_lease_is_named_by_identity_and_lives_in_one_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = database_lease_name("servers/127.0.0.1:27017")
    assert a == database_lease_name("servers/127.0.0.1:27017")
    assert a.startswith("chatops-db-") and len(a) == len("chatops-db-") + 16
    assert database_lease_name("replicaset/rs0") != a
    monkeypatch.delenv("CHATOPS_LEASE_NAMESPACE", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert lease_namespace() == "default"
    monkeypatch.setenv("POD_NAMESPACE", "chatops-system")
    assert lease_namespace() == "chatops-system"
    monkeypatch.setenv("CHATOPS_LEASE_NAMESPACE", "leases")
    assert lease_namespace() == "leases"


@pytest.mark.parametrize(
    ("uri", "refused"),
    [
        ("mongodb://chat:pw@mongo-0:27017,mongo-1:27017/chat?replicaSet=rs0", False),
        ("mongodb+srv://u:p%40ss@cluster.example.net/?retryWrites=true", False),
        ("mongodb://mongo:27017/", False),
        ("mongodb://h/db?authMechanismProperties=a@b", False),
        ("mongodb://chat:Zq7@Xw9/Vb4@127.0.0.1:1/", True),  # pymongo reads host "Xw9"
        ("mongodb://chat:Zq7@Xw9@127.0.0.1:1/", True),
        ("mongodb://chat:Zq7?Xw9@h/", True),
        ("mongodb://chat:Zq7#Xw9@h/", True),
        ("mongodb://chat:Zq7%Xw9@h/", True),
        ("mongodb://chat:Zq7:Xw9@h/", True),
        ("http://h/", True),
        ("mongodb:///db", True),
    ],
)
def test_a_connection_string_pymongo_would_misread_is_refused(uri: str, refused: bool) -> None:
    """Case 15: refused without quoting any part of it."""
    problem = uri_problem(uri)
    assert (problem is not None) is refused
    if problem is not None:
        for part in ("Zq7", "Xw9", "Vb4", "chat", "127.0.0.1"):
            assert part not in problem


@pytest.mark.parametrize(
    ("holding", "free"),
    [
        (Holding(None, None), True),
        (Holding("me", NOW), True),
        (Holding("them", NOW - datetime.timedelta(seconds=10)), False),
        (Holding("them", NOW - datetime.timedelta(seconds=31)), True),
        (Holding("them", NOW - datetime.timedelta(seconds=31), duration_seconds=60), False),
    ],
)
def test_who_may_take_a_lease(holding: Holding, free: bool) -> None:
    assert holding.free_for("me", NOW) is free


def test_sizes_and_ages_read_like_kubectl() -> None:
    assert [human_size(s) for s in (None, 512, 4 * 1024 * 1024)] == ["-", "512 B", "4.0 MiB"]
    ages = [datetime.timedelta(seconds=s) for s in (45, 600, 18000, 3 * 86400)]
    assert [human_age(a) for a in ages] == ["45s", "10m", "5h", "3d"]


def test_the_backups_table() -> None:
    rows = [
        {"id": "20261125_030000", "size": 3_000_000, "documents": 200_220,
         "started": NOW - datetime.timedelta(days=1), "state": "complete",
         "key": "nightly/mongodb_20261125_030000.tar.gz"},
        {"id": "20261126_030000", "size": None, "documents": None,
         "started": NOW, "state": "incomplete", "key": None},
    ]
    lines = render(rows, NOW).splitlines()
    assert lines[0].split() == ["ID", "SIZE", "DOCUMENTS", "AGE", "STATE", "KEY"]
    assert lines[1].split() == [
        "20261125_030000", "2.9", "MiB", "200220", "24h", "complete",
        "nightly/mongodb_20261125_030000.tar.gz",
    ]
    assert lines[2].split() == ["20261126_030000", "-", "-", "0s", "incomplete", "-"]
