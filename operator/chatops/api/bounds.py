"""Bounded field types and cross-field rules, each checked twice from one definition: by
the API server (OpenAPI `maxLength`/`maximum`/`pattern` and CEL) and by the operator
(pydantic), so a bad spec is refused by `kubectl apply` naming the field, and a spec
that reached the operator some other way gets `Accepted=False` naming the same field.

Every string a user writes has a length cap, every integer a maximum and every list a
maximum length: no value can overflow datetime arithmetic or a Kubernetes int32, and
chatops' own fields at their largest (pod templates aside) stay far below the 256 KiB
that all of an object's annotations share (kubectl's last-applied copy lives there).

Patterns use only what RE2 (the API server), Rust's regex (pydantic) and Python's `re`
read alike: ASCII classes, no `\\d`, `\\w` or `\\s`, which are Unicode-aware outside RE2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from chatops.api.common import DURATION_PATTERN, seconds

# -- integers ---------------------------------------------------------------------------

DAY_SECONDS = 86_400
"""The cap of every delay, deadline and timeout in seconds: beyond a day a release or a
backup waiting on it is stuck, not slow."""

Seconds = Annotated[int, Field(ge=0, le=DAY_SECONDS)]
"""Seconds, 0 to a day."""
PositiveSeconds = Annotated[int, Field(ge=1, le=DAY_SECONDS)]
"""Seconds, 1 to a day."""
LIMIT_MAX = 10_000
"""The cap of a tolerated count (failures, errors in a row…)."""
Limit = Annotated[int, Field(ge=0, le=LIMIT_MAX)]
"""A count tolerated before something happens."""

# -- durations --------------------------------------------------------------------------


def _cel(rule: str, message: str) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": rule, "message": message}]}


def cel_string(pattern: str) -> str:
    """A regular expression as a CEL string literal (JSON escaping is valid CEL)."""
    return json.dumps(pattern)


def _duration_field(maximum: str) -> Any:
    """CEL's `duration()` is called only on a string of the duration shape, so a malformed
    one gets the pattern's message and no evaluation error."""
    return Field(
        pattern=DURATION_PATTERN,
        max_length=16,
        json_schema_extra=_cel(
            f"!self.matches({cel_string(DURATION_PATTERN)}) || "
            f"duration(self) <= duration('{maximum}')",
            f"must be at most {maximum}",
        ),
    )


def _at_most(maximum: str) -> Callable[[str], str]:
    limit = seconds(maximum)

    def check(value: str) -> str:
        if seconds(value) > limit:
            raise ValueError(f"must be at most {maximum}")
        return value

    return check


HourDuration = Annotated[str, _duration_field("1h"), AfterValidator(_at_most("1h"))]
"""A `Duration` of at most an hour."""
DayDuration = Annotated[str, _duration_field("24h"), AfterValidator(_at_most("24h"))]
"""A `Duration` of at most a day."""
WeekDuration = Annotated[str, _duration_field("168h"), AfterValidator(_at_most("168h"))]
"""A `Duration` of at most a week."""
DecadeDuration = Annotated[str, _duration_field("87600h"), AfterValidator(_at_most("87600h"))]
"""A `Duration` of at most ten years (87600h), for retention."""


# -- strings ----------------------------------------------------------------------------

