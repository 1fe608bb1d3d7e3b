"""What users see during a release, measured on the wire: real requests and WebSockets
through Traefik (the env's Gateway) to the simulator's pods, while a real operator moves
the traffic. The load generator (env/loadgen.py) records who answered every request and
every connection's life; the assertions are about those records."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kubernetes import client

import dataplane as dp
import loadgen
import releases as rel
from chatops import annotations
from support import wait_for

pytestmark = pytest.mark.e2e

RATE = 150  # requests a second through the Gateway
SAMPLE = 2000  # requests counted at each weight


def _load(namespace: str, **kw: float) -> loadgen.Load:
    return loadgen.Load(os.environ["GATEWAY_URL"], host=dp.host(namespace), **kw)  # type: ignore[arg-type]


def _first_release(
    custom: client.CustomObjectsApi, namespace: str, spec: dict[str, object]
) -> None:
    rel.create(custom, namespace, dp.RELEASE, spec)
    done = rel.wait_phase(custom, namespace, dp.RELEASE, "Succeeded", timeout=120)
    assert done["activeColor"] == "blue"
    wait_for(lambda: dp.serving(namespace), timeout=60,
             what="the Gateway carrying requests to the first release's pods")


def _canary(*weights: int, pause: str = "10m") -> dict[str, object]:
    steps: list[dict[str, object]] = []
    for weight in weights:
        steps += [{"setWeight": weight}, {"pause": {"duration": pause}}]
    # The drained color keeps its pods 5 s after the route changed: Traefik applies a route
    # up to its providersThrottleDuration (2 s) later, more on a busy machine, and a pod
    # gone before Traefik stops sending to it is a failed user request (500, no pod).
    delay = 5
    return {
        "canary": {
            "steps": steps,
            "scaleDownDelaySeconds": delay,
            "abortScaleDownDelaySeconds": delay,
        }
    }


def _promote_step(custom: client.CustomObjectsApi, namespace: str) -> None:
    import datetime

    value = annotations.request("step", datetime.datetime.now(datetime.UTC))
    rel.annotate(custom, namespace, dp.RELEASE, annotations.PROMOTE, value)


def test_real_traffic_honours_the_canary_weights(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    dp.color_route(api, namespace)
    spec = dp.release_spec("1.0", _canary(10, 25, 50), {"gatewayAPI": {"httpRoute": dp.RELEASE}})
    _first_release(custom, namespace, spec)
    with _load(namespace, rate=RATE) as load:
        dp.set_version(custom, namespace, "1.1")
        shares = {}
        for weight in (10, 25, 50):
            try:
                wait_for(
                    lambda w=weight: (
                        rel.status(custom, namespace, dp.RELEASE).get("canaryWeight") == w
                    ),
                    timeout=180,
                    what=f"the canary at {weight} %",
                )
            except AssertionError as err:  # say where the release is instead
                found = rel.status(custom, namespace, dp.RELEASE)
                raise AssertionError(
                    f"{err}: {found.get('phase')}: {found.get('message')}"
                ) from None
            dp.wait_applied(namespace, weight)
            since = time.time()
            sample = wait_for(
                lambda s=since: (
                    len(
                        got := [
                            r for r in loadgen.between(load.requests(), s) if r.status is not None
                        ]
                    )
                    >= SAMPLE
                    and got
                ),
                timeout=SAMPLE / RATE * 4 + 30,
                interval=0.5,
                what=f"{SAMPLE} requests at {weight} %",
            )[:SAMPLE]
            shares[weight] = 100 * loadgen.share(sample, "green")
            assert loadgen.failed(sample) == []
            assert set(loadgen.served(sample)) == {"blue", "green"}
            _promote_step(custom, namespace)
        rel.wait_phase(custom, namespace, dp.RELEASE, "Succeeded", timeout=120)
    print(f"canary share of {SAMPLE} requests at each weight: {shares}")
    for weight, observed in shares.items():
        assert abs(observed - weight) <= 3, shares


def test_a_bad_canary_costs_a_bounded_number_of_failed_requests(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    dp.color_route(api, namespace)
    spec = dp.release_spec(
        "1.0", _canary(10, pause="5m"), {"gatewayAPI": {"httpRoute": dp.RELEASE}}
    )
    _first_release(custom, namespace, spec)
    error_rate, weight = 0.05, 0.10
    dp.behave(namespace, "chat-api:1.1", errorRate=error_rate)
    with _load(namespace, rate=RATE) as load:
        wait_for(lambda: len(load.requests()) > RATE, timeout=30, what="the load running")
        dp.set_version(custom, namespace, "1.1")
        done = rel.wait_phase(custom, namespace, dp.RELEASE, "RolledBack", timeout=120)
        dp.wait_applied(namespace, 0)
        settled = time.time()
        wait_for(lambda: len(loadgen.between(load.requests(), settled)) > RATE, what="load after")
    requests = load.requests()
    canary = [r for r in requests if r.color == "green"]
    failed = loadgen.failed(requests)
    assert canary, "the canary never served a request"
    assert failed and all(r.color == "green" and r.status == 500 for r in failed), failed[:5]
    assert not [r for r in loadgen.between(requests, settled) if r.color == "green"]

    # The bound, from the spec and the data plane: the canary keeps its 10 % at most
    # for the reaction time the analysis allows; its requests fail at 5 %.
    reaction = dp.reaction_bound(spec["analysis"], propagation=3.0, slack=8.0)  # type: ignore[arg-type]
    served_for = max(r.sent for r in canary) - min(r.sent for r in canary)
    bound = dp.failures_bound(RATE * weight * reaction, error_rate)
    print(
        f"bad canary: {len(failed)} failed of {len(requests)} requests "
        f"({len(canary)} served by the canary over {served_for:.1f} s); "
        f"bound {bound} = {RATE}/s x {weight:.0%} x {reaction:.0f} s x {error_rate:.0%} + 4 sigma"
    )
    assert served_for <= reaction
    assert len(failed) <= bound
    assert "error-rate" in done["message"]


def test_a_release_right_after_a_rolled_back_canary_is_judged_on_its_own_requests(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """The canary color keeps the rolled-back version's series for as long as a window
    looks back (here a minute): the next release on that color is judged on its own
    revision's requests, not on the errors of the one before."""
    dp.color_route(api, namespace)
    window = {"metrics": [m for m in rel.metrics("1m") if m["name"] == "error-rate"]}
    spec = dp.release_spec(
        "1.0",
        _canary(50, pause="5s"),
        {"gatewayAPI": {"httpRoute": dp.RELEASE}},
        analysis=dp.analysis(**window),
    )
    _first_release(custom, namespace, spec)
    dp.behave(namespace, "chat-api:1.1", errorRate=0.2)
    with _load(namespace, rate=RATE) as load:
        wait_for(lambda: len(load.requests()) > RATE, timeout=30, what="the load running")
        dp.set_version(custom, namespace, "1.1")
        rel.wait_phase(custom, namespace, dp.RELEASE, "RolledBack", timeout=120)
        dp.set_version(custom, namespace, "1.2")
        done = wait_for(
            lambda: (
                (s := rel.status(custom, namespace, dp.RELEASE)).get("phase")
                in ("Succeeded", "RolledBack")
                and "chat-api:1.2" in str(s.get("stableVersion")) + str(s.get("message"))
                and s
            ),
            timeout=120,
            interval=0.5,
            what="the release of chat-api:1.2 to end",
        )
        ended = time.time()
    failed = loadgen.failed(load.requests())
    assert failed, "the bad canary failed no request"
    # every failure is a canary pod's own 500: none of the router's, e.g. a 502 for a
    # rolled-back pod replaced by 1.2 while Traefik still sent it requests
    assert all(r.color == "green" and r.status == 500 for r in failed), [
        r for r in failed if r.color != "green" or r.status != 500][:5]
    last_failure = max(r.sent for r in failed)
    # 1.2 ran on green, its whole analysis inside the minute 1.1's errors stayed in view
    assert ended - last_failure < 60, ended - last_failure
    assert done["phase"] == "Succeeded", done.get("message")
    assert done["activeColor"] == "green"


