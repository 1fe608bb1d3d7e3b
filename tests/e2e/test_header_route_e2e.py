"""Header-based canaries on the real data plane: requests through Traefik (the env's
Gateway) carrying the dogfood header (or cookie) reach the new version before any weight
moves, and the others never do; once the release ends — promoted, rolled back or
deleted — the rule is gone from the HTTPRoute and from what Traefik applies, and no
request with the header reaches the version that left."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import dataplane as dp
import loadgen
import releases as rel
from chatops import annotations
from support import kubectl, wait_for

pytestmark = pytest.mark.e2e

RATE = 60  # requests a second of each load
SAMPLE = 400  # requests of each load counted at a step
DOGFOOD = {"X-Canary": "dogfood"}
COOKIE = {"Cookie": "theme=dark; canary=always; lang=en"}
HEADER_STEP = {"headerRoute": {"match": [{"name": "X-Canary", "value": "dogfood"}]}}
COOKIE_STEP = {
    "headerRoute": {
        "match": [
            {"name": "Cookie", "type": "RegularExpression", "value": "(^|;\\s*)canary=always(;|$)"}
        ]
    }
}


def _load(namespace: str, headers: dict[str, str] | None = None) -> loadgen.Load:
    return loadgen.Load(
        os.environ["GATEWAY_URL"], host=dp.host(namespace), rate=RATE, headers=headers
    )


def _strategy(*steps: dict[str, Any]) -> dict[str, Any]:
    # 5 s: the drained color's pods outlive Traefik's throttled reload of the route
    return {"canary": {"steps": list(steps), "scaleDownDelaySeconds": 5,
                       "abortScaleDownDelaySeconds": 5}}


def _first_release(
    api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str,
    strategy: dict[str, Any],
) -> None:
    dp.color_route(api, namespace)
    spec = dp.release_spec("1.0", strategy, {"gatewayAPI": {"httpRoute": dp.RELEASE}})
    rel.create(custom, namespace, dp.RELEASE, spec)
    rel.wait_phase(custom, namespace, dp.RELEASE, "Succeeded", timeout=120)
    wait_for(lambda: dp.serving(namespace), timeout=60, what="the Gateway serving blue")


def _route_rules(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", dp.RELEASE
    )
    rules: list[dict[str, Any]] = route["spec"]["rules"]
    return rules


def _traefik_header_routers(namespace: str, header: str) -> list[str]:
    """The rules of the routers Traefik applies now for the namespace's route that match
    on `header`."""
    url = f"{os.environ['TRAEFIK_API_URL']}/api/http/routers?search={namespace}&per_page=1000"
    with urllib.request.urlopen(url, timeout=5) as reply:
        routers: list[dict[str, Any]] = json.loads(reply.read())
    return [r.get("rule", "") for r in routers if header in r.get("rule", "")]


def _traefik_split(namespace: str) -> dict[str, int] | None:
    """Color → weight of the weighted service over both colors that Traefik applies now
    (the header rule's service, to green alone, is another one)."""
    for service in dp.traefik_services(namespace):
        weights = {}
        for child in (service.get("weighted") or {}).get("services") or []:
            for color in ("blue", "green"):
                if f"-svc-{namespace}-{dp.RELEASE}-{dp.COMPONENT}-{color}-" in child["name"]:
                    weights[color] = int(child.get("weight", 1))
        if len(weights) == 2:
            return weights
    return None


def _color(namespace: str, headers: dict[str, str]) -> str | None:
    """Who answers one request through the Gateway with `headers`."""
    request = urllib.request.Request(
        f"{os.environ['GATEWAY_URL']}/api/messages",
        headers={**headers, "Host": dp.host(namespace)},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.headers.get(loadgen.COLOR_HEADER)
    except (urllib.error.URLError, OSError):
        return None


def _sample(load: loadgen.Load, since: float) -> list[loadgen.Request]:
    """SAMPLE answered requests of `load` sent after `since`."""
    got: list[loadgen.Request] = wait_for(
        lambda: len(s := [r for r in loadgen.between(load.requests(), since) if r.status])
        >= SAMPLE and s,
        timeout=SAMPLE / RATE * 4 + 30,
        interval=0.5,
        what=f"{SAMPLE} requests",
    )
    return got[:SAMPLE]


def _status(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    return rel.status(custom, namespace, dp.RELEASE)


def _on_header_step(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: (s := _status(custom, namespace)).get("headerRoute")
        and s.get("currentStep") == 1 and s,
        timeout=120,
        what="the header route recorded",
    )
    return found


def _promote_step(custom: client.CustomObjectsApi, namespace: str) -> None:
    import datetime

    value = annotations.request("step", datetime.datetime.now(datetime.UTC))
    rel.annotate(custom, namespace, dp.RELEASE, annotations.PROMOTE, value)


def test_dogfood_requests_reach_the_canary_first_then_the_weights_walk_and_the_rule_goes(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    strategy = _strategy(HEADER_STEP, {"pause": {}}, {"setWeight": 50}, {"pause": {}})
    _first_release(api, custom, namespace, strategy)
    user_rule = _route_rules(api, namespace)[0]
    with _load(namespace, DOGFOOD) as dogfood, _load(namespace) as others:
        dp.set_version(custom, namespace, "1.1")
        status = _on_header_step(custom, namespace)
        assert status["canaryWeight"] == 0 and status["phase"] == "Paused", status
        rules = _route_rules(api, namespace)
        assert [r.get("name") for r in rules] == [None, "chatops-header.chat.api.0"]
        assert [(b["name"], b["weight"]) for b in rules[1]["backendRefs"]] == [
            ("chat-api-green", 1)
        ]
        assert [b["weight"] for b in rules[0]["backendRefs"]] == [100, 0]  # weights as they were
        wait_for(lambda: _color(namespace, DOGFOOD) == "green", timeout=60, interval=0.2,
                 what="Traefik sending the dogfood header to green")
        since = time.time()
        dogfood_at_0, others_at_0 = _sample(dogfood, since), _sample(others, since)

        _promote_step(custom, namespace)
        wait_for(lambda: _status(custom, namespace).get("canaryWeight") == 50, timeout=120,
                 what="the canary at 50 %")
        wait_for(lambda: _traefik_split(namespace) == {"blue": 50, "green": 50}, timeout=60,
                 interval=0.2, what="Traefik applying 50 %")
        since = time.time()
        dogfood_at_50, others_at_50 = _sample(dogfood, since), _sample(others, since)

        _promote_step(custom, namespace)
        done = rel.wait_phase(custom, namespace, dp.RELEASE, "Succeeded", timeout=120)
        assert done["activeColor"] == "green" and "headerRoute" not in done
        assert _route_rules(api, namespace) == [
            {**user_rule, "backendRefs": [{**user_rule["backendRefs"][0], "weight": 0},
                                          {**user_rule["backendRefs"][1], "weight": 100}]}
        ]
        wait_for(lambda: not _traefik_header_routers(namespace, "X-Canary"), timeout=60,
                 what="Traefik without the header rule")
        wait_for(lambda: rel.replicas(api, namespace, "blue") == {"api": 0}, timeout=60,
                 what="the old color scaled down")
        since = time.time()
        dogfood_after = _sample(dogfood, since)
    print(
        f"header route at 0 %: dogfood {dict(loadgen.served(dogfood_at_0))}, others "
        f"{dict(loadgen.served(others_at_0))}; at 50 %: dogfood "
        f"{dict(loadgen.served(dogfood_at_50))}, others {dict(loadgen.served(others_at_50))}"
    )
    assert set(loadgen.served(dogfood_at_0)) == {"green"}
    assert set(loadgen.served(others_at_0)) == {"blue"}
    assert set(loadgen.served(dogfood_at_50)) == {"green"}
    assert set(loadgen.served(others_at_50)) == {"blue", "green"}
    assert set(loadgen.served(dogfood_after)) == {"green"}  # the new stable, no rule
    assert loadgen.failed(dogfood.requests()) == [] and loadgen.failed(others.requests()) == []


def test_a_bad_canary_reached_by_its_cookie_rolls_back_and_no_cookie_request_reaches_it(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Gateway API has no cookie match: the cookie is a regular expression on `Cookie`,
    which Traefik matches as RE2. Only the cookie's users reach the bad canary, whose
    errors the analysis sees; the rollback takes the rule away."""
    _first_release(api, custom, namespace, _strategy(COOKIE_STEP, {"pause": {"duration": "5m"}}))
    dp.behave(namespace, "chat-api:1.1", errorRate=0.3)
    with _load(namespace, COOKIE) as cookie, _load(namespace) as others:
        dp.set_version(custom, namespace, "1.1")
        done = rel.wait_phase(custom, namespace, dp.RELEASE, "RolledBack", timeout=180)
        assert "error-rate" in done["message"] and "headerRoute" not in done
        assert [r.get("name") for r in _route_rules(api, namespace)] == [None]
        wait_for(lambda: not _traefik_header_routers(namespace, "Cookie"), timeout=60,
                 what="Traefik without the cookie rule")
        settled = time.time()
        after = _sample(cookie, settled)
    served = loadgen.served(cookie.requests())
    failed = loadgen.failed(cookie.requests())
    print(f"cookie users: served {dict(served)}, {len(failed)} failed (all on the canary); "
          f"others served {dict(loadgen.served(others.requests()))}")
    assert served["green"] > 0, "no cookie request reached the canary"
    assert set(loadgen.served(others.requests())) == {"blue"}
    assert loadgen.failed(others.requests()) == []
    assert failed and all(r.color == "green" and r.status == 500 for r in failed)
    assert set(loadgen.served(after)) == {"blue"} and loadgen.failed(after) == []


def test_a_release_deleted_on_its_header_step_leaves_the_route_without_the_rule(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    _first_release(api, custom, namespace, _strategy(HEADER_STEP, {"pause": {}}))
    with _load(namespace, DOGFOOD) as dogfood:
        dp.set_version(custom, namespace, "1.1")
        _on_header_step(custom, namespace)
        wait_for(lambda: _color(namespace, DOGFOOD) == "green", timeout=60, interval=0.2,
                 what="Traefik sending the dogfood header to green")
        kubectl("delete", "crel", dp.RELEASE, "-n", namespace, "--wait=false")
        wait_for(
            lambda: not custom.list_namespaced_custom_object(
                rel.GROUP, rel.VERSION, namespace, rel.PLURAL
            )["items"],
            timeout=90,
            what="the ChatRelease gone",
        )
        rules = _route_rules(api, namespace)
        assert [r.get("name") for r in rules] == [None]
        assert [(b["name"], b["weight"]) for b in rules[0]["backendRefs"]] == [
            ("chat-api-blue", 100), ("chat-api-green", 0)
        ]
        wait_for(lambda: not _traefik_header_routers(namespace, "X-Canary"), timeout=60,
                 what="Traefik without the header rule")
        settled = time.time()
        after = _sample(dogfood, settled)
    served = loadgen.served(dogfood.requests())
    print(f"dogfood users through the deletion: served {dict(served)}, "
          f"{len(loadgen.failed(dogfood.requests()))} failed")
    assert served["green"] > 0
    assert set(loadgen.served(after)) == {"blue"} and loadgen.failed(after) == []
