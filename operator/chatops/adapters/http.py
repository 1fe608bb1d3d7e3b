"""HTTP health probes: the one place chatops GETs a URL and judges the answer.

A probe passes on any 2xx answer within its timeout; anything else (another status, a
refused connection, a timeout, a malformed URL) is a reason, worded for a status message
a human reads: the URL and what happened, never a traceback.
"""

from __future__ import annotations

import urllib.error
import urllib.request


def probe(url: str, timeout: float) -> str | None:
    """None when `url` answers 2xx within `timeout` seconds; why not, otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return None if 200 <= reply.status < 300 else f"{url}: HTTP {reply.status}"
    except urllib.error.HTTPError as err:
        return f"{url}: HTTP {err.code}"
    except (OSError, ValueError) as err:
        return f"{url}: {type(err).__name__}: {err}"
