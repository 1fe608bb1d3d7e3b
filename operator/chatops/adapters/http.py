"""HTTP calls chatops makes to other people's endpoints: the one place it GETs or POSTs a
URL and judges the answer.

A call passes on any 2xx answer within its timeout; anything else (another status, a
refused connection, a timeout, a malformed URL) is a reason, worded for a status message
a human reads: where and what happened, never a traceback. A URL may carry a secret (a
Slack incoming-webhook URL is one): `post_json` names it by `label`, never by the URL.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANSWER_LIMIT = 1 << 20
"""Bytes of an answer read at most: a metric is one number, not a download."""


@dataclass(frozen=True)
class Answer:
    """What an endpoint answered: its body on 2xx, else why there is none."""

    body: bytes = b""
    problem: str | None = None


def fetch(
    url: str,
    timeout: float,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """`method` `url` (with `body`, `headers`): its body when it answers 2xx within
    `timeout` seconds (at most `ANSWER_LIMIT` bytes), why not otherwise; the caller
    names the endpoint (the URL may hold user-info, the headers a token)."""
    try:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            if not 200 <= reply.status < 300:
                return Answer(problem=f"HTTP {reply.status}")
            data: bytes = reply.read(ANSWER_LIMIT + 1)
    except urllib.error.HTTPError as err:
        return Answer(problem=f"HTTP {err.code}")
    except (OSError, ValueError, http.client.HTTPException) as err:  # a garbled answer too
        return Answer(problem=_why(err, timeout))
    if len(data) > ANSWER_LIMIT:
        return Answer(problem=f"the answer is larger than {ANSWER_LIMIT} bytes")
    return Answer(body=data)


def probe(url: str, timeout: float, *, label: str | None = None) -> str | None:
    """None when `url` answers 2xx within `timeout` seconds; why not, otherwise (naming
    the endpoint by `label` when given: the URL may hold a secret, a token in its query)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return None if 200 <= reply.status < 300 else f"{label or url}: HTTP {reply.status}"
    except urllib.error.HTTPError as err:
        return f"{label or url}: HTTP {err.code}"
    except (OSError, ValueError) as err:
        if label is not None:
            return _reason(err, label, timeout)
        return f"{url}: {type(err).__name__}: {err}"


def post_json(
    url: str,
    body: Any,
    timeout: float,
    *,
    label: str,
    headers: Mapping[str, str] | None = None,
) -> str | None:
    """POST `body` as JSON: None when `url` answers 2xx within `timeout` seconds; why
    not, otherwise, naming the endpoint by `label` (the URL may hold a secret)."""
    try:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return None if 200 <= reply.status < 300 else f"{label}: HTTP {reply.status}"
    except urllib.error.HTTPError as err:
        return f"{label}: HTTP {err.code}"
    except (OSError, ValueError) as err:
        return _reason(err, label, timeout)


def _reason(err: OSError | ValueError, label: str, timeout: float) -> str:
    """Why a call to the endpoint `label` got no answer, never quoting its URL."""
    return f"{label}: {_why(err, timeout)}"


def _why(err: Exception, timeout: float) -> str:
    """Why a call got no answer, in a few words: a timeout, the OS's reason, the kind of
    error; never the error's own text, which may quote the URL or a header."""
    reason = getattr(err, "reason", err)
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    # A ValueError's text quotes the URL: say only what kind of error it was.
    said = getattr(reason, "strerror", None) or type(reason).__name__
    return str(said)
