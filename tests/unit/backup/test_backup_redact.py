"""Credentials never survive into error text."""

from __future__ import annotations

import pytest

from chatops.adapters.redact import MASK, redact, uri_secrets


@pytest.mark.parametrize(
    "text",
    [
        "could not connect to mongodb://chat:hunter2!@db-0.db:27017,db-1.db/chat?tls=true",
        "mongodb+srv://chat:hunter2%21@cluster0.example.net/?retryWrites=true failed",
        "bad endpoint https://AKID:hunter2!@minio.local:9000/bucket",
    ],
)
def test_uri_user_info_is_removed(text: str) -> None:
    out = redact(text)
    assert "hunter2" not in out and "chat:" not in out and "AKID" not in out
    assert f"{MASK}@" in out


def test_known_secrets_are_removed_raw_and_url_encoded() -> None:
    secret = "p@ss w/rd"
    text = "auth failed for 'p@ss w/rd' (p%40ss%20w%2Frd, p%40ss+w%2Frd)"
    assert secret not in redact(text, [secret])
    assert "p%40ss" not in redact(text, [secret])


def test_hosts_stay_for_the_human() -> None:
    out = redact("mongodb://u:pw1234@db-0.chat.svc:27017/ timed out", ["pw1234"])
    assert out == f"mongodb://{MASK}@db-0.chat.svc:27017/ timed out"


def test_uri_secrets_finds_the_password_decoded_and_as_written() -> None:
    assert uri_secrets("mongodb://chat:p%40ss@h/") == ["p%40ss", "p@ss"]
    assert uri_secrets("mongodb://h:27017/") == []
    assert uri_secrets("mongodb://onlyuser@h/") == []
