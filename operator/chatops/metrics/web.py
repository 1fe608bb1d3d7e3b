"""The `web` metric provider (Argo Rollouts' `web`): one HTTP GET or POST to the user's
endpoint, one number out of its JSON answer by `jsonPath`.

What it asks is rendered purely (`request_for`, the same placeholders as a query); the
asking goes through `chatops.adapters.http`. Every way of not getting a number is a
`WebMetricUnavailable` naming the metric and the endpoint: an Error measurement, as an
unreachable Prometheus is, never a Fail or a Pass. A JSONPath that matches nothing is no
data, judged by `onNoData`.

Header values read from Secrets go into the request and nowhere else: every message
built here is scrubbed of them, in case an endpoint echoes one back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from chatops.adapters import http
from chatops.adapters.redact import redact
from chatops.api.analysis import Metric
from chatops.api.common import SecretKeyRef
from chatops.api.web import HEADER_VALUE_PATTERN, WebHeader
from chatops.errors import ChatopsError, WebMetricUnavailable
from chatops.metrics import jsonpath
from chatops.metrics.analysis import QueryContext, render

SecretReader = Callable[[SecretKeyRef], str]
"""A Secret's value by reference; raises a `ChatopsError` (that holds no value) when it
cannot be read."""


@dataclass(frozen=True)
class WebRequest:
    """A web metric's request for one version: URL and body rendered, headers as the
    spec writes them (Secret references not yet read)."""

    metric: str
    method: str
    url: str
    body: str | None
    json_path: str
    timeout: float
    headers: tuple[WebHeader, ...] = ()

    @property
    def endpoint(self) -> str:
        """`GET url` as status shows it: what was asked, without any user-info."""
        return f"{self.method} {redact(self.url)}"


def request_for(metric: Metric, context: QueryContext, index: int) -> WebRequest:
    """The request of web metric `index` for the version `context` names; an unknown
    placeholder raises `UnknownPlaceholder`, naming `…web.url` or `…web.body`."""
    web = metric.web
    assert web is not None, "request_for is for web metrics"
    field = f"spec.analysis.metrics[{index}].web"
    return WebRequest(
        metric=metric.name,
        method=web.method,
        url=render(web.url, context, f"{field}.url"),
        body=None if web.body is None else render(web.body, context, f"{field}.body"),
        json_path=web.json_path,
        timeout=web.timeout_seconds,
        headers=tuple(web.headers),
    )


class WebProvider:
    """Asks web metrics' endpoints. One is made per look: a Secret is read once a look,
    so a rotated token is picked up at the next."""

    def __init__(self, secret: SecretReader | None = None) -> None:
        self._secret = secret
        self._read: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return "WebProvider()"

    def value(self, request: WebRequest) -> float | None:
        """The number the endpoint's answer holds at `jsonPath`; None for no data.
        Raises `WebMetricUnavailable` when there is no number to judge."""
        headers, secrets = self._headers(request)
        body = None if request.body is None else request.body.encode()
        answer = http.fetch(
            request.url, request.timeout, method=request.method, body=body, headers=headers
        )
        if answer.problem is not None:
            raise self._unavailable(request, answer.problem, secrets)
        try:
            document = json.loads(answer.body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise self._unavailable(request, "the answer is not JSON", secrets) from None
        try:
            return jsonpath.number(document, request.json_path)
        except ValueError as err:
            problem = f"jsonPath {request.json_path} {err}"
            raise self._unavailable(request, problem, secrets) from None

    def _headers(self, request: WebRequest) -> tuple[dict[str, str], list[str]]:
        headers: dict[str, str] = {}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        secrets = []
        for header in request.headers:
            for name in [n for n in headers if n.lower() == header.name.lower()]:
                del headers[name]
            if header.value is not None:
                headers[header.name] = header.value
                continue
            assert header.value_from is not None
            value = self._secret_value(request, header.name, header.value_from.secret_key_ref)
            headers[header.name] = value
            secrets.append(value)
        return headers, secrets

    def _secret_value(self, request: WebRequest, header: str, ref: SecretKeyRef) -> str:
        where = f"header {header} from Secret {ref.name}, key {ref.key}"
        key = (ref.name, ref.key)
        if key not in self._read:
            if self._secret is None:
                raise self._unavailable(request, f"cannot read {where}: no Secret reader", [])
            try:
                self._read[key] = self._secret(ref).strip()
            except ChatopsError as err:
                raise self._unavailable(request, f"cannot read {where}: {err}", []) from None
        value = self._read[key]
        if not _sendable(value):
            raise self._unavailable(
                request, f"{where}: the value has a line break or NUL, which a header cannot "
                "hold", [value],
            )
        return value

    @staticmethod
    def _unavailable(
        request: WebRequest, problem: str, secrets: list[str]
    ) -> WebMetricUnavailable:
        return WebMetricUnavailable(request.metric, request.endpoint, redact(problem, secrets))


def _sendable(value: str) -> bool:
    return re.fullmatch(HEADER_VALUE_PATTERN, value) is not None
