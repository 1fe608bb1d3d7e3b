"""Every field of a spec is bounded, and the bounds mean what they say (issue 8, cases
18 and 20): the largest spec fits in an object's annotations, no number overflows, an
image is one the kubelet can pull, and kopf's bookkeeping stays small whatever the spec.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import kopf
import pytest

from chatops.api import bounds, crd, cron, validation
from chatops.api.backup import ChatBackupSpec
from chatops.errors import InvalidSpec
from chatops.handlers.settings import DigestDiffBaseStorage
from test_crds import nodes


def _unbounded(node: dict[str, Any]) -> str | None:
    if node.get("x-kubernetes-int-or-string"):
        return None if node.get("x-kubernetes-validations") else "int-or-string without a rule"
    kind = node.get("type")
    if kind == "string" and "maxLength" not in node and "enum" not in node:
        return "string without maxLength"
    if kind == "integer" and "maximum" not in node:
        return "integer without maximum"
    if kind == "array" and "maxItems" not in node:
        return "array without maxItems"
    if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
        return "map without maxProperties"
    return None


@pytest.mark.parametrize("kind", crd.KINDS, ids=lambda k: k.kind)
def test_every_spec_field_is_bounded_at_the_api_server(kind: crd.Kind) -> None:
    spec = crd.schema(kind)["properties"]["spec"]
    found = [(path, _unbounded(node)) for path, node in nodes(spec, "spec")]
    assert [(path, why) for path, why in found if why] == []


def _largest(node: dict[str, Any], path: str) -> Any:
    """The largest value the schema admits at `node`: every string at its maxLength,
    every list at its maxItems, every field set but where a rule admits exactly one of
    several (the largest is kept). Pod templates are left out: they are
    Kubernetes' own PodTemplateSpec, as large as a Deployment's may be (their images,
    labels and annotations are bounded all the same)."""
    if node.get("x-kubernetes-int-or-string"):
        return "100%"
    kind = node.get("type")
    if kind == "string":
        return "x" * node.get("maxLength", max(len(e) for e in node.get("enum", [""])))
    if kind == "integer":
        return node["maximum"]
    if kind == "number":
        return -1.7976931348623157e308
    if kind == "boolean":
        return False
    if kind == "array":
        return [_largest(node["items"], f"{path}[]")] * node["maxItems"]
    if path.endswith(".template"):
        return {}
    found = {k: _largest(v, f"{path}.{k}") for k, v in node.get("properties", {}).items()}
    for group in _exclusive(node):  # of "exactly one of", only the largest is admitted
        kept = max(group, key=lambda k: len(json.dumps(found.get(k))))
        found = {k: v for k, v in found.items() if k == kept or k not in group}
    return found


_ONE_OF = (
    re.compile(r"^has\(self\.(\w+)\) != has\(self\.(\w+)\)$"),
    re.compile(r"^\[has\(self\.(\w+)\)(?:, has\(self\.(\w+)\))*\]\.filter\(x, x\)\.size\(\) == 1$"),
)


def _exclusive(node: dict[str, Any]) -> list[set[str]]:
    """The groups of fields of which a CEL rule admits exactly one."""
    groups = []
    for rule in node.get("x-kubernetes-validations", []):
        if any(pattern.match(rule["rule"]) for pattern in _ONE_OF):
            groups.append(set(re.findall(r"has\(self\.(\w+)\)", rule["rule"])))
    return groups


@pytest.mark.parametrize("kind", crd.KINDS, ids=lambda k: k.kind)
def test_the_largest_spec_fits_well_under_the_annotation_limit(kind: crd.Kind) -> None:
    """`kubectl apply` copies the whole object into an annotation, and all annotations
    share 256 KiB: chatops' own fields at their largest leave room for pod templates."""
    largest = _largest(crd.schema(kind)["properties"]["spec"], "spec")
    assert len(json.dumps(largest, separators=(",", ":"))) < 100 * 1024


@pytest.mark.parametrize("kind", crd.KINDS, ids=lambda k: k.kind)
def test_no_integer_overflows_a_day_of_seconds_or_an_int32(kind: crd.Kind) -> None:
    spec = crd.schema(kind)["properties"]["spec"]
    for path, node in nodes(spec, "spec"):
        if node.get("type") == "integer":
            assert node["maximum"] < 2**31, path
            if path.endswith("Seconds"):
                assert node["maximum"] <= bounds.DAY_SECONDS, path
                now = datetime.datetime.now(datetime.UTC)
                assert now + datetime.timedelta(seconds=node["maximum"]) > now


def test_the_diffbase_kopf_stores_is_a_digest_whatever_the_spec() -> None:
    storage = DigestDiffBaseStorage(prefix="chatops.dev", key="last-handled-configuration")

    def body(image: str) -> kopf.Body:
        return kopf.Body(
            {
                "apiVersion": "chatops.dev/v1alpha1",
                "kind": "ChatRelease",
                "metadata": {"name": "chat", "namespace": "chat"},
                "spec": {"components": [{"name": "api", "image": image}]},
            }
        )

    huge, other = storage.build(body=body("x" * 2**20)), storage.build(body=body("chat:1"))
    patch = kopf.Patch()
    storage.store(body=body("x" * 2**20), patch=patch, essence=huge)
    assert max(len(v) for v in patch["metadata"]["annotations"].values()) < 100
    assert huge != other and storage.build(body=body("chat:1")) == other


