"""What `chatops get release NAME` draws: a ChatRelease and its Deployments as the tree
`kubectl argo rollouts get rollout` draws, row by row, from the objects alone."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from chatops.cli import main, parser
from chatops.commands.release_tree import header, render, tree, unchanged

NOW = datetime.datetime(2026, 1, 1, 10, 5, tzinfo=datetime.UTC)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "4s"}}, {"setWeight": 25},
         {"pause": {"duration": "4s"}}, {"setWeight": 100}]


def release(strategy: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "chat", "namespace": "prod", "generation": 2,
                     "creationTimestamp": "2026-01-01T10:00:00Z"},
        "spec": {
            "components": [{"name": "api", "replicas": 2}, {"name": "web", "replicas": 2}],
            "strategy": strategy,
        },
        "status": {"observedGeneration": 2, **status},
    }


def deployment(
    component: str, color: str, revision: str, version: str, replicas: int, ready: int,
    created: str = "2026-01-01T10:00:00Z", **observed: Any,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"chat-{component}-{color}",
            "creationTimestamp": created,
            "labels": {"app.kubernetes.io/instance": "chat",
                       "app.kubernetes.io/component": component, "chatops.dev/color": color},
            "annotations": {"chatops.dev/revision": revision},
        },
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": component, "image": f"registry.example/chat-{component}:{version}"}]}}},
        "status": {"replicas": observed.get("running", ready), "readyReplicas": ready,
                   "updatedReplicas": ready},
    }


def measured(metric: str, component: str, value: str, verdict: str, at: str) -> dict[str, Any]:
    return {"metric": metric, "component": component, "query": "q", "value": value,
            "verdict": verdict, "time": at}


def rows(body: dict[str, Any], deployments: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [(r.name, r.kind, r.status, r.age, r.info) for r in tree(body, deployments, NOW)]


CANARY_AT_25 = release({"canary": {"steps": STEPS}}, {
    "phase": "Progressing", "currentStep": 3, "canaryWeight": 25, "activeColor": "blue",
    "stableRevision": "aaaa1111", "canaryRevision": "bbbb2222",
    "stableVersion": "chat-api:1.0,chat-web:1.0", "canaryVersion": "chat-api:1.1,chat-web:1.1",
    "message": "step 4/5 at 25% until 10:05:03",
    "analysis": [
        measured("error-rate", "api", "0.002", "Pass", "2026-01-01T10:04:50Z"),
        measured("error-rate", "api", "0.0512", "Fail", "2026-01-01T10:04:58Z"),
        measured("latency-p95", "api", "0.120", "Pass", "2026-01-01T10:04:58Z"),
        measured("error-rate", "web", "0", "Inconclusive", "2026-01-01T10:04:59Z"),
    ],
})
CANARY_DEPLOYMENTS = [
    deployment("api", "blue", "aaaa1111", "1.0", 2, 2),
    deployment("api", "green", "bbbb2222", "1.1", 2, 1, "2026-01-01T10:04:00Z"),
    deployment("web", "blue", "aaaa1111", "1.0", 2, 2),
    deployment("web", "green", "bbbb2222", "1.1", 2, 2, "2026-01-01T10:04:00Z"),
]


def test_a_canary_mid_step_shows_both_colors_weights_and_the_latest_measurements() -> None:
    assert rows(CANARY_AT_25, CANARY_DEPLOYMENTS) == [
        ("⟳ chat", "ChatRelease", "◌ Progressing", "5m",
         "step 4/5: pause 4s, weight:25%, active:blue"),
        ("├──# api", "Component", "", "", "replicas:2"),
        ("│  ├──⧉ chat-api-green", "Deployment", "◌ Progressing", "60s",
         "canary, weight:25%, ready:1/2, registry.example/chat-api:1.1, revision:bbbb2222"),
        ("│  ├──⧉ chat-api-blue", "Deployment", "✔ Healthy", "5m",
         "stable, weight:75%, ready:2/2, registry.example/chat-api:1.0, revision:aaaa1111"),
        ("│  ├──⊞ error-rate", "Measurement", "✖ Fail", "2s", "value:0.0512"),
        ("│  └──⊞ latency-p95", "Measurement", "✔ Pass", "2s", "value:0.12"),
        ("└──# web", "Component", "", "", "replicas:2"),
        ("   ├──⧉ chat-web-green", "Deployment", "✔ Healthy", "60s",
         "canary, weight:25%, ready:2/2, registry.example/chat-web:1.1, revision:bbbb2222"),
        ("   ├──⧉ chat-web-blue", "Deployment", "✔ Healthy", "5m",
         "stable, weight:75%, ready:2/2, registry.example/chat-web:1.0, revision:aaaa1111"),
        ("   └──⊞ error-rate", "Measurement", "⚠ Inconclusive", "1s", "value:0"),
    ]


def test_the_header_says_status_step_weight_and_both_versions() -> None:
    assert header(CANARY_AT_25) == [
        ("Name", "chat"),
        ("Namespace", "prod"),
        ("Status", "◌ Progressing"),
        ("Message", "step 4/5 at 25% until 10:05:03"),
        ("Strategy", "Canary"),
        ("  Step", "4/5: pause 4s"),
        ("  Weight", "25%"),
        ("Images", "chat-api:1.0,chat-web:1.0 (stable, revision aaaa1111)"),
        ("", "chat-api:1.1,chat-web:1.1 (canary, revision bbbb2222)"),
    ]


def test_a_blue_green_mid_switch_shows_the_weights_the_router_last_showed() -> None:
    """The switch is decided (promotedAt) but the router does not show it yet: the new
    color is up with no traffic; the old one still takes it all."""
    body = release({"blueGreen": {}}, {
        "phase": "Progressing", "activeColor": "blue", "canaryWeight": 0,
        "stableRevision": "aaaa1111", "canaryRevision": "bbbb2222",
        "promotedAt": "2026-01-01T10:04:59Z",
        "message": "switching traffic to green (api: green 0%)",
    })
    found = rows(body, [deployment("api", "blue", "aaaa1111", "1.0", 2, 2),
                        deployment("api", "green", "bbbb2222", "1.1", 2, 2)])
    assert found[0] == ("⟳ chat", "ChatRelease", "◌ Progressing", "5m",
                        "weight:0%, active:blue")
    assert [r[4].split(", ")[:3] for r in found[2:4]] == [
        ["canary", "weight:0%", "ready:2/2"], ["stable", "weight:100%", "ready:2/2"]]
    assert ("  Step", "-") not in header(body) and ("Strategy", "BlueGreen") in header(body)
    assert found[4] == ("└──# web", "Component", "", "", "replicas:2")  # not made yet


def test_a_rolled_back_release_shows_the_stable_color_serving_and_the_new_one_going() -> None:
    body = release({"canary": {"steps": STEPS}}, {
        "phase": "RolledBack", "activeColor": "blue", "canaryWeight": 0,
        "stableRevision": "aaaa1111", "abortedRevision": "bbbb2222",
        "stableVersion": "chat-api:1.0", "message": "rolled back chat-api:1.1: error-rate 0.05",
        "scaleDown": {"color": "green", "at": "2026-01-01T10:05:03Z"},
        "analysis": [measured("error-rate", "api", "0.05", "Fail", "2026-01-01T10:04:30Z")],
    })
    found = rows(body, [deployment("api", "blue", "aaaa1111", "1.0", 2, 2),
                        deployment("api", "green", "bbbb2222", "1.1", 2, 2)])
    assert found == [
        ("⟳ chat", "ChatRelease", "✖ RolledBack", "5m", "weight:0%, active:blue"),
        ("├──# api", "Component", "", "", "replicas:2"),
        ("│  ├──⧉ chat-api-blue", "Deployment", "✔ Healthy", "5m",
         "stable, weight:100%, ready:2/2, registry.example/chat-api:1.0, revision:aaaa1111"),
        ("│  ├──⧉ chat-api-green", "Deployment", "✔ Healthy", "5m",
         "rolled back, weight:0%, ready:2/2, scale-down:2026-01-01T10:05:03Z, "
         "registry.example/chat-api:1.1, revision:bbbb2222"),
        ("│  └──⊞ error-rate", "Measurement", "✖ Fail", "30s", "value:0.05"),
        ("└──# web", "Component", "", "", "replicas:2"),
    ]
    assert ("Images", "chat-api:1.0 (stable, revision aaaa1111)") in header(body)
    going = deployment("api", "green", "bbbb2222", "1.1", 0, 0, running=1)
    gone = deployment("api", "green", "bbbb2222", "1.1", 0, 0)
    assert [rows(body, [d])[2][2:] for d in (going, gone)] == [
        ("◌ ScalingDown", "5m", "rolled back, weight:0%, ready:0/0, scale-down:"
         "2026-01-01T10:05:03Z, registry.example/chat-api:1.1, revision:bbbb2222"),
        ("• ScaledDown", "5m", "rolled back, weight:0%, ready:0/0, scale-down:"
         "2026-01-01T10:05:03Z, registry.example/chat-api:1.1, revision:bbbb2222"),
    ]


def test_a_deployment_past_its_progress_deadline_is_degraded() -> None:
    stuck = deployment("api", "green", "bbbb2222", "1.1", 2, 0)
    stuck["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    assert rows(CANARY_AT_25, [stuck])[2][2] == "✖ Degraded"


def test_a_release_the_operator_has_not_seen_draws_with_dashes() -> None:
    body = {"metadata": {"name": "chat", "namespace": "prod"}, "spec": {}}
    assert rows(body, []) == [("⟳ chat", "ChatRelease", "• -", "", "")]
    assert "NAME    KIND         STATUS  AGE  INFO" in render(body, [], NOW)


def test_the_table_is_aligned_and_colors_only_on_request() -> None:
    plain = render(CANARY_AT_25, CANARY_DEPLOYMENTS, NOW)
    lines = plain.splitlines()
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["NAME", "KIND", "STATUS", "AGE", "INFO"]
    assert len({line.index("Deployment") for line in table if "Deployment" in line}) == 1
    assert "\x1b[" not in plain
    colored = render(CANARY_AT_25, CANARY_DEPLOYMENTS, NOW, color=True)
    assert "\x1b[32m✔ Healthy\x1b[0m" in colored and "\x1b[31m✖ Fail\x1b[0m" in colored
    assert colored.replace("\x1b[0m", "").count("\x1b[") == plain.count("✔") + plain.count(
        "◌") + plain.count("✖") + plain.count("⚠")
    stripped = colored
    for code in ("\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[0m"):
        stripped = stripped.replace(code, "")
    assert stripped == plain


def test_only_a_change_other_than_time_makes_a_new_frame() -> None:
    later = NOW + datetime.timedelta(seconds=30)
    assert unchanged(tree(CANARY_AT_25, CANARY_DEPLOYMENTS, NOW)) == unchanged(
        tree(CANARY_AT_25, CANARY_DEPLOYMENTS, later))
    moved = [*CANARY_DEPLOYMENTS[:1], deployment("api", "green", "bbbb2222", "1.1", 2, 2),
             *CANARY_DEPLOYMENTS[2:]]
    assert unchanged(tree(CANARY_AT_25, moved, NOW)) != unchanged(
        tree(CANARY_AT_25, CANARY_DEPLOYMENTS, NOW))


@pytest.mark.parametrize("alias", ["release", "releases", "crel", "chatrelease"])
def test_get_release_parses_as_kubectl_spells_it(alias: str) -> None:
    args = parser().parse_args(["get", alias, "chat", "-n", "prod", "-w", "--until-done"])
    assert (args.name, args.namespace, args.watch, args.until_done) == ("chat", "prod", True,
                                                                        True)


def test_until_done_without_watch_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "release", "chat", "--until-done"]) == 1
    assert capsys.readouterr().err == "error: --until-done follows a watch: add --watch\n"


def test_a_rolling_update_is_the_new_version_in_place_with_all_the_traffic() -> None:
    body = release({"rolling": {}}, {"phase": "Progressing", "activeColor": "blue",
                                     "canaryWeight": 0, "stableRevision": "aaaa1111",
                                     "canaryRevision": "bbbb2222"})
    found = rows(body, [deployment("api", "blue", "bbbb2222", "1.1", 2, 1)])
    assert found[2][2:] == ("◌ Progressing", "5m", "canary, in place, weight:100%, ready:1/2, "
                            "registry.example/chat-api:1.1, revision:bbbb2222")
    assert ("Strategy", "Rolling") in header(body)
