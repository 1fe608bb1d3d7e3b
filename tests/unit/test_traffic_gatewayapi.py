"""HTTPRoute weights: what chatops writes into the user's route, and what it reads back."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chatops.errors import TrafficRoutingError
from chatops.traffic.gatewayapi import observed_weights, weight_patch
from chatops.traffic.router import Split

API = Split("api", "chat-api-blue", "chat-api-green", 25)
FRONTEND = Split("frontend", "chat-frontend-blue", "chat-frontend-green", 25)


def ref(name: str, weight: int | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "port": 8080, **extra}
    if weight is not None:
        out["weight"] = weight
    return out


def route(*rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "chat", "namespace": "prod"},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "hostnames": ["chat.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": f"/r{i}"}}], "backendRefs": r}
                for i, r in enumerate(rules)
            ],
        },
    }


def apply(obj: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """The object as the API server leaves it after a JSON patch of test, add and remove
    operations (`-` appends to a list)."""
    out = copy.deepcopy(obj)
    for op in patch:
        *parents, last = op["path"].lstrip("/").split("/")
        target: Any = out
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        key: Any = int(last) if isinstance(target, list) and last != "-" else last
        if op["op"] == "test":
            assert target[key] == op["value"], f"test failed at {op['path']}"
        elif op["op"] == "remove":
            del target[key]
        elif key == "-":
            target.append(op["value"])
        else:
            assert op["op"] == "add"
            target[key] = op["value"]
    return out


def weights_of(obj: dict[str, Any]) -> list[list[tuple[str, int | None]]]:
    return [
        [(r["name"], r.get("weight")) for r in rule["backendRefs"]] for rule in obj["spec"]["rules"]
    ]


@pytest.mark.parametrize(
    ("rules", "splits", "expected"),
    [
        pytest.param(
            [[ref("chat-api-blue", 100), ref("chat-api-green", 0)]],
            [API],
            [[("chat-api-blue", 75), ("chat-api-green", 25)]],
            id="one rule, stable gets 100-w, canary w",
        ),
        pytest.param(
            [[ref("chat-api-blue"), ref("chat-api-green")]],
            [Split("api", "chat-api-blue", "chat-api-green", 0)],
            [[("chat-api-blue", 100), ("chat-api-green", 0)]],
            id="refs without weight get one",
        ),
        pytest.param(
            [[ref("chat-api-green", 100), ref("chat-api-blue", 0)]],
            [Split("api", "chat-api-green", "chat-api-blue", 10)],
            [[("chat-api-green", 90), ("chat-api-blue", 10)]],
            id="the second release goes back to blue",
        ),
        pytest.param(
            [
                [ref("chat-api-blue", 100), ref("chat-api-green", 0)],
                [ref("chat-frontend-blue", 100), ref("chat-frontend-green", 0)],
            ],
            [API, FRONTEND],
            [
                [("chat-api-blue", 75), ("chat-api-green", 25)],
                [("chat-frontend-blue", 75), ("chat-frontend-green", 25)],
            ],
            id="two components in two rules move together",
        ),
        pytest.param(
            [
                [ref("chat-api-blue", 100), ref("chat-api-green", 0)],
                [ref("chat-api-blue", 100), ref("chat-api-green", 0), ref("legacy", 5)],
            ],
            [Split("api", "chat-api-blue", "chat-api-green", 100)],
            [
                [("chat-api-blue", 0), ("chat-api-green", 100)],
                [("chat-api-blue", 0), ("chat-api-green", 100), ("legacy", 5)],
            ],
            id="every rule routing the component, other backends untouched",
        ),
        pytest.param(
            [
                [ref("chat-api-blue", 100), ref("chat-api-green", 0, namespace="other")],
                [ref("chat-api-blue", 100), ref("chat-api-green", 0)],
            ],
            [API],
            None,
            id="a backendRef to another namespace's Service is not ours",
        ),
    ],
)
def test_weights_are_written_into_the_users_route(
    rules: list[list[dict[str, Any]]],
    splits: list[Split],
    expected: list[list[tuple[str, int | None]]] | None,
) -> None:
    before = route(*rules)
    if expected is None:
        with pytest.raises(TrafficRoutingError, match="rule 0 routes component api"):
            weight_patch(before, splits)
        return
    after = apply(before, weight_patch(before, splits))
    assert weights_of(after) == expected
    # Everything but the weights is the user's and stays as it was.
    for rule_before, rule_after in zip(
        before["spec"]["rules"], after["spec"]["rules"], strict=True
    ):
        assert rule_after["matches"] == rule_before["matches"]
    assert {k: v for k, v in after["spec"].items() if k != "rules"} == {
        k: v for k, v in before["spec"].items() if k != "rules"
    }
    assert observed_weights(after, splits) == {s.component: s.wanted() for s in splits}


def test_a_route_already_at_the_weights_needs_no_write() -> None:
    done = route([ref("chat-api-blue", 75), ref("chat-api-green", 25)])
    assert weight_patch(done, [API]) == []


def test_each_weight_write_is_guarded_by_the_backend_name() -> None:
    """If the rules were reordered after our read, the patch must fail, not misroute."""
    before = route([ref("chat-api-blue", 100), ref("chat-api-green", 0)])
    patch = weight_patch(before, [API])
    reordered = route([ref("chat-api-green", 0), ref("chat-api-blue", 100)])
    with pytest.raises(AssertionError, match="test failed"):
        apply(reordered, patch)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        pytest.param(
            [[ref("chat-frontend-blue"), ref("chat-frontend-green")]],
            "no rule has backendRefs to chat-api-blue and chat-api-green",
            id="component absent",
        ),
        pytest.param(
            [[ref("chat-api-blue", 100)]],
            "rule 0 routes component api to chat-api-blue but has no backendRef to chat-api-green",
            id="only the stable color",
        ),
        pytest.param(
            [[ref("chat-api-blue"), ref("chat-api-green")], [ref("chat-api-green")]],
            "rule 1 routes component api to chat-api-green but has no backendRef to chat-api-blue",
            id="one rule of two is one-sided",
        ),
        pytest.param(
            [[ref("chat-api-blue"), ref("chat-api-green", kind="ServiceImport", group="x.io")]],
            "rule 0 routes component api to chat-api-blue but has no backendRef to chat-api-green",
            id="a ServiceImport of the same name is not the color Service",
        ),
    ],
)
def test_a_route_missing_the_color_backend_refs_is_refused_naming_them(
    rules: list[list[dict[str, Any]]], message: str
) -> None:
    with pytest.raises(TrafficRoutingError) as raised:
        weight_patch(route(*rules), [API])
    assert str(raised.value).startswith("HTTPRoute prod/chat: ")
    assert message in str(raised.value)
    with pytest.raises(TrafficRoutingError):
        observed_weights(route(*rules), [API])


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param(
            [[ref("chat-api-blue"), ref("chat-api-green")]],
            {"chat-api-blue": 50, "chat-api-green": 50},
            id="unweighted refs share evenly",
        ),
        pytest.param(
            [[ref("chat-api-blue", 0), ref("chat-api-green", 0)]],
            {"chat-api-blue": 0, "chat-api-green": 0},
            id="all zero sends nothing anywhere",
        ),
        pytest.param(
            [[ref("chat-api-blue", 3), ref("chat-api-green", 1)]],
            {"chat-api-blue": 75, "chat-api-green": 25},
            id="weights are shown as percent",
        ),
        pytest.param(
            [
                [ref("chat-api-blue", 100), ref("chat-api-green", 0)],
                [ref("chat-api-blue", 90), ref("chat-api-green", 10)],
            ],
            {"chat-api-blue": 100, "chat-api-green": 10},
            id="rules disagree: each color gets the most any rule sends it",
        ),
    ],
)
def test_observed_weights_are_percent_of_new_connections(
    rules: list[list[dict[str, Any]]], expected: dict[str, int]
) -> None:
    assert observed_weights(route(*rules), [API]) == {"api": expected}
