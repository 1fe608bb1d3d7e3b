"""Prometheus through prometheus-api-client, with short timeouts and a secret kept secret.

Timeouts are short and retries few because the release loop, not this client, is the
place to retry: one slow Prometheus must not hold a reconcile for a minute, and an
Error measurement already pauses the release until the next interval.

The bearer token (from `analysis.prometheus.authSecretRef`, read by the caller) goes
into one request header and nowhere else: not into `repr`, not into logs, not into an
exception message, which is also scrubbed of it in case a server echoes it back.

Every look makes a provider, but the HTTP client under it is one per (address, token,
timeout), shared by the looks' threads: its connections are kept alive and reused, and
a look allocates no session of its own (`_connection`).
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import json
import re
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from chatops.errors import MetricsUnavailable
from chatops.metrics.sweep import source as sweep_source

DEFAULT_TIMEOUT = 5
"""Seconds for one query, connecting included; Prometheus gets the same as its own
evaluation timeout."""
_HTTP_ERROR = re.compile(r"HTTP Status Code (\d+) \((.*)\)\Z", re.DOTALL)
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")
POOL = 16
"""Connections kept per Prometheus: as many as the threads that look at once."""
KEPT_CLIENTS = 32
"""Clients kept (the least recently used goes first): a token that changed leaves its
old client behind, and the cap keeps those from piling up."""
_clients: OrderedDict[tuple[str, str | None, int], PrometheusConnect] = OrderedDict()
_clients_lock = threading.Lock()


def public_address(address: str) -> str:
    """The address without user:password, fit for messages and status."""
    parts = urlsplit(address)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


def one_number(result: Any, address: str) -> float | None:
    """The value of a `/api/v1/query` result: None for an empty vector, the sample of a
    one-series vector or a scalar; anything else is a query that cannot gate a release."""
    if not result:
        return None
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        sample = result[1]  # a scalar (or string) result: [time, "value"]
    elif isinstance(result, list) and all(isinstance(series, dict) for series in result):
        if len(result) > 1:
            raise MetricsUnavailable(
                address,
                f"the query returned {len(result)} series; it must return one number "
                "(aggregate it, e.g. with sum(...))",
            )
        if "value" not in result[0]:
            raise MetricsUnavailable(
                address, "the query returned a range vector; it must return one number"
            )
        sample = result[0]["value"][1]
    else:
        raise MetricsUnavailable(address, "the answer is not a Prometheus query result")
    try:
        return float(sample)
    except (TypeError, ValueError):
        raise MetricsUnavailable(address, f"the query returned {sample!r}, not a number") from None


def _http_problem(err: PrometheusApiClientException) -> str:
    """`HTTP 400: parse error …` from the client's exception, whose text is the status
    code and the raw body; Prometheus puts its reason in the body's `error` field."""
    match = _HTTP_ERROR.match(str(err))
    if match is None:
        return "answered an error"
    code, body = match.groups()
    reason = ""
    with contextlib.suppress(ValueError, SyntaxError, TypeError, AttributeError):
        reason = str(json.loads(ast.literal_eval(body)).get("error", ""))
    return f"answered HTTP {code}" + (f": {reason[:300]}" if reason else "")


def _connection_problem(err: requests.RequestException, timeout: int) -> str:
    if isinstance(err, requests.Timeout):
        return f"unreachable: no answer within {timeout} s"
    found = _ERRNO.search(str(err))
    return f"unreachable: {found.group(0).strip() if found else type(err).__name__}"


def _connection(url: str, token: str | None, timeout: int) -> PrometheusConnect:
    """The client of `url` with this token and timeout, made on first use."""
    key = (url, token, timeout)
    with _clients_lock:
        found = _clients.get(key)
        if found is not None:
            _clients.move_to_end(key)
            return found
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # One quick retry of a refused or reset connection; none on HTTP statuses.
        retry = Retry(total=1, connect=1, read=0, status=0, other=0, backoff_factor=0)
        session = requests.Session()
        found = PrometheusConnect(
            url=url, headers=headers, retry=retry, timeout=timeout, session=session
        )
        # Replaces the adapter PrometheusConnect mounted, whose pool keeps 10 connections.
        session.mount(url, HTTPAdapter(max_retries=retry, pool_maxsize=POOL))
        _clients[key] = found
        while len(_clients) > KEPT_CLIENTS:
            _clients.popitem(last=False)
        return found


class PrometheusProvider:
    """A `MetricProvider` on one Prometheus server."""

    def __init__(
        self, address: str, token: str | None = None, timeout: int = DEFAULT_TIMEOUT
    ) -> None:
        self.address = public_address(address)
        self.source = sweep_source(self.address, token)
        self._token = token
        self._timeout = timeout
        self._prometheus = _connection(address.rstrip("/"), token, timeout)

    def __repr__(self) -> str:
        return f"PrometheusProvider({self.address!r})"

    def query(self, promql: str) -> float | None:
        return self._query(promql, {})

    def query_at(self, promql: str, at: datetime.datetime) -> float | None:
        return self._query(promql, {"time": f"{at.timestamp():.3f}"})

    def series(
        self, promql: str, at: datetime.datetime | None = None
    ) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant vector (at `at`, else now): its labels and value
        (the sweep's grouped queries, `metrics/sweep.py`)."""
        result = self._ask(promql, {"time": f"{at.timestamp():.3f}"} if at else {})
        try:
            return [(dict(s["metric"]), float(s["value"][1])) for s in result]
        except (KeyError, TypeError, ValueError, IndexError):
            raise self._unavailable("the answer is not an instant vector") from None

    def _query(self, promql: str, params: dict[str, str]) -> float | None:
        return one_number(self._ask(promql, params), self.address)

    def _ask(self, promql: str, params: dict[str, str]) -> Any:
        try:
            return self._prometheus.custom_query(
                promql, params={"timeout": f"{self._timeout}s", **params}
            )
        except PrometheusApiClientException as err:
            raise self._unavailable(_http_problem(err)) from None
        except (requests.JSONDecodeError, KeyError, TypeError):  # 200, but not the API's body
            raise self._unavailable("answered something that is not the query API") from None
        except requests.RequestException as err:
            raise self._unavailable(_connection_problem(err, self._timeout)) from None

    def _unavailable(self, problem: str) -> MetricsUnavailable:
        if self._token:
            problem = problem.replace(self._token, "*****")
        return MetricsUnavailable(self.address, problem)
