"""`chatops get release NAME --watch --until-done`, and the same through the real kubectl
as its `chatops` plugin, run as a human runs them while a real canary release walks its
steps: a real operator, real Deployments rolled out on kwok's nodes, a real HTTPRoute,
Prometheus measuring the simulator's pods under traffic. The frames they print are the
story of the release, and they end on their own when it does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import releases as rel
from support import GROUP, VERSION, wait_for
from test_cli_release_e2e import set_status
from test_cluster import RELEASE, create

pytestmark = pytest.mark.e2e

PLUGIN_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
"""kubectl finds `kubectl-chatops` where pip installed it, beside the interpreter."""


def _start(argv: list[str], out: Path) -> subprocess.Popen[bytes]:
    """The command as a terminal starts it: with Ctrl-C's default disposition (a suite
    run as a background job of a script inherits SIGINT ignored, and so would the
    command, which then never sees the test's Ctrl-C)."""
    with open(out, "wb") as sink:
        return subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "PATH": PLUGIN_PATH},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def _watchers(namespace: str, tmp_path: Path) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    args = ["get", "release", "chat", "-n", namespace, "--watch", "--until-done"]
    commands = {
        "chatops": [sys.executable, "-m", "chatops.cli", *args],
        "kubectl chatops": ["kubectl", "chatops", *args],
    }
    return {name: (_start(argv, tmp_path / f"{name}.out"), tmp_path / f"{name}.out")
            for name, argv in commands.items()}


def _frames(text: str) -> list[list[str]]:
    """Each frame the watch printed, as its lines (a frame begins with `Name:`)."""
    frames: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("Name:"):
            frames.append([])
        if frames:
            frames[-1].append(line)
    return frames


def _row(frame: list[str], name: str) -> str:
    return next((line for line in frame if f"⧉ {name} " in line), "")


def _weights(frames: list[list[str]], deployment: str) -> list[int]:
    """The weight on `deployment` frame after frame, each change once."""
    seen: list[int] = []
    for frame in frames:
        found = re.search(r"weight:(\d+)%", _row(frame, deployment))
        if found and (not seen or seen[-1] != int(found[1])):
            seen.append(int(found[1]))
    return seen


def _release(api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str) -> None:
    """A first canary release at 1.0 (Succeeded), then 1.1 asked for with `spec.paused`:
    the operator brings it up and holds before the first weight, so a watch that starts
    slowly under load still sees every step once `_go` lets the release walk."""
    rel.http_route(api, namespace)
    rel.traffic(namespace, "chat", "blue", "green")
    spec = rel.release_spec("1.0", rel.canary(pause="4s"), {"gatewayAPI": {"httpRoute": "chat"}})
    rel.create(custom, namespace, "chat", spec)
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)
    _pause(custom, namespace, True)
    rel.set_version(custom, namespace, "chat", "1.1")


def _pause(custom: client.CustomObjectsApi, namespace: str, paused: bool) -> None:
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, rel.PLURAL, "chat", {"spec": {"paused": paused}}
    )


def _go(custom: client.CustomObjectsApi, namespace: str, *outputs: Path) -> None:
    """Once every watch drew the release held at its start, let it walk."""
    wait_for(lambda: all("Status:     ॥ Paused" in out.read_text() for out in outputs),
             timeout=120, interval=0.5, what="every watch drawing the held release")
    _pause(custom, namespace, False)


def _ended(watchers: dict[str, Any], timeout: float) -> dict[str, int]:
    codes = {}
    try:
        for name, (process, _) in watchers.items():
            codes[name] = process.wait(timeout=timeout)
    finally:
        for process, _ in watchers.values():
            process.kill()
            process.wait()
    return codes


