"""CustomResourceDefinitions generated from the pydantic models, so the API server and
the operator check the same shape.

pydantic writes JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema: no
`$ref`, no `anyOf` over types, a `type` on every node, defaults in wire form. `structural`
bridges the two; `definitions` assembles the three CRDs with their printer columns.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from chatops.api.backup import ChatBackupSpec, ChatBackupStatus
from chatops.api.common import GROUP, VERSION
from chatops.api.recovery import ChatRecoverySpec, ChatRecoveryStatus
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus

Schema = dict[str, Any]

# JSON Schema keywords Kubernetes' OpenAPI subset does not take, or that carry no meaning.
_DROPPED = {"title", "$defs", "examples", "const"}


@dataclass(frozen=True)
class Kind:
    """One custom resource kind and how kubectl shows it."""

    kind: str
    plural: str
    short_name: str
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: tuple[dict[str, Any], ...]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _column(name: str, path: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": path, **extra}


_AGE = _column("Age", ".metadata.creationTimestamp", "date")

KINDS: tuple[Kind, ...] = (
    Kind(
        kind="ChatRelease",
        plural="chatreleases",
        short_name="crel",
        spec=ChatReleaseSpec,
        status=ChatReleaseStatus,
        description="A blue-green, canary or rolling release of the chat app's components "
        "together, gated on Prometheus, rolled back automatically.",
        columns=(
            _column("Phase", ".status.phase"),
            _column("Step", ".status.currentStep", "integer"),
            _column("Weight", ".status.canaryWeight", "integer"),
            _column("Stable", ".status.stableVersion"),
            _column("Canary", ".status.canaryVersion"),
            _column("Message", ".status.message", priority=1),
            _AGE,
        ),
    ),
    Kind(
        kind="ChatBackup",
        plural="chatbackups",
        short_name="cbak",
        spec=ChatBackupSpec,
        status=ChatBackupStatus,
        description="Scheduled, verified MongoDB backups streamed to S3 in the mongodump "
        "layout, with retention.",
        columns=(
            _column("Schedule", ".spec.schedule"),
            _column("Suspend", ".spec.suspend", "boolean"),
            _column("Last Backup", ".status.lastBackup.id"),
            _column("Result", ".status.lastBackup.result"),
            _column("Last Success", ".status.lastSuccessfulTime", "date"),
            _column("Next", ".status.nextScheduleTime", priority=1),
            _AGE,
        ),
    ),
    Kind(
        kind="ChatRecovery",
        plural="chatrecoveries",
        short_name="crec",
        spec=ChatRecoverySpec,
        status=ChatRecoveryStatus,
        description="A one-shot restore of a backup that quiesces the app, restores, "
        "verifies and brings the app back.",
        columns=(
            _column("Phase", ".status.phase"),
            _column("Backup", ".status.backup.id"),
            _column("Mode", ".spec.mode"),
            _column("Message", ".status.message", priority=1),
            _AGE,
        ),
    ),
)


class _WireDefaults(GenerateJsonSchema):
    """JSON Schema whose defaults are in wire form (camelCase, no nulls), including the
    defaults of `default_factory` fields, which pydantic leaves out."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if "default_factory" not in schema or schema.get("default_factory_takes_data"):
            return super().default_schema(schema)
        out = self.generate_inner(schema["schema"])
        out["default"] = schema["default_factory"]()  # type: ignore[call-arg]
        return out

    def encode_default(self, dft: Any) -> Any:
        return _wire(dft)


def _wire(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    return value


def structural(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of `model`, as the API server accepts it."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WireDefaults)
    defs: dict[str, Schema] = raw.get("$defs", {})
    return _convert(raw, defs)


def _convert(node: Schema, defs: dict[str, Schema]) -> Schema:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs)
    node = dict(node)
    options = node.pop("anyOf", None)
    if options is not None:
        node = _merge_options(node, options, defs)
    if "const" in node:
        node["enum"] = [node["const"]]
    if "default" in node:
        node["default"] = _wire(node["default"])
        if node["default"] is None:
            del node["default"]
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "additionalProperties" and value is True:
            continue  # a model open to extra fields: x-kubernetes-preserve-unknown-fields says so
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _convert(value, defs)
        else:
            out[key] = copy.deepcopy(value)
    if out.get("x-kubernetes-preserve-unknown-fields") is False:
        del out["x-kubernetes-preserve-unknown-fields"]
    return out


def _merge_options(node: Schema, options: list[Schema], defs: dict[str, Schema]) -> Schema:
    """`X | None` becomes X (absence is how an API says "none"); `int | str` becomes
    int-or-string, the one union Kubernetes schemas know."""
    present = [o for o in options if o.get("type") != "null"]
    if len(present) == 1:
        return {**_convert(present[0], defs), **node}
    types = {o.get("type") for o in present}
    if types == {"integer", "string"}:
        node["x-kubernetes-int-or-string"] = True
        return node
    raise ValueError(f"no structural form for a union of {sorted(map(str, types))}")


def schema(kind: Kind) -> Schema:
    """The openAPIV3Schema of one kind: apiVersion/kind/metadata, spec and status."""
    spec = structural(kind.spec)
    status = structural(kind.status)
    return {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def definition(kind: Kind) -> Schema:
    """The CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": [kind.short_name],
                "categories": ["chatops"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.columns),
                    "schema": {"openAPIV3Schema": schema(kind)},
                }
            ],
        },
    }


def definitions() -> Iterator[tuple[str, Schema]]:
    """(file name, CRD) for every kind, in a stable order."""
    for kind in KINDS:
        yield f"{GROUP}_{kind.plural}.yaml", definition(kind)


def render(crd: Schema) -> str:
    """YAML as committed in crds/: block style, keys in the order built."""
    return "---\n" + yaml.safe_dump(crd, sort_keys=False, width=100, allow_unicode=True)