_DOMAIN_PART = "([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = "[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    rf"^({_DOMAIN_PART}(\.{_DOMAIN_PART})*(:[0-9]+)?/)?{_PATH_PART}(/{_PATH_PART})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
"""The OCI/distribution reference grammar, `[registry[:port]/]name[:tag][@digest]`, as
the kubelet parses it: lowercase name components, no whitespace anywhere."""
IMAGE_MESSAGE = (
    "must be an image reference [registry[:port]/]name[:tag][@digest], e.g. "
    "registry.example.com/chat-api:1.4.0 (lowercase name, no spaces)"
)
IMAGE_MAX = 512
"""A name is at most 255 characters (the distribution spec), a tag 128, a digest ~135."""


def _matching(pattern: str, message: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return check


Image = Annotated[
    str,
    Field(
        min_length=1,
        max_length=IMAGE_MAX,
        json_schema_extra=_cel(f"self.matches({cel_string(IMAGE_PATTERN)})", IMAGE_MESSAGE),
    ),
    AfterValidator(_matching(IMAGE_PATTERN, IMAGE_MESSAGE)),
]
"""An image reference, refused at the API server when the kubelet could not pull it."""

URL_MAX = 1024
_HOST = r"[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+"
URL_PATTERN = rf"^https?://{_HOST}([/?#][!-~]*)?$"
"""An http(s) URL with a host, printable ASCII only (anything else is percent-encoded)."""
URL_TEMPLATE_PATTERN = r"^https?://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]{}-]+([/?#][!-~]*)?$"
"""A URL whose host may hold `{{placeholders}}`."""


def _parsed(value: str) -> str:
    """What the pattern cannot say: the port is a number up to 65535, brackets close."""
    try:
        urlsplit(value.replace("{", "x").replace("}", "x")).port  # noqa: B018
    except ValueError as err:
        raise ValueError(f"not a URL: {err}") from None
    return value


_PORT_MESSAGE = "the port must be a number from 1 to 65535"
URL = Annotated[
    str,
    Field(
        min_length=1,
        max_length=URL_MAX,
        pattern=URL_PATTERN,
        json_schema_extra=_cel(
            "!isURL(self) || url(self).getPort() == '' || int(url(self).getPort()) <= 65535",
            _PORT_MESSAGE,
        ),
    ),
    AfterValidator(_parsed),
]
"""An http(s) URL, e.g. http://prometheus.monitoring:9090."""
URLTemplate = Annotated[
    str,
    Field(min_length=1, max_length=URL_MAX, pattern=URL_TEMPLATE_PATTERN),
    AfterValidator(_parsed),
]
"""An http(s) URL with `{{service}}`-style placeholders."""

HTTP_PATH_PATTERN = r"^/[!-~]*$"
HTTPPath = Annotated[str, Field(min_length=1, max_length=512, pattern=HTTP_PATH_PATTERN)]
"""An HTTP path, starting with `/`, printable ASCII."""

QUERY_MAX = 2048
Query = Annotated[str, Field(min_length=1, max_length=QUERY_MAX)]
"""A PromQL query: 2 KiB is ten times the longest query of the runbook's dashboards."""

SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)]
"""A key of a Secret's data, as Kubernetes allows it."""

Region = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
"""An S3 region: an AWS name (us-east-1) or an S3-compatible store's own (Ceph, MinIO)."""

KmsKeyId = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9:/_.+=@-]+$")]
"""A KMS key id, alias or ARN (AWS allows 2048 characters)."""

TimeZone = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
]
"""An IANA time zone name, e.g. Europe/Paris."""

_S3_CHARS = r"[^\x00-\x1f\x7f]"
PREFIX_MAX = 256
PREFIX_PATTERN = rf"^([^/\x00-\x1f\x7f]{_S3_CHARS}*/)?$"
OBJECT_KEY_PATTERN = rf"^{_S3_CHARS}+\.tar\.gz$"
S3_KEY_BYTES = 1024
"""S3's limit on a key, in UTF-8 bytes."""


def _key_bytes(room: int) -> Callable[[str], str]:
    """S3 counts bytes where the schema counts characters: leave `room` for what follows."""

    def check(value: str) -> str:
        if len(value.encode()) > S3_KEY_BYTES - room:
            raise ValueError(f"must be at most {S3_KEY_BYTES - room} bytes in UTF-8")
        return value

    return check


def _bytes_rule(room: int) -> dict[str, Any]:
    limit = S3_KEY_BYTES - room
    return _cel(f"bytes(self).size() <= {limit}", f"must be at most {limit} bytes in UTF-8")


KeyPrefix = Annotated[
    str,
    Field(max_length=PREFIX_MAX, pattern=PREFIX_PATTERN, json_schema_extra=_bytes_rule(128)),
    AfterValidator(_key_bytes(room=128)),
]
"""An S3 key prefix, empty or ending in `/`; the backup's own name follows it."""
ObjectKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=S3_KEY_BYTES,
        pattern=OBJECT_KEY_PATTERN,
        json_schema_extra=_bytes_rule(len(".manifest.json")),
    ),
    AfterValidator(_key_bytes(room=len(".manifest.json"))),
]
"""The S3 key of a `.tar.gz`; its `.manifest.json` sits beside it."""

# -- cross-field rules ------------------------------------------------------------------

M = TypeVar("M")


@dataclass(frozen=True)
class Rule:
    """A rule over a whole object: CEL for the API server, `holds` for the model."""

    cel: str
    message: str
    holds: Callable[[Any], bool]


def validations(*rules: Rule, transitions: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """The `json_schema_extra` that puts `rules` into the CRD, after the `transitions`:
    rules on `oldSelf`, which only the API server can check."""
    return {
        "x-kubernetes-validations": [
            *transitions,
            *({"rule": r.cel, "message": r.message} for r in rules),
        ]
    }


def enforce(model: M, rules: Sequence[Rule]) -> M:
    """The model itself, or a ValueError with the message of every rule it breaks."""
    broken = [r.message for r in rules if not r.holds(model)]
    if broken:
        raise ValueError("; ".join(broken))
    return model


def exactly_one(*values: object) -> bool:
    return sum(v is not None for v in values) == 1
