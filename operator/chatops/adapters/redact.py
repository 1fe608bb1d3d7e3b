"""Scrubbing secrets out of text that came from a driver, before it reaches an error,
a log line, an Event or a status.

Drivers' messages may quote a connection string (`mongodb://user:pass@host/`) or an
endpoint; we remove the user-info part of any URI, and every secret the caller knows
(the password, also URL-encoded; the S3 secret key), wherever it appears.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s@]*@")
_MIN_SECRET = 3
"""Shorter strings would blank ordinary words; no real secret is that short."""


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URI credentials and without any of `secrets` (raw or URL-encoded)."""
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    forms: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            forms.update(
                {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
            )
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


def uri_secrets(uri: str) -> list[str]:
    """The user and password in a connection string (`scheme://user:pass@hosts/…`),
    decoded and as written; empty when it has none."""
    match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?P<userinfo>[^/?#]*)@", uri)
    if match is None:
        return []
    _, _, password = match["userinfo"].partition(":")
    found = [password, urllib.parse.unquote(password)] if password else []
    return [s for s in found if s]