@pytest.mark.parametrize(
    "image",
    [
        "chat-api:1.0",
        "registry.example.com/chat-api:1.4.0",
        "localhost:5000/team/chat_api:v1.0-rc.1",
        "ghcr.io/chat/api@sha256:" + "a" * 64,
        "chat-api:1.0@sha256:" + "0" * 64,
        "Registry.Example.COM/chat",
        "a" * 255,
    ],
)
def test_image_references_the_kubelet_pulls_are_accepted(image: str) -> None:
    assert re.fullmatch(bounds.IMAGE_PATTERN, image)


@pytest.mark.parametrize(
    "image",
    [
        "chat api:1.0 ",
        "chat-api:1.0 ",
        " chat-api",
        "Chat-API:1.0",
        "chat-api:",
        "chat-api::1",
        "registry.example.com//chat",
        "-chat",
        "chat-api:1.0@sha256:short",
        "chat-api:" + "1" * 129,
        "chat\tapi",
    ],
)
def test_image_references_it_could_not_pull_are_refused(image: str) -> None:
    assert not re.fullmatch(bounds.IMAGE_PATTERN, image)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("analysis.interval", "2h", "spec.analysis.interval: must be at most 1h"),
        ("analysis.interval", "1234567s", "spec.analysis.interval: String should match"),
        ("progressDeadlineSeconds", 2**62, "spec.progressDeadlineSeconds: Input should be less"),
        ("analysis.prometheus.address", "http://p:99999", "spec.analysis.prometheus.address: "),
        ("analysis.prometheus.address", "http://", "spec.analysis.prometheus.address: String"),
    ],
)
def test_out_of_bounds_values_are_named(field: str, value: Any, problem: str) -> None:
    spec: dict[str, Any] = {
        "components": [
            {
                "name": "api",
                "template": {"spec": {"containers": [{"name": "api", "image": "chat:1"}]}},
                "service": {"port": 8080},
            }
        ],
        "strategy": {"blueGreen": {}},
        "analysis": {"prometheus": {}},
    }
    *parents, last = field.split(".")
    target = spec
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    [found] = validation.problems("ChatRelease", spec)
    assert found.startswith(problem)


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 3 * * *", None),
        ("0 0 ? * MON", None),
        ("0 0 1 * ?", None),
        ("0 22 * * 1-5", None),
        ("*/15 9-17 * * MON-FRI", None),
        ("59-0 * * * *", cron.RANGE_MESSAGE),
        ("0 0 * * FRI-MON", cron.RANGE_MESSAGE),
        ("0 0 * DEC-JAN *", cron.RANGE_MESSAGE),
        ("0 0 ? * ?", cron.QUESTION_MESSAGE),
        ("0 ? * * *", cron.SHAPE_MESSAGE),
        ("0 0 1? * *", cron.SHAPE_MESSAGE),
        ("*/0 * * * *", cron.SHAPE_MESSAGE),
        ("0 0 1-31/0 * *", cron.SHAPE_MESSAGE),
    ],
)
def test_cron_schedules_a_user_would_misread_are_refused(
    schedule: str, problem: str | None
) -> None:
    assert cron.problem(schedule) == problem


def test_an_object_stored_under_looser_bounds_is_read_as_invalid_naming_its_field() -> None:
    """A ChatBackup stored before its CRD had bounds (read when deleting it, or as the
    source of a restore) gives InvalidSpec naming the field, not a crash."""
    backup = {
        "mongodb": {"uriSecretRef": {"name": "mongo"}},
        "storage": {"s3": {"bucket": "chat-backups", "region": "x" * 100_000}},
    }
    with pytest.raises(InvalidSpec) as refused:
        validation.parsed(ChatBackupSpec, "ChatBackup", backup, "ChatBackup chat/nightly")
    assert refused.value.field == "spec.storage.s3.region"
    assert "x" * 100 not in str(refused.value)
    backup["storage"]["s3"]["region"] = "eu-west-1"  # type: ignore[index]
    good = validation.parsed(ChatBackupSpec, "ChatBackup", backup, "ChatBackup chat/nightly")
    assert good.storage.s3.region == "eu-west-1"


def test_no_handler_reads_the_diff_that_the_digest_replaces() -> None:
    """kopf keeps a digest of the spec, not a copy: a handler reading a diff (on.update,
    on.field) would see only the digest change. Today's change handlers are all on.delete."""
    import chatops.handlers.backup
    import chatops.handlers.recovery
    import chatops.handlers.release  # noqa: F401 - registering is importing

    handlers = kopf.get_default_registry()._changing.get_all_handlers()
    assert handlers
    assert {(h.reason, h.field) for h in handlers} == {(kopf.Reason.DELETE, None)}
