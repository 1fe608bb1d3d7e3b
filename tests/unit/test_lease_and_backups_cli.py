"""The Lease rules and the `chatops backups` table: pure parts, no cluster."""

from __future__ import annotations

import datetime

import pytest

from chatops.adapters.lease import Holding, hosts_of, lease_name
from chatops.commands.backups import human_age, human_size, render

NOW = datetime.datetime(2026, 11, 26, 3, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("uri", "hosts"),
    [
        (
            "mongodb://chat:pw@Mongo-0:27017,mongo-1:27017/chat?replicaSet=rs0",
            "mongo-0:27017,mongo-1:27017",
        ),
        ("mongodb://mongo-1:27017,mongo-0:27017/", "mongo-0:27017,mongo-1:27017"),
        ("mongodb+srv://u:p@cluster.example.net/?retryWrites=true", "cluster.example.net"),
    ],
)
def test_a_deployment_is_its_hosts_whatever_the_credentials_and_options(
    uri: str, hosts: str
) -> None:
    assert hosts_of(uri) == hosts


def test_every_connection_string_of_one_deployment_names_the_same_lease() -> None:
    a = lease_name("mongodb://backup:one@mongo-0:27017/chat?authSource=admin")
    b = lease_name("mongodb://restore:two@mongo-0:27017/")
    assert a == b and a.startswith("chatops-db-") and len(a) == len("chatops-db-") + 16
    assert lease_name("mongodb://other:27017/") != a


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
