"""The committed CRDs are what the models generate, and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from chatops.api import crd

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize(("name", "definition"), list(crd.definitions()))
def test_committed_crd_is_not_stale(name: str, definition: dict[str, Any]) -> None:
    committed = (CRDS / name).read_text()
    assert committed == crd.render(definition), (
        f"crds/{name} is stale: run `make crds` and commit the result"
    )


def nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        out += nodes(sub, f"{path}.{name}")
    if "items" in schema:
        out += nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += nodes(schema["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("kind", crd.KINDS, ids=lambda k: k.kind)
def test_every_field_is_typed_and_described(kind: crd.Kind) -> None:
    schema = crd.schema(kind)
    for section in ("spec", "status"):
        for path, node in nodes(schema["properties"][section], section):
            assert "$ref" not in node and "anyOf" not in node, path
            assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
            if not path.endswith("{}") and not path.endswith("[]"):
                assert node.get("description"), f"{kind.kind} {path} has no description"


def test_kubectl_sees_short_names_categories_and_columns() -> None:
    by_kind = {k.kind: crd.definition(k) for k in crd.KINDS}
    assert {k: d["spec"]["names"]["shortNames"] for k, d in by_kind.items()} == {
        "ChatRelease": ["crel"],
        "ChatBackup": ["cbak"],
        "ChatRecovery": ["crec"],
    }
    for definition in by_kind.values():
        assert definition["spec"]["names"]["categories"] == ["chatops"]
        assert definition["spec"]["versions"][0]["subresources"] == {"status": {}}
    release_columns = [
        c["name"] for c in by_kind["ChatRelease"]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert release_columns == ["Phase", "Step", "Weight", "Stable", "Canary", "Message", "Age"]


def test_render_round_trips_through_yaml() -> None:
    for _, definition in crd.definitions():
        assert yaml.safe_load(crd.render(definition)) == definition
