"""`chatops run`, unchanged, with every request it makes counted from inside the process.

    CHATOPS_BENCH_COUNTS=/tmp/counts.json python bench/counted_operator.py run -n NS

Why from inside: the API server's own `apiserver_request_total` cannot tell one client
from another, and on the shared machine other operators (e2e tests) and the controller
manager talk to the same API server at the same time. Wrapping the three HTTP clients
the operator uses counts exactly this process's requests:

- the kubernetes client (urllib3), used by the release controller's looks;
- aiohttp, used by kopf itself (watch streams, its own patches, the Events we post);
- requests, used by prometheus-api-client for the analysis queries.

It also times every call through `asyncio.to_thread` (in the release controller, one per
look: `runner.look`): how long it waited for a thread of the executor, which is what
tells whether looks queue up, and how long it ran.

Every half second (and at exit) the counts go, as JSON, to the file named by
`CHATOPS_BENCH_COUNTS`, written atomically so a reader never sees half a file; each
look adds a line to `<that file>.looks` (appending a line costs less than rewriting a
list of thousands every half second, which would count in the operator's CPU).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

T = TypeVar("T")

_lock = threading.Lock()
_requests: collections.Counter[str] = collections.Counter()
_looks: Any = None  # a line-buffered file: "waited ran" per look, seconds
_peak_threads = 0

_NAMESPACED = re.compile(
    r"^/(?:api/v1|apis/[^/]+/[^/]+)/namespaces/[^/]+/([^/]+)(?:/[^/]+(/.+)?)?$"
)
_CLUSTER = re.compile(r"^/(?:api/v1|apis/[^/]+/[^/]+)/([^/]+)(?:/[^/]+(/.+)?)?$")


def kube_key(method: str, url: str) -> str:
    """`VERB resource[/subresource]`, e.g. `PATCH deployments/scale`, `WATCH chatreleases`:
    the same split as the API server's `verb` and `resource` labels, so the two counts
    can be compared row by row."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    path = parts.path
    verb = method.upper()
    found = _NAMESPACED.match(path) or _CLUSTER.match(path)
    if found is None:
        return f"{verb} {path}"
    resource, sub = found.group(1), found.group(2)
    named = path.rstrip("/").split("/")[-1] != resource
    if verb == "GET":
        if query.get("watch") in (["true"], ["1"]):
            verb = "WATCH"
        elif not named:
            verb = "LIST"
    if verb == "PUT":
        verb = "UPDATE"
    if verb == "POST":
        verb = "CREATE"
    return f"{verb} {resource}{sub or ''}"


def _count(key: str) -> None:
    with _lock:
        _requests[key] += 1


def _install() -> None:
    import aiohttp
    import requests
    from kubernetes.client import rest

    kube_request = rest.RESTClientObject.request

    @functools.wraps(kube_request)
    def counted_kube(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        query = kwargs.get("query_params") or (args[0] if args else None)
        shown = f"{url}?{'&'.join(f'{k}={v}' for k, v in query)}" if query else url
        _count(f"kube {kube_key(method, shown)}")
        return kube_request(self, method, url, *args, **kwargs)

    setattr(rest.RESTClientObject, "request", counted_kube)  # noqa: B010

    aio_request = aiohttp.ClientSession._request

    @functools.wraps(aio_request)
    async def counted_aio(self: Any, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        _count(f"kopf {kube_key(method, str(url))}")
        return await aio_request(self, method, url, *args, **kwargs)

    setattr(aiohttp.ClientSession, "_request", counted_aio)  # noqa: B010

    http_request = requests.Session.request

    @functools.wraps(http_request)
    def counted_http(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        path = urlsplit(url).path
        _count(f"prometheus {method.upper()} {path}")
        return http_request(self, method, url, *args, **kwargs)

    setattr(requests.Session, "request", counted_http)  # noqa: B010

    to_thread = asyncio.to_thread

    async def timed_to_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        submitted = time.monotonic()

        def timed() -> T:
            started = time.monotonic()
            try:
                return func(*args, **kwargs)
            finally:
                line = f"{started - submitted:.6f} {time.monotonic() - started:.6f}\n"
                with _lock:
                    _looks.write(line)

        return await to_thread(timed)

    asyncio.to_thread = timed_to_thread


def snapshot() -> dict[str, Any]:
    global _peak_threads
    with _lock:
        _peak_threads = max(_peak_threads, threading.active_count())
        return {
            "time": time.time(),
            "requests": dict(_requests),
            "threads_now": threading.active_count(),
            "threads_peak": _peak_threads,
        }


def _dump(path: str) -> None:
    data = json.dumps(snapshot())
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        out.write(data)
    os.replace(tmp, path)


def _dumper(path: str) -> None:
    while True:
        time.sleep(0.5)
        with contextlib.suppress(OSError):  # a full disk must not stop the operator
            _dump(path)


def main() -> int:
    global _looks
    path = os.environ["CHATOPS_BENCH_COUNTS"]
    _looks = open(f"{path}.looks", "a", buffering=1)  # noqa: SIM115 - open while we run
    _install()
    threading.Thread(target=_dumper, args=(path,), daemon=True, name="bench-counts").start()
    atexit.register(_dump, path)
    from chatops import cli

    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