def test_websockets_stay_on_the_old_color_through_the_drain_window_then_reconnect(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    delay, clients = 8, 20
    dp.color_route(api, namespace)
    strategy = {"blueGreen": {"postPromotionWindow": "2s", "scaleDownDelaySeconds": delay}}
    spec = dp.release_spec("1.0", strategy, {"gatewayAPI": {"httpRoute": dp.RELEASE}})
    _first_release(custom, namespace, spec)
    with _load(namespace, rate=20, clients=clients) as load:
        wait_for(
            lambda: sum(c.is_open and c.color == "blue" for c in load.connections()) == clients,
            timeout=60,
            what=f"{clients} WebSockets open on blue",
        )
        before = [c for c in load.connections() if c.is_open]
        dp.set_version(custom, namespace, "1.1")
        dp.wait_applied(namespace, 100)
        # new connections after the switch land on the new color
        with _load(namespace, rate=0, clients=5) as late:
            wait_for(
                lambda: sum(c.is_open for c in late.connections()) == 5,
                timeout=30,
                what="5 new WebSockets open",
            )
            assert {c.color for c in late.connections() if c.opened} == {"green"}
        # the drain window, as the operator counts it: from when the router was first seen
        # sending blue no new connections
        drain = wait_for(
            lambda: (
                (rel.status(custom, namespace, dp.RELEASE).get("scaleDown") or {}).get("since")
                and rel.status(custom, namespace, dp.RELEASE)["scaleDown"]
            ),
            timeout=60,
            what="blue's drain window",
        )
        assert drain["color"] == "blue" and drain["delaySeconds"] == delay
        switched = dp.timestamp(drain["since"])
        precision = (
            0 if "." in drain["since"] else 1
        )  # whole seconds: the window may start 1 s early
        wait_for(
            lambda: rel.replicas(api, namespace, "blue") == {"api": 0},
            timeout=60,
            what="blue scaled down after the drain window",
        )
        wait_for(
            lambda: sum(c.is_open and c.color == "green" for c in load.connections()) == clients,
            timeout=60,
            what="every client reconnected, to green",
        )
    conns = {(c.client, c.attempt): c for c in load.connections()}
    for c in before:
        ended = conns[(c.client, c.attempt)]
        assert ended.closed is not None and ended.closed_by == "server", ended
        # open through the switch and the whole scaleDownDelaySeconds
        assert ended.closed >= switched + delay - precision, (ended, switched)
        assert ended.code == 1001, ended
    held = [conns[(c.client, c.attempt)].closed - switched for c in before]  # type: ignore[operator]
    print(
        f"WebSockets: {len(before)} opened on blue, closed {min(held):.1f}-{max(held):.1f} s "
        f"after the switch (drain window {delay} s), all reconnected to green"
    )
    dropped = loadgen.closed_by_server(load.connections(), until=switched + delay - precision)
    assert dropped == []
    assert loadgen.failed(load.requests()) == []


def test_blue_green_on_the_service_router_under_load_fails_no_request(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    dp.stable_route(api, namespace)
    strategy = {"blueGreen": {"postPromotionWindow": "2s", "scaleDownDelaySeconds": 3}}
    spec = dp.release_spec("1.0", strategy, {"service": {}})
    _first_release(custom, namespace, spec)
    with _load(namespace, rate=RATE, clients=10) as load:
        wait_for(lambda: loadgen.served(load.requests())["blue"] > RATE, what="blue serving")
        dp.set_version(custom, namespace, "1.1")
        rel.wait_phase(custom, namespace, dp.RELEASE, "Succeeded", timeout=120)
        wait_for(
            lambda: rel.replicas(api, namespace, "blue") == {"api": 0},
            timeout=60,
            what="blue scaled down",
        )
        after = time.time()
        wait_for(
            lambda: loadgen.served(loadgen.between(load.requests(), after))["green"] > RATE,
            what="green serving after blue is gone",
        )
    requests = load.requests()
    served = loadgen.served(requests)
    print(f"blue-green on the Service router: {len(requests)} requests, served {dict(served)}")
    assert served["blue"] > RATE and served["green"] > RATE
    assert loadgen.failed(requests) == []


def test_the_nginx_routers_canary_ingress_splits_real_traffic_by_its_weight(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Traefik's ingress-nginx provider reads the canary Ingress chatops generates
    (`nginx.ingress.kubernetes.io/canary-weight`) as ingress-nginx does."""
    dp.stable_ingress(api, namespace)
    spec = dp.release_spec("1.0", _canary(25), {"nginx": {"ingress": dp.RELEASE}})
    _first_release(custom, namespace, spec)
    with _load(namespace, rate=RATE) as load:
        wait_for(lambda: loadgen.served(load.requests())["blue"] > RATE, what="blue serving")
        dp.set_version(custom, namespace, "1.1")
        rel.wait_weight(custom, namespace, dp.RELEASE, 25, timeout=90)
        dp.wait_applied_nginx(namespace, 25)
        since = time.time()
        sample = wait_for(
            lambda: (
                len(got := [r for r in loadgen.between(load.requests(), since) if r.status])
                >= SAMPLE
                and got
            ),
            timeout=SAMPLE / RATE * 4 + 30,
            what=f"{SAMPLE} requests at 25 %",
        )[:SAMPLE]
    share = 100 * loadgen.share(sample, "green")
    print(f"NGINX canary Ingress at 25 %: canary share {share:.1f} % of {SAMPLE} requests")
    assert loadgen.failed(sample) == []
    assert abs(share - 25) <= 3
