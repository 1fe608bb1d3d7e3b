"""Bad input meets the real API server (issue 8: cases 18 and 20, and the bad-input fuzz).

A bad spec is refused by the API server with a cause naming its field, or — for what
only the operator can check — accepted there and refused by the operator with
`Accepted=False` naming the field. Never accepted by both, never a crash.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support import GROUP, VERSION, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # the generator
from badspecs import Bad, bad_specs, good_specs, names, operator_only

pytestmark = pytest.mark.e2e

PLURALS = {
    "ChatRelease": "chatreleases",
    "ChatBackup": "chatbackups",
    "ChatRecovery": "chatrecoveries",
}


def _create(
    custom: client.CustomObjectsApi, namespace: str, kind: str, name: str, spec: Any, dry: bool
) -> list[str] | None:
    """None when the API server accepted the object; else the fields its refusal names."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[kind], body, dry_run="All" if dry else None
        )
    except client.ApiException as err:
        assert err.status == 422, (err.status, err.body[:500])
        status = json.loads(err.body)
        causes = (status.get("details") or {}).get("causes") or []
        return [c.get("field", "") for c in causes] or [status.get("message", "")]
    return None


RELEASE: dict[str, Any] = {
    "components": [
        {
            "name": "api",
            "template": {"spec": {"containers": [{"name": "api", "image": "chat-api:1.0"}]}},
            "service": {"port": 8080},
            "healthCheck": {"url": "http://{{service}}.{{namespace}}:8080/ready"},
        }
    ],
    "strategy": {"blueGreen": {}},
    "analysis": {
        "prometheus": {"address": "http://prometheus:9090"},
        "metrics": [{"name": "errors", "query": "up", "max": 1}],
    },
}
BACKUP: dict[str, Any] = {
    "mongodb": {"uriSecretRef": {"name": "mongo"}},
    "storage": {
        "s3": {
            "bucket": "chat-backups",
            "endpoint": "http://s3.example:9000",
            "serverSideEncryption": "aws:kms",
            "kmsKeyId": "alias/chat",
        }
    },
}
MIB = "x" * (1 << 20)


def _with(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(spec))
    target = out
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    for part in parents:
        target = target[part]
    target[last] = value
    return out


def _refused_naming_the_field(
    custom: client.CustomObjectsApi, namespace: str, kind: str, path: str, value: Any
) -> None:
    """`value` at `path` (dotted, list indexes as numbers) of a good spec is refused by
    the API server with a cause naming that field."""
    spec = _with(RELEASE if kind == "ChatRelease" else BACKUP, path, value)
    field = "spec." + re.sub(r"\.([0-9]+)", r"[\1]", path)
    refused = _create(custom, namespace, kind, "bad", spec, dry=False)
    assert refused is not None, f"{field}: {str(value)[:40]!r} accepted"
    assert any(names(f, field) for f in refused), refused


IMAGE = "components.0.template.spec.containers.0.image"


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ChatRelease", IMAGE, MIB),
        ("ChatRelease", "analysis.metrics.0.query", MIB),
        ("ChatRelease", "analysis.prometheus.address", "http://" + MIB),
        ("ChatRelease", "components.0.healthCheck.url", "http://" + MIB),
        ("ChatRelease", "progressDeadlineSeconds", 2**62),
        ("ChatRelease", "strategy.blueGreen.scaleDownDelaySeconds", 2**62),
        ("ChatRelease", "analysis.interval", "999999h"),
        ("ChatBackup", "storage.s3.region", MIB),
        ("ChatBackup", "storage.s3.prefix", MIB + "/"),
        ("ChatBackup", "storage.s3.kmsKeyId", MIB),
        ("ChatBackup", "storage.s3.endpoint", "http://" + MIB),
        ("ChatBackup", "timeoutSeconds", 2**62),
    ],
    # A long value is named by its length: pytest would take the 1 MiB string itself as
    # the test's id, which lands in PYTEST_CURRENT_TEST, and every process the test then
    # starts (kubectl) fails with E2BIG.
    ids=lambda v: v if not isinstance(v, str) or len(v) < 80 else f"{len(v)}-characters",
)
def test_case_18_huge_strings_and_numbers_are_refused_by_the_api_server(
    crds: None, namespace: str, custom: client.CustomObjectsApi, kind: str, path: str, value: Any
) -> None:
    """Case 18: 1 MiB strings and 2**62 are refused by the API server, naming the field
    (before, they were stored, broke kopf's annotation and overflowed the daemon)."""
    _refused_naming_the_field(custom, namespace, kind, path, value)


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ChatRelease", IMAGE, "chat api:1.0 "),
        ("ChatRelease", IMAGE, "Chat-API:1.0"),
        ("ChatBackup", "schedule", "59-0 * * * *"),
        ("ChatBackup", "schedule", "0 0 ? * ?"),
        ("ChatBackup", "schedule", "*/0 * * * *"),
        ("ChatBackup", "schedule", "0 0 * * FRI-MON"),
    ],
)
def test_case_20_unpullable_images_and_misread_schedules_are_refused(
    crds: None, namespace: str, custom: client.CustomObjectsApi, kind: str, path: str, value: Any
) -> None:
    """Case 20: an image with spaces or capitals, a reversed range, `?` for both days and
    a step of 0 are refused by the API server, naming the field."""
    _refused_naming_the_field(custom, namespace, kind, path, value)


def test_case_20_what_a_schedule_means_is_accepted(
    crds: None, namespace: str, custom: client.CustomObjectsApi
) -> None:
    for i, schedule in enumerate(("0 0 ? * MON", "0 0 1 * ?", "*/15 9-17 * * MON-FRI")):
        assert (
            _create(
                custom,
                namespace,
                "ChatBackup",
                f"ok-{i}",
                {**BACKUP, "schedule": schedule},
                dry=True,
            )
            is None
        )


def test_bad_input_fuzz_every_bad_spec_is_refused_naming_its_field(
    operator: Path, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """The fuzz: the good specs are accepted; every generated bad spec is refused by the
    API server naming its field, except what only the operator can know, which the API
    server accepts and the operator refuses with Accepted=False naming the field."""
    for i, (kind, spec) in enumerate(good_specs()):
        assert _create(custom, namespace, kind, f"good-{i}", spec, dry=True) is None, kind
    every = list(bad_specs())
    unnamed: list[str] = []
    accepted: list[tuple[str, Bad]] = []
    for i, bad in enumerate(every):
        refused = _create(custom, namespace, bad.kind, f"bad-{i}", bad.spec, dry=True)
        if refused is None:
            accepted.append((f"bad-{i}", bad))
        elif not any(names(f, bad.field) for f in refused):
            unnamed.append(f"{bad}: refused naming {refused}")
    assert unnamed == []
    assert [str(bad) for _, bad in accepted if not operator_only(bad)] == []
    for name, bad in accepted:  # created for real: the operator must say what is wrong
        assert _create(custom, namespace, bad.kind, name, bad.spec, dry=False) is None
    for name, bad in accepted:
        condition = wait_for(
            lambda bad=bad, name=name: _refusal(custom, namespace, bad.kind, name),
            timeout=90,
            what=f"Accepted=False on {bad}",
        )
        assert bad.field in condition["message"], (str(bad), condition["message"])
    print(
        f"\n{len(every)} bad specs: {len(every) - len(accepted)} refused by the API server, "
        f"{len(accepted)} by the operator"
    )


def _refusal(custom: client.CustomObjectsApi, namespace: str, kind: str, name: str) -> Any:
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name)
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Accepted" and c["status"] == "False"), None)
