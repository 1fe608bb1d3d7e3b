"""Bad specs made by mutating good ones, for the bad-input properties: each is refused
by the API server naming the field, or the operator's `validation.problems` names it.

The good specs are the annotated examples (examples/*.yaml) and a few more that use the
fields the examples leave out, in wire form with every default filled in, so every
field the schema has is there to be broken. Each mutation is one of: a wrong type, an
out-of-range number (2**62 among them), a string one past its maximum length and one of
1 MiB, an unknown enum value, a missing required field, both or neither of a one-of, a
malformed duration, cron schedule, URL or image, and the checks only the operator can
make (time zone, a schedule that never fires, an unknown query placeholder, a port out
of range).

Shared with tests/e2e/test_bad_input_e2e.py, which sends a sample to the real API server.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chatops.api import crd
from chatops.api.common import DURATION_PATTERN
from chatops.api.validation import SPECS

ROOT = Path(__file__).resolve().parents[2]
Json = Any
Path_ = tuple[str | int, ...]

_IMAGE = "registry.example.com/chat-api:1.4.0"
_CONTAINERS = [{"name": "api", "image": _IMAGE}]
_WEB = {
    "url": "http://slo.monitoring/api/v1/errors?service={{service}}",
    "method": "POST",
    "body": '{"service": "{{service}}", "color": "{{color}}"}',
    "jsonPath": "{$.data.value}",
    "timeoutSeconds": 5,
    "headers": [
        {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "slo", "key": "token"}}},
        {"name": "Accept", "value": "application/json"},
    ],
}
_WEB_METRIC = {"name": "slo-errors", "web": _WEB, "max": 0.01, "compareToStable": True}
MORE: dict[str, list[dict[str, Any]]] = {
    "ChatRelease": [
        {
            "components": [
                {
                    "name": "api",
                    "template": {
                        "metadata": {"labels": {"tier": "api"}, "annotations": {"team": "chat"}},
                        "spec": {
                            "containers": _CONTAINERS,
                            "initContainers": [{"name": "migrate", "image": _IMAGE}],
                        },
                    },
                    "service": {"port": 8080, "targetPort": 8081},
                    "healthCheck": {
                        "url": "http://{{service}}.{{namespace}}:8080/ready",
                        "port": 8080,
                    },
                }
            ],
            "strategy": {
                "blueGreen": {
                    "autoPromote": False,
                    "prePromotionAnalysis": True,
                    "drain": {"waves": 3, "interval": "20s", "reconnect": {"min": 0.95}},
                }
            },
            "trafficRouting": {"service": {}},
            "cost": {"settle": "1m"},
            "analysis": {
                "prometheus": {
                    "address": "http://prometheus.monitoring:9090",
                    "authSecretRef": {"name": "prom", "key": "token"},
                },
                "minimumTraffic": {},
                "metrics": [{"name": "errors", "query": "up", "min": 0, "max": 1}, _WEB_METRIC],
            },
            "smokeTest": {"template": {"spec": {"containers": _CONTAINERS}}},
        },
        {
            "components": [
                {
                    "name": "api",
                    "template": {"spec": {"containers": _CONTAINERS}},
                    "service": {"port": 8080},
                }
            ],
            "strategy": {"rolling": {"maxSurge": 1, "maxUnavailable": "10%"}},
            "trafficRouting": {"nginx": {"ingress": "chat"}},
        },
    ],
    "ChatBackup": [
        {
            "schedule": "*/30 1-5 * JAN-JUN MON-FRI",
            "startingDeadlineSeconds": 600,
            "mongodb": {"uriSecretRef": {"name": "mongo", "key": "uri"}, "database": "chat"},
            "storage": {
                "s3": {
                    "bucket": "chat-backups",
                    "region": "eu-west-1",
                    "endpoint": "https://s3.example.com:9000",
                    "forcePathStyle": True,
                    "credentialsSecretRef": {"name": "s3"},
                    "serverSideEncryption": "aws:kms",
                    "kmsKeyId": "alias/chat-backups",
                    "prefix": "mongodb/",
                }
            },
            "retention": {"keepLast": 7, "maxAge": "720h"},
            "verification": {
                "schedule": "30 4 * * SUN",
                "scratch": {"database": "chat_drill", "uriSecretRef": {"name": "drills"}},
                "timeoutSeconds": 1800,
            },
        }
    ],
    "ChatRecovery": [
        {
            "source": {
                "s3": {
                    "bucket": "chat-backups",
                    "key": "mongodb/mongodb_20261126_031500.tar.gz",
                    "credentialsSecretRef": {"name": "s3"},
                }
            },
            "target": {"mongodb": {"uriSecretRef": {"name": "mongo"}, "database": "chat"}},
            "mode": "DropDatabase",
            "postRestore": {"healthChecks": [{"url": "http://chat-api.chat:8080/healthz"}]},
        }
    ],
}


def good_specs() -> list[tuple[str, dict[str, Any]]]:
    """(kind, spec in wire form with its defaults) of every example and of `MORE`."""
    raw = [
        (doc["kind"], doc["spec"])
        for path in sorted((ROOT / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]
    raw += [(kind, spec) for kind, specs in MORE.items() for spec in specs]
    return [(kind, SPECS[kind].model_validate(spec).wire()) for kind, spec in raw]


@dataclass(frozen=True)
class Bad:
    """A bad spec and the field a refusal must name."""

    kind: str
    spec: dict[str, Any]
    field: str
    what: str
    base: int = 0
    """Which good spec it was made from (an index into `good_specs()`)."""

    def __str__(self) -> str:
        return f"{self.kind} {self.field}: {self.what}"


def operator_only(bad: Bad) -> bool:
    """What the API server cannot know, so only the operator refuses: the IANA database,
    cron's calendar, query placeholders, and the port of a URL template (no URL parser
    reads `{{service}}` as a host)."""
    return (
        bad.what in ("an unknown time zone", "an unknown placeholder", "schedule '0 3 31 2 *'")
        or (bad.what.startswith("URL") and ":99999" in bad.what
            and ("healthCheck" in bad.field or bad.field.endswith(".web.url")))
    )


def field_path(path: Path_) -> str:
    out = "spec"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def names(problem_field: str, expected: str) -> bool:
    """Whether a refusal at `problem_field` names `expected` (it or a field inside it)."""
    a, b = (re.sub(r"\[([^\]]*)\]", r".\1", f) for f in (problem_field, expected))
    return a == b or a.startswith(b + ".")


MIB = "x" * (1 << 20)
BAD_DURATIONS = ("5", "5d", "-5s", "1h 30m", "1234567h", "1.5.5s", "", " 5m")
BAD_SCHEDULES = (
    "59-0 * * * *",
    "0 0 ? * ?",
    "*/0 * * * *",
    "0 0 * * FRI-MON",
    "60 * * * *",
    "0 24 * * *",
    "@often",
    "0 3 * *",
    "0 3 * * * *",
    "0 3 31 2 *",
)
BAD_URLS = ("http://", "http:// x", "ftp://x.example", "http://x.example:99999/", "x.example")
BAD_IMAGES = (
    "chat api:1.0 ",
    "chat-api:1.0 ",
    " chat-api:1.0",
    "Chat-API:1.0",
    "chat-api:",
    "registry.example.com//chat",
    "@sha256:0123",
    "chat-api:1.0@sha256:xyz",
    "chat-api:" + "1" * 129,
)


def _get(spec: Json, path: Path_) -> Json:
    for part in path:
        spec = spec[part]
    return spec


def _with(spec: dict[str, Any], path: Path_, change: Callable[[Json, Any], None]) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    parent = _get(out, path[:-1])
    change(parent, path[-1])
    return out


def _set(value: Json) -> Callable[[Json, Any], None]:
    def change(parent: Json, key: Any) -> None:
        parent[key] = value

    return change


def _delete(parent: Json, key: Any) -> None:
    del parent[key]


_WRONG_TYPE = {
    "string": 12345,
    "integer": "lots",
    "number": "lots",
    "boolean": "maybe",
    "array": "lots",
    "object": "lots",
}


def _walk(value: Json, node: dict[str, Any], path: Path_) -> Iterator[tuple[Path_, Json, Any]]:
    yield path, value, node
    if isinstance(value, dict):
        for key, sub in value.items():
            props = node.get("properties", {})
            if key in props:
                yield from _walk(sub, props[key], (*path, key))
            elif isinstance(node.get("additionalProperties"), dict):
                yield from _walk(sub, node["additionalProperties"], (*path, key))
    elif isinstance(value, list) and "items" in node:
        for i, sub in enumerate(value):
            yield from _walk(sub, node["items"], (*path, i))


def _values(path: Path_, value: Json, node: dict[str, Any]) -> Iterator[tuple[Json, str]]:
    """Bad values for the field at `path`, each with what is wrong with it."""
    if node.get("x-kubernetes-int-or-string"):
        yield ["x"], "a list for an int-or-string"
        yield 2**62, "2**62"
        yield "101%", "a percent over 100"
        return
    kind = node.get("type")
    yield _WRONG_TYPE[kind], f"a {type(_WRONG_TYPE[kind]).__name__} for a {kind}"
    if kind == "string":
        yield MIB, "1 MiB"
        if "maxLength" in node:
            yield "a" * (node["maxLength"] + 1), f"{node['maxLength'] + 1} characters"
        if "enum" in node:
            yield "Bogus", "an unknown enum value"
        if node.get("pattern") == DURATION_PATTERN:
            yield from ((d, f"duration {d!r}") for d in BAD_DURATIONS)
        if path[-1:] == ("schedule",):
            yield from ((s, f"schedule {s!r}") for s in BAD_SCHEDULES)
        if isinstance(value, str) and value.startswith("http"):
            yield from ((u, f"URL {u!r}") for u in BAD_URLS)
        if path[-1:] == ("image",):
            yield from ((i, f"image {i!r}") for i in BAD_IMAGES)
        if path[-1:] == ("timeZone",):
            yield "Mars/Olympus", "an unknown time zone"
        if path[-1:] == ("query",):
            yield "up{pod='{{pod}}'}", "an unknown placeholder"
        if path[-1:] == ("prefix",):
            yield "\U0001f4be" * 250 + "/", "a prefix over S3's key length in bytes"
    if kind == "integer":
        yield 2**62, "2**62"
        if "maximum" in node:
            yield node["maximum"] + 1, f"maximum {node['maximum']} + 1"
        if "minimum" in node:
            yield node["minimum"] - 1, f"minimum {node['minimum']} - 1"


ONE_OF: dict[str, dict[Path_, dict[str, Any]]] = {
    "ChatRelease": {
        ("strategy",): {"blueGreen": {}, "canary": {}, "rolling": {}},
        ("trafficRouting",): {
            "gatewayAPI": {"httpRoute": "chat"},
            "nginx": {"ingress": "chat"},
            "service": {},
        },
        ("analysis", "metrics", 1): {"query": "up", "web": _WEB},
        ("analysis", "metrics", 1, "web", "headers", 0): {
            "value": "Bearer x",
            "valueFrom": {"secretKeyRef": {"name": "slo", "key": "token"}},
        },
    },
    "ChatRecovery": {
        ("source",): {"backupRef": {"name": "nightly"}, "s3": {"bucket": "abc", "key": "a.tar.gz"}},
    },
}
"""Objects that hold exactly one of their fields, with a good value of each."""


def bad_specs(huge: bool = True) -> Iterator[Bad]:
    """Every mutation of every good spec; `huge=False` leaves out the 1 MiB strings."""
    for base, (kind, good) in enumerate(good_specs()):
        schema = crd.structural(SPECS[kind])
        for path, value, node in _walk(good, schema, ()):
            if path:
                for bad, what in _values(path, value, node):
                    if bad is MIB and not huge:
                        continue
                    yield Bad(kind, _with(good, path, _set(bad)), field_path(path), what, base)
            if isinstance(value, dict):
                for key in node.get("required", []):
                    if key in value:
                        spec = _with(good, (*path, key), _delete)
                        yield Bad(kind, spec, field_path((*path, key)), "missing", base)
        for path, options in ONE_OF.get(kind, {}).items():
            if isinstance(_get_or_none(good, path), dict):
                both = _with(good, path, _set({**options, **_get(good, path)}))
                yield Bad(kind, both, field_path(path), f"all of {', '.join(options)}", base)
                neither = _with(good, path, _set({}))
                yield Bad(kind, neither, field_path(path), f"none of {', '.join(options)}", base)
        yield from _rules(kind, good, base)


def _get_or_none(spec: Json, path: Path_) -> Json:
    try:
        return _get(spec, path)
    except (KeyError, IndexError, TypeError):
        return None


def _rules(kind: str, good: dict[str, Any], base: int) -> Iterator[Bad]:
    """Specs breaking a rule across fields: min over max, weights going down, a canary
    routed by Service, both counts of a rolling update zero, kmsKeyId without aws:kms."""
    if kind == "ChatRelease":
        metrics = (good.get("analysis") or {}).get("metrics") or []
        if metrics:
            spec = copy.deepcopy(good)
            spec["analysis"]["metrics"][0].update({"min": 2, "max": 1})
            yield Bad(kind, spec, "spec.analysis.metrics[0]", "min over max", base)
            spec = copy.deepcopy(good)
            spec["analysis"]["metrics"][0].pop("min", None)
            spec["analysis"]["metrics"][0].pop("max", None)
            yield Bad(kind, spec, "spec.analysis.metrics[0]", "neither min nor max", base)
        canary = good["strategy"].get("canary")
        if canary:
            spec = copy.deepcopy(good)
            spec["strategy"]["canary"]["steps"] = [{"setWeight": 50}, {"setWeight": 10}]
            yield Bad(kind, spec, "spec.strategy.canary.steps", "weights going down", base)
            spec = copy.deepcopy(good)
            spec["strategy"]["canary"]["steps"] = [{"setWeight": 10, "pause": {}}]
            yield Bad(kind, spec, "spec.strategy.canary.steps[0]", "a step of two kinds", base)
            spec = copy.deepcopy(good)
            spec["trafficRouting"] = {"service": {}}
            yield Bad(kind, spec, "spec", "a canary routed by Service", base)
            spec = copy.deepcopy(good)
            spec["strategy"]["canary"]["steps"] = [{"setWeight": 10, "headerRoute": {"match": []}}]
            yield Bad(kind, spec, "spec.strategy.canary.steps[0]", "weight and header route", base)
            spec = copy.deepcopy(good)
            dogfood = {"name": "X-Canary", "value": "dogfood"}
            spec["strategy"]["canary"]["steps"] = [
                {"headerRoute": {"match": [dogfood, {**dogfood, "name": "x-canary"}]}}
            ]
            yield Bad(kind, spec, "spec.strategy.canary.steps[0].headerRoute", "a header twice",
                      base)
            spec = copy.deepcopy(good)
            spec["strategy"]["canary"]["steps"] = [{"headerRoute": {"match": [dogfood]}}]
            spec["trafficRouting"] = {"nginx": {"ingress": "chat"}}
            yield Bad(kind, spec, "spec", "a header route on NGINX", base)
        rolling = good["strategy"].get("rolling")
        if rolling:
            spec = copy.deepcopy(good)
            spec["strategy"]["rolling"].update({"maxSurge": 0, "maxUnavailable": "0%"})
            yield Bad(kind, spec, "spec.strategy.rolling", "maxSurge and maxUnavailable 0", base)
    if kind == "ChatBackup" and good.get("verification"):
        spec = copy.deepcopy(good)
        spec["verification"]["scratch"] = {"database": good["mongodb"]["database"]}
        yield Bad(kind, spec, "spec", "a drill into the live database", base)
        spec = copy.deepcopy(good)
        del spec["mongodb"]["database"]
        spec["verification"]["scratch"].pop("uriSecretRef", None)
        yield Bad(kind, spec, "spec", "drills of every database beside them", base)
    if kind == "ChatBackup" and "kmsKeyId" in good["storage"]["s3"]:
        spec = copy.deepcopy(good)
        spec["storage"]["s3"]["serverSideEncryption"] = "AES256"
        yield Bad(kind, spec, "spec.storage.s3", "kmsKeyId without aws:kms", base)
