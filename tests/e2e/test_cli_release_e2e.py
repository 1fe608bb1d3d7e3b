"""`chatops promote | abort | retry | status` against the real API server, as a human runs
them. No operator runs here: the tests write the status an operator would write (through
the status subresource) and read the annotations it would act on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support import GROUP, VERSION, kubectl, wait_for
from test_cluster import RELEASE, create

pytestmark = pytest.mark.e2e

PLURAL = "chatreleases"


def chatops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatops.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def annotations(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, str]:
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return dict(body["metadata"].get("annotations") or {})


def set_status(
    custom: client.CustomObjectsApi, namespace: str, name: str, status: dict[str, Any]
) -> None:
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


def measured(metric: str, value: str, verdict: str, time: str) -> dict[str, Any]:
    return {
        "metric": metric,
        "component": "api",
        "query": f'{metric}{{service="chat-api"}}',
        "value": value,
        "verdict": verdict,
        "time": time,
    }


PAUSED_AT_25 = {
    "observedGeneration": 1,
    "phase": "Paused",
    "currentStep": 3,
    "canaryWeight": 25,
    "activeColor": "blue",
    "stableRevision": "5d8c0a1f",
    "canaryRevision": "9f2ab3c4",
    "stableVersion": "api=chat-api:1.0",
    "canaryVersion": "api=chat-api:1.1",
    "message": "step 4/7 at 25%: paused until chatops.dev/promote",
    "analysis": [
        measured("error-rate", "0.004", "Pass", "2026-01-01T10:00:00Z"),
        measured("latency-p95", "0.120", "Pass", "2026-01-01T10:00:00Z"),
        measured("error-rate", "0.0512", "Fail", "2026-01-01T10:00:30Z"),
    ],
}


@pytest.fixture
def release(crds: None, namespace: str, custom: client.CustomObjectsApi) -> str:
    create(custom, namespace, "ChatRelease", RELEASE, "chat")
    return "chat"


@pytest.mark.parametrize(
    ("argv", "key", "value"),
    [
        (["promote"], "chatops.dev/promote", "step"),
        (["promote", "--full"], "chatops.dev/promote", "full"),
        (["abort"], "chatops.dev/abort", "true"),
        (["retry"], "chatops.dev/retry", "true"),
    ],
)
def test_commands_set_the_annotation_the_operator_reads(
    release: str,
    namespace: str,
    custom: client.CustomObjectsApi,
    argv: list[str],
    key: str,
    value: str,
) -> None:
    kubectl("annotate", "crel", release, "-n", namespace, "team=chat")

    done = chatops(argv[0], release, *argv[1:], "-n", namespace)

    assert done.returncode == 0, done.stderr
    assert f"chatrelease {namespace}/{release}: asked to" in done.stdout
    # other annotations stay (kopf's own may join them when an operator runs); the value
    # is unique to the request: what it asks, then when (case 6)
    found = annotations(custom, namespace, release)
    assert found["team"] == "chat"
    assert re.fullmatch(rf"{value}@\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{6}}Z", found[key])


def test_namespace_defaults_to_the_kube_contexts(
    release: str, namespace: str, custom: client.CustomObjectsApi, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(Path(os.environ["KUBECONFIG"]).read_text())
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    subprocess.run(
        ["kubectl", "config", "set-context", "--current", f"--namespace={namespace}"],
        env=env,
        check=True,
        capture_output=True,
    )

    done = chatops("promote", release, env=env)

    assert done.returncode == 0, done.stderr
    assert annotations(custom, namespace, release)["chatops.dev/promote"].startswith("step@")


@pytest.mark.parametrize("command", ["promote", "abort", "retry", "status"])
def test_a_missing_release_is_named_with_its_namespace(
    crds: None, namespace: str, command: str
) -> None:
    done = chatops(command, "nope", "-n", namespace)

    assert done.returncode == 1
    assert done.stderr == (
        f'error: chatreleases.chatops.dev "nope" not found in namespace {namespace}\n'
    )
    assert "Traceback" not in done.stderr


def test_status_shows_phase_step_weight_versions_and_last_measurements(
    release: str, namespace: str, custom: client.CustomObjectsApi
) -> None:
    set_status(custom, namespace, release, PAUSED_AT_25)

    done = chatops("status", release, "-n", namespace)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:8] == [
        f"Release:       {namespace}/{release}",
        "Phase:         Paused",
        "Step:          4/7",
        "Weight:        25%",
        "Stable:        api=chat-api:1.0 (revision 5d8c0a1f)",
        "Canary:        api=chat-api:1.1 (revision 9f2ab3c4)",
        "Active color:  blue",
        "Message:       step 4/7 at 25%: paused until chatops.dev/promote",
    ]
    table = [line.split() for line in lines[lines.index("") + 2 :]]
    assert table == [
        ["METRIC", "COMPONENT", "VALUE", "VERDICT", "TIME"],
        ["error-rate", "api", "0.0512", "Fail", "2026-01-01T10:00:30Z"],
        ["latency-p95", "api", "0.12", "Pass", "2026-01-01T10:00:00Z"],
    ]


def test_status_of_a_release_the_operator_has_not_seen_yet(release: str, namespace: str) -> None:
    done = chatops("status", release, "-n", namespace)

    assert done.returncode == 0, done.stderr
    assert "Phase:         -" in done.stdout
    assert "Measurements: none yet" in done.stdout


def _watch(release: str, namespace: str, out: Path) -> subprocess.Popen[bytes]:
    with open(out, "wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "chatops.cli", "status", release, "-n", namespace, "--watch"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def _printed(out: Path, text: str, times: int = 1) -> bool:
    return out.read_text().count(text) >= times


@pytest.mark.parametrize(("end", "exit_code"), [("Succeeded", 0), ("RolledBack", 2), ("Failed", 2)])
def test_watch_prints_each_change_once_and_ends_with_the_release(
    release: str,
    namespace: str,
    custom: client.CustomObjectsApi,
    tmp_path: Path,
    end: str,
    exit_code: int,
) -> None:
    set_status(custom, namespace, release, {"observedGeneration": 1, "phase": "Progressing"})
    out = tmp_path / "watch.out"
    watcher = _watch(release, namespace, out)
    try:
        wait_for(lambda: _printed(out, "Phase:         Progressing"), 30, what="first print")

        kubectl("annotate", "crel", release, "-n", namespace, "unrelated=change")
        set_status(custom, namespace, release, PAUSED_AT_25)
        wait_for(lambda: _printed(out, "Phase:         Paused"), 30, what="the pause")
        set_status(custom, namespace, release, {"phase": end, "message": f"release {end}"})

        assert watcher.wait(timeout=30) == exit_code
    finally:
        watcher.kill()
        watcher.wait()
    text = out.read_text()
    assert text.count("Release:") == 3, text  # Progressing, Paused, the end: no repeats
    assert text.rstrip().endswith("2026-01-01T10:00:00Z"), text
    assert f"Phase:         {end}" in text and f"Message:       release {end}" in text


def test_watch_does_not_stop_at_the_end_of_the_previous_release(
    release: str, namespace: str, custom: client.CustomObjectsApi, tmp_path: Path
) -> None:
    set_status(custom, namespace, release, {"observedGeneration": 1, "phase": "Succeeded"})
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, release, {"spec": {"paused": True}}
    )  # a new spec: generation 2, not yet observed
    out = tmp_path / "watch.out"
    watcher = _watch(release, namespace, out)
    try:
        wait_for(lambda: _printed(out, "Phase:         Succeeded"), 30, what="first print")
        assert watcher.poll() is None, out.read_text()

        set_status(custom, namespace, release, {"observedGeneration": 2, "phase": "Progressing"})
        wait_for(lambda: _printed(out, "Phase:         Progressing"), 30, what="new release")
        set_status(custom, namespace, release, {"phase": "Succeeded"})
        assert watcher.wait(timeout=30) == 0
    finally:
        watcher.kill()
        watcher.wait()


def test_watch_ends_when_the_release_is_deleted(
    release: str, namespace: str, custom: client.CustomObjectsApi, tmp_path: Path
) -> None:
    out = tmp_path / "watch.out"
    watcher = _watch(release, namespace, out)
    try:
        wait_for(lambda: _printed(out, "Release:"), 30, what="first print")
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, release)
        assert watcher.wait(timeout=30) == 1
    finally:
        watcher.kill()
        watcher.wait()
    assert f'chatreleases.chatops.dev "chat" was deleted from namespace {namespace}' in (
        out.read_text()
    )


def test_kubectl_runs_the_commands_as_its_chatops_plugin(
    release: str, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """The real kubectl finds `kubectl-chatops` where pip installed it (beside the
    interpreter) and runs it: `kubectl chatops status` prints what `chatops status`
    does, and `kubectl chatops promote` asks the same."""
    set_status(custom, namespace, release, PAUSED_AT_25)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def plugin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60,
                              env=env)

    listed = plugin("plugin", "list")
    assert "kubectl-chatops" in listed.stdout, listed.stdout + listed.stderr
    shown = plugin("chatops", "status", release, "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == chatops("status", release, "-n", namespace).stdout
    assert "Phase:         Paused" in shown.stdout
    promoted = plugin("chatops", "promote", release, "-n", namespace)
    assert promoted.returncode == 0, promoted.stderr
    assert annotations(custom, namespace, release)["chatops.dev/promote"].startswith("step@")
    usage = plugin("chatops", "--help")
    assert usage.stdout.startswith("usage: kubectl chatops"), usage.stdout