def test_the_watched_tree_tells_a_canary_walking_its_steps_and_ends_at_succeeded(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi,
    tmp_path: Path,
) -> None:
    _release(api, custom, namespace)
    watchers = _watchers(namespace, tmp_path)
    _go(custom, namespace, *(out for _, out in watchers.values()))

    codes = _ended(watchers, timeout=180)

    outputs = {name: out.read_text() for name, (_, out) in watchers.items()}
    assert codes == {"chatops": 0, "kubectl chatops": 0}, outputs
    assert rel.status(custom, namespace, "chat")["phase"] == "Succeeded"
    for name, text in outputs.items():
        frames = _frames(text)
        assert "Traceback" not in text and len(frames) >= 5, (name, text)
        # the new color's share of new connections, as it moved, for both components
        for component in rel.COMPONENTS:
            weights = _weights(frames, f"chat-{component}-green")
            steps = [w for w in weights if w in (10, 25, 50, 100)]
            assert steps == [10, 25, 50, 100], (name, weights, text)
            assert weights == sorted(weights), (name, weights)
        # both colors up at once, each with its replicas, during the release
        assert any(
            "canary, weight:25%, ready:2/2, chat-api:1.1" in _row(f, "chat-api-green")
            and "stable, weight:75%, ready:2/2, chat-api:1.0" in _row(f, "chat-api-blue")
            for f in frames
        ), (name, text)
        assert any("Step:" in line and "pause 4s" in line for f in frames for line in f), text
        # the latest measurements of the runbook's metrics, passing
        passed = (re.search(r"⊞ (\S+)\s+Measurement\s+✔ Pass", line) for f in frames for line in f)
        measured = {found[1] for found in passed if found}
        assert measured == {"error-rate", "latency-p95", "websocket-success"}, (name, text)
        last = frames[-1]
        assert "Status:     ✔ Succeeded" in last, (name, last)
        assert "stable, weight:100%, ready:2/2, chat-api:1.1" in _row(last, "chat-api-green")
        assert "\x1b[" not in text  # not a terminal: no colors, no screen clearing
    first, second = (_frames(t) for t in outputs.values())
    assert first[-1][:5] == second[-1][:5]  # the plugin draws what `chatops get` draws


def test_the_watched_tree_of_a_rolled_back_release_says_why_and_exits_non_zero(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi,
    tmp_path: Path,
) -> None:
    _release(api, custom, namespace)
    out = tmp_path / "watch.out"
    watcher = _start([sys.executable, "-m", "chatops.cli", "get", "release", "chat", "-n",
                      namespace, "-w", "--until-done"], out)
    try:
        _go(custom, namespace, out)
        wait_for(lambda: "canary, weight:25%" in out.read_text(), timeout=120, interval=0.5,
                 what="the tree at 25%")
        rel.play(namespace, "1.1", errorRate=0.05)
        code = watcher.wait(timeout=120)
    finally:
        watcher.kill()
        watcher.wait()
    text = out.read_text()
    assert code == 2, text
    last = _frames(text)[-1]
    assert "Status:     ✖ RolledBack" in last, last
    assert any(line.startswith("Message:") and "error-rate" in line for line in last), last
    assert re.search(r"⊞ error-rate\s+Measurement\s+✖ Fail", "\n".join(last)), last
    assert "stable, weight:100%" in _row(last, "chat-api-blue"), last
    assert "rolled back, weight:0%" in _row(last, "chat-api-green"), last


@pytest.mark.parametrize("watch", [[], ["--watch"]])
def test_an_unknown_release_is_named_with_its_namespace(
    crds: None, namespace: str, watch: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatops.cli", "get", "release", "nope", "-n", namespace, *watch],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stdout
    assert done.stderr == (
        f'error: chatreleases.chatops.dev "nope" not found in namespace {namespace}\n'
    )


def test_a_watch_without_until_done_outlives_the_end_and_stops_on_ctrl_c(
    crds: None, namespace: str, custom: client.CustomObjectsApi, tmp_path: Path
) -> None:
    """No operator: the test writes the status one would. A watch without --until-done
    keeps drawing past Succeeded (a human watching the next release); Ctrl-C ends it.
    Waits are long: once, beside two canary tests at a load average of 17 on 2 cores,
    no frame came within 30 s."""
    create(custom, namespace, "ChatRelease", RELEASE, "chat")
    out = tmp_path / "watch.out"
    watcher = _start([sys.executable, "-m", "chatops.cli", "get", "release", "chat", "-n",
                      namespace, "--watch"], out)
    try:
        wait_for(lambda: "Status:     • -" in out.read_text(), 120, what="the first frame")
        set_status(custom, namespace, "chat", {"observedGeneration": 1, "phase": "Succeeded"})
        wait_for(lambda: "Status:     ✔ Succeeded" in out.read_text(), 120, what="Succeeded")
        set_status(custom, namespace, "chat", {"phase": "Progressing"})
        wait_for(lambda: "Status:     ◌ Progressing" in out.read_text(), 120, what="a new frame")
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=120) == 130
    finally:
        watcher.kill()
        watcher.wait()
    text = out.read_text()
    assert "Traceback" not in text and len(_frames(text)) == 3, text
