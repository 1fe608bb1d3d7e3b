"""A `web` metric: an HTTP endpoint of the user's own that answers JSON, and the JSONPath
to the number in it (Argo Rollouts' web metric provider), judged by the same `min`, `max`
and `onNoData` as a Prometheus query.

Headers may come from Secrets (an API token): the spec names the Secret, never holds the
value, and the operator puts the value into the request and nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from chatops.api import bounds
from chatops.api.bounds import Rule
from chatops.api.common import Model, SecretKeyRef

HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
"""An HTTP field name (RFC 9110's `token`)."""
HEADER_VALUE_PATTERN = r"^[^\r\n\x00]*$"
"""No line break or NUL: a header value cannot end its own line."""
JSON_PATH_MAX = 128
BODY_MAX = 512
TIMEOUT_MAX = 60
"""Seconds: a slower endpoint would hold every look of the release loop."""


def _json_path(text: str) -> str:
    """A JSONPath jsonpath-ng can read, `{$.data.ok}` (kubectl's and Argo Rollouts' way of
    writing it) or `$.data.ok`: refused here, naming the problem, rather than at every
    measurement."""
    from chatops.metrics import jsonpath  # the parser lives with its only user

    jsonpath.compile_path(text)
    return text


JsonPath = Annotated[
    str,
    Field(min_length=1, max_length=JSON_PATH_MAX, pattern=r"^\{?\s*[$.]"),
    AfterValidator(_json_path),
]
"""A JSONPath, with or without kubectl's braces, e.g. `{$.data.errorRate}`."""


class HeaderValueSource(Model):
    """Where a header's value is read from."""

    secret_key_ref: SecretKeyRef
    """A key of a Secret in the release's namespace."""


_HEADER_RULES = (
    Rule(
        "has(self.value) != has(self.valueFrom)",
        "set exactly one of value and valueFrom",
        lambda h: bounds.exactly_one(h.value, h.value_from),
    ),
)


class WebHeader(Model):
    """One request header, its value written here or read from a Secret."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_HEADER_RULES))

    @model_validator(mode="after")
    def _rules(self) -> WebHeader:
        return bounds.enforce(self, _HEADER_RULES)

    name: str = Field(min_length=1, max_length=64, pattern=HEADER_NAME_PATTERN)
    """Header name, e.g. `Authorization`."""
    value: str | None = Field(default=None, max_length=256, pattern=HEADER_VALUE_PATTERN)
    """The value, as written (nothing secret: the spec is readable by whoever reads the
    release)."""
    value_from: HeaderValueSource | None = None
    """The value from a Secret (surrounding whitespace, such as the newline a file
    leaves, is dropped): sent to the endpoint, never shown in status, Events, logs or
    errors."""


_WEB_RULES = (
    Rule(
        "!has(self.body) || self.method == 'POST'",
        "body needs method POST",
        lambda w: w.body is None or w.method == "POST",
    ),
    Rule(
        "!has(self.headers) || self.headers.all(h, self.headers.exists_one(o, "
        "o.name.lowerAscii() == h.name.lowerAscii()))",
        "each header name may appear once",
        lambda w: len({h.name.lower() for h in w.headers}) == len(w.headers),
    ),
)


class WebMetric(Model):
    """An HTTP GET or POST whose JSON answer holds the metric's value."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_WEB_RULES))

    @model_validator(mode="after")
    def _rules(self) -> WebMetric:
        return bounds.enforce(self, _WEB_RULES)

    url: bounds.URLTemplate
    """The endpoint; `{{service}}`, `{{namespace}}`, `{{component}}`, `{{color}}` and
    `{{revision}}` are replaced as in a query, e.g.
    `http://slo.monitoring/api/v1/error-rate?service={{service}}`."""
    method: Literal["GET", "POST"] = "GET"
    """HTTP method."""
    body: str | None = Field(default=None, max_length=BODY_MAX)
    """The POST body (at most 512 characters), templated as the URL; sent as
    `Content-Type: application/json` unless a header says otherwise."""
    json_path: JsonPath
    """Where the value is in the answer, e.g. `{$.data.errorRate}`. It must match one
    number (a JSON number, a string holding one, or a boolean: `true` is 1, `false` 0);
    matching nothing, or `null`, is no data (`onNoData`)."""
    timeout_seconds: int = Field(default=10, ge=1, le=TIMEOUT_MAX)
    """Seconds to wait for the answer (1 to 60); no answer in time is an Error."""
    headers: list[WebHeader] = Field(default_factory=list, max_length=2)
    """Up to two request headers (an API key and an application key, as Datadog asks)."""
