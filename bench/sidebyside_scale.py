"""The side-by-side benchmark's scale run (issue 11): N releases at once, for each of
chatops, Argo Rollouts and Flagger in turn, on one private kwok control plane.

    .venv/bin/python bench/sidebyside.py --scale 200 --json scale.json
    make bench-sidebyside SCALE=200          # the table, then this

**One controller at a time.** The machine has 2 cores: three times 200 releases at once
would measure the machine (and the control plane, and the chat app simulator serving
every pod) more than the controllers, and each would slow the others. So each gets the
same control plane, Prometheus and simulator to itself, one after the other.

Per controller, started fresh for its turn (so that its VmHWM is this turn's peak):

1. start it, give it 10 s;
2. create N releases of the side-by-side's shape (sidebyside_peers: one Deployment of
   one replica on its own HTTPRoute, 10 → 25 → 50 → 100 with 20 s pauses, the same
   error-rate query; Flagger's interval is its step, 20 s) and wait until all are ready;
3. send `--rps` requests a second (2 by default, no WebSockets) to every release's
   canary Service, the one the analysis measures: enough for the 1m rate windows, light
   enough that the simulator, which answers for every pod on one core, keeps up;
4. change all N to a healthy new version at once (8 threads) and wait until each route
   has all of its weight on the new version (the side-by-side's "100 %");
5. delete them, wait until the namespace has no routes, Services, Deployments or pods
   left, and stop the controller.

What each number is (the window is from the first PATCH of step 4 to `SETTLE` s after
the last release reached 100 %):

- **step lag**: for each release and each pause, from the HTTPRoute watch alone (so the
  same for every controller, sidebyside_stats.step_lags): the time the canary's weight
  moved from a step's weight to the next, minus the time it reached that weight, minus
  the pause. The pause is 20 s for chatops and Argo; for Flagger its interval, 20 s, and
  40 s at the last weight (50 %): Flagger promotes in two ticks, one copying the spec to
  the primary, the next routing all to it (scheduler.go, Promoting then Finalising). A
  lag below 0 is a pause the controller's own clock started before the route change
  reached the watch (Flagger ticks on a timer whatever a tick took; Argo times a pause
  from its step's status, the plugin's route write comes with it);
- **spec change → 10 %** and **→ 100 %**: per release from just before its own PATCH,
  their spread across the N;
- **peak RSS**: VmHWM of the controller's process tree at the end of its turn (since it
  started: creating N releases is in it), and the most VmRSS sampled every 0.5 s;
- **CPU per release**: utime + stime of the tree over the window, over N;
- **API requests per release**: the private API server's audit log by user agent
  (sidebyside_stats.count), over the window, over N;
- **Prometheus queries** per release and per second of the window, through each
  controller's counting proxy (sidebyside_peers.PrometheusCounter);
- **wall times** of each part of a turn.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import release_common as rc
import sidebyside_controllers as ctl
import sidebyside_stats as st
from kubernetes import client
from release_scale import parallel
from sidebyside_peers import INTERVAL, PAUSE, STEPS, Peer, tree_cpu, tree_memory

SETTLE = 10.0  # seconds after the last 100 % still in the window
PODS_PER_NODE = 110  # kwok's fake nodes, as kubelet's default


def nodes_for(releases: int) -> int:
    """Fake nodes for two pods a release (blue and green; stable and canary; primary and
    canary), one controller at a time, and a spare."""
    return max(3, 2 * releases // PODS_PER_NODE + 2)


def dwell(controller: str) -> list[float]:
    """How long each weight of STEPS is meant to last (see the module's docstring)."""
    pause = float(PAUSE.removesuffix("s"))
    if controller == "flagger":
        return [INTERVAL["flagger"]] * (len(STEPS) - 1) + [2 * INTERVAL["flagger"]]
    return [pause] * len(STEPS)


class MemorySampler:
    """The most VmRSS of a process tree, sampled every 0.5 s until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.most = pid, 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.most = max(self.most, tree_memory(self.pid)[0])

    def stop(self) -> float:
        self._stop.set()
        return self.most


def wait_pending(
    peer: Peer, pending: set[str], done: Callable[[str], bool], timeout: float, what: str
) -> None:
    """Wait until `done(name)` for every name, checking the controller is alive; names
    still pending are left in `pending` (the caller reports them)."""
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        if not peer.alive():
            raise RuntimeError(f"{peer.name} exited:\n{peer.log_tail()}")
        pending -= {n for n in list(pending) if done(n)}
        if pending:
            time.sleep(2)
    if pending:
        print(f"{peer.name} {what}: {len(pending)} not done in {timeout:.0f} s", flush=True)


def empty(peer: Peer) -> bool:
    """Nothing of the releases left in the namespace (what the controller made included)."""
    pods = client.CoreV1Api(peer.api).list_namespaced_pod(peer.namespace, limit=1)
    return not peer.seen.objects and not pods.items


def turn(peer: Peer, chat: rc.ChatApp, releases: int, rps: float, timeout: float) -> dict[str, Any]:
    """One controller's scale run (steps 1-5 of the module's docstring)."""
    names = [f"s{i:03d}" for i in range(releases)]
    out: dict[str, Any] = {"releases": releases, "rps_per_canary": rps}
    t0 = time.monotonic()
    peer.start()
    memory = MemorySampler(peer.pid)
    try:
        time.sleep(10)
        out["idle_rss_mib"] = tree_memory(peer.pid)[0]
        started = time.monotonic()
        parallel(lambda n: peer.create(n, "1.0"), names)
        pending = set(names)
        wait_pending(peer, pending, peer.ready, timeout, "ready")
        out["not_ready"] = sorted(pending)
        out["create_to_ready_s"] = time.monotonic() - started
        for n in names:
            peer.prepare(n)
        parallel(lambda n: chat.traffic(peer.canary_service(n), rps=rps, ws_rate=0), names)
        out.update(change_all(peer, names, timeout))
        out["peak_rss_mib"] = tree_memory(peer.pid)[1]
        started = time.monotonic()
        parallel(peer.delete, names)
        rc.wait_for(lambda: empty(peer), timeout, f"{peer.name}'s releases to be gone", 1)
        out["delete_to_gone_s"] = time.monotonic() - started
    finally:
        out["rss_sampled_max_mib"] = memory.stop()
        peer.stop()
    out["turn_s"] = time.monotonic() - t0
    return out


def change_all(peer: Peer, names: list[str], timeout: float) -> dict[str, Any]:
    """Step 4: every release to a new healthy version at once, until all are at 100 %."""
    version = "1.1"
    full = {n: peer.seen.watch_for(peer.full(n, version), about=n) for n in names}
    patched: dict[str, float] = {}
    cpu, wall, t0 = tree_cpu(peer.pid), time.time(), time.monotonic()

    def change(name: str) -> None:
        patched[name] = time.monotonic()
        peer.change(name, version)

    parallel(change, names)
    patch_s = time.monotonic() - t0
    pending = set(names)
    wait_pending(peer, pending, lambda n: full[n].at is not None, timeout, "at 100 %")
    last = max((w.at for w in full.values() if w.at is not None), default=time.monotonic())
    time.sleep(max(0.0, last + SETTLE - time.monotonic()))
    window = (wall, time.time())
    peer.seen.forget(list(full.values()))
    lags, to_ten = [], []
    for n in names:
        history = peer.seen.history(n)
        canary = peer.canary_service(n)
        lags.append(st.step_lags(history, canary, patched[n], STEPS, dwell(peer.name)))
        ten = st.first_at(history, canary, STEPS[0], patched[n])
        to_ten.append(None if ten is None else ten - patched[n])
    to_full = [None if w.at is None else w.at - patched[n] for n, w in full.items()]
    return {
        "not_full": sorted(pending),
        "patch_all_s": patch_s,
        "change_to_all_full_s": last - t0,
        "window": window,
        "cpu_s": tree_cpu(peer.pid) - cpu,
        "prometheus_queries": peer.prometheus.count(*window),
        "step_lags_s": lags,  # per release, per pause (None: not seen)
        "to_ten_s": to_ten,
        "to_full_s": to_full,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every controller's turn on one private control plane (sidebyside.patch_localenv
    has given it an audit log)."""
    started, busy0 = time.time(), rc.machine_busy()
    load_before = rc.loadavg()
    turns: dict[str, dict[str, Any]] = {}
    with rc.cluster("private", nodes_for(args.scale)) as where:
        rc.install_crds()
        ctl.install_crds()
        api = rc.api_client()
        api.user_agent = "sidebyside-bench"
        peers = {c: ctl.PEERS[c](api, rc.new_namespace(api, f"sbs-{c}")) for c in args.controllers}
        namespaces = {c: p.namespace for c, p in peers.items()}
        for c, peer in peers.items():
            with rc.ChatApp(peer.namespace) as chat:
                try:
                    turns[c] = turn(peer, chat, args.scale, args.rps, args.scale_timeout)
                except Exception as err:
                    turns[c] = {"error": f"{type(err).__name__}: {err}"}
            print(f"{c}: {summary_line(turns[c])}", flush=True)
            print(json.dumps({"controller": c, **turns[c]}), flush=True)  # if stopped later
        # with any the API server rotated away (audit-<time>.log) first
        found = where.state.rglob("audit*.log") if where.state else []
        audit = sorted(found, key=lambda f: f.stat().st_mtime)
        lines = [line for f in audit for line in f.read_text().splitlines()]
        requests = st.audited(lines, namespaces)
    busy1 = rc.machine_busy()
    for c, t in turns.items():
        if "window" in t:
            t["requests"] = st.count(requests, c, *t["window"])
            t["requests_by_kind"] = {
                k: n / args.scale for k, n in st.breakdown(requests, c, [t["window"]]).items()
            }
    return {
        "benchmark": "sidebyside-scale",
        "releases": args.scale,
        "machine": rc.machine(),
        "cluster": where.description,
        "load_average": {"before": load_before, "after": rc.loadavg()},
        "machine_busy": (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1e-9),
        "duration_s": time.time() - started,
        "turns": turns,
    }


def summary_line(t: dict[str, Any]) -> str:
    if "error" in t:
        return t["error"]
    parts = ("create_to_ready_s", "change_to_all_full_s", "delete_to_gone_s", "turn_s")
    return ", ".join(f"{k} {t[k]:.0f}" for k in parts if k in t)


def rows(t: dict[str, Any]) -> dict[str, float | st.Spread]:
    """One controller's column: what the table shows, by row key."""
    n = t["releases"]
    lags = [lag for mine in t["step_lags_s"] for lag in mine if lag is not None]
    ten = [v for v in t["to_ten_s"] if v is not None]
    full = [v for v in t["to_full_s"] if v is not None]
    seconds = t["window"][1] - t["window"][0]
    return {
        "lag": st.spread(lags),
        "lag_p95": rc.percentile(lags, 95),
        "ten": st.spread(ten),
        "ten_p95": rc.percentile(ten, 95),
        "full": st.spread(full),
        "peak_rss": t["peak_rss_mib"],
        "sampled_rss": t["rss_sampled_max_mib"],
        "cpu": t["cpu_s"] / n,
        "requests": t.get("requests", float("nan")) / n,
        "prometheus": t["prometheus_queries"] / n,
        "qps": t["prometheus_queries"] / seconds,
        "phase": t["change_to_all_full_s"],
        "turn": t["turn_s"],
    }


ROWS = (
    ("lag", "step lag, p50 (min-max)", " s", 2),
    ("lag_p95", "step lag, p95", " s", 2),
    ("ten", "spec change → 10 %, p50 (min-max)", " s", 2),
    ("ten_p95", "spec change → 10 %, p95", " s", 2),
    ("full", "spec change → 100 %, p50 (min-max)", " s", 1),
    ("peak_rss", "peak RSS (VmHWM of the tree)", " MiB", 0),
    ("sampled_rss", "most VmRSS sampled (0.5 s)", " MiB", 0),
    ("cpu", "controller CPU per release", " s", 2),
    ("requests", "Kubernetes API requests per release", "", 0),
    ("prometheus", "Prometheus queries per release", "", 1),
    ("qps", "Prometheus queries per second", "", 2),
    ("phase", "change → all at 100 % (wall)", " s", 0),
    ("turn", "the controller's whole turn (wall)", " s", 0),
)
TARGETS = (  # (row, what, met) for chatops' column and the others'
    ("lag_p95", "step lag p95 ≤ 1 s", lambda c, o: c["lag_p95"] <= 1.0),
    ("peak_rss", "peak RSS ≤ 200 MiB", lambda c, o: c["peak_rss"] <= 200),
    ("qps", "Prometheus queries/s ≤ Argo Rollouts'", lambda c, o: c["qps"] <= o["argo"]["qps"]),
)


def value(cell: float | st.Spread) -> float:
    return cell.median if isinstance(cell, st.Spread) else cell


def report(result: dict[str, Any]) -> str:
    head = {"chatops": "chatops", "argo": "Argo Rollouts", "flagger": "Flagger"}
    turns = result["turns"]
    names = [c for c in st.CONTROLLERS if c in turns and "window" in turns[c]]
    cols = {c: rows(turns[c]) for c in names}
    ratios = [p for p in ("argo", "flagger") if p in names and "chatops" in names]
    m = result["machine"]
    lines = [
        f"## Scale: {result['releases']} releases at once, one controller at a time",
        "",
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, {m['date']}, "
        f"commit {m['commit']}; {result['cluster']}",
        "",
        "| | "
        + " | ".join(head[c] for c in names)
        + "".join(f" | chatops / {head[p]}" for p in ratios)
        + " |",
        "|---" * (1 + len(names) + len(ratios)) + "|",
    ]
    for key, label, unit, digits in ROWS:
        cells = [show(cols[c][key], unit, digits) for c in names]
        quotients = [quotient(cols["chatops"][key], cols[p][key]) for p in ratios]
        lines.append(f"| {label} | " + " | ".join(cells + quotients) + " |")
    lines.append("")
    if "chatops" in names:
        for key, what, met in TARGETS:
            if key == "qps" and "argo" not in names:
                continue
            lines.append(f"- target {what}: {'met' if met(cols['chatops'], cols) else 'NOT met'}")
    for c in names:
        t = turns[c]
        lines.append(
            f"- {head[c]}: {summary_line(t)} s; patches of all {t['releases']} in "
            f"{t['patch_all_s']:.1f} s; not ready {len(t['not_ready'])}, not at 100 % "
            f"{len(t['not_full'])}; idle RSS {t['idle_rss_mib']:.0f} MiB"
        )
        lines.append(f"- {head[c]} step lag p95 (pauses measured) at {by_pause(t)}")
        top = ", ".join(f"{k} {n:.1f}" for k, n in list(t.get("requests_by_kind", {}).items())[:6])
        lines.append(f"- {head[c]} requests per release: {top}")
    lines += [f"- {head[c]} failed: {t['error']}" for c, t in turns.items() if "error" in t]
    rps = next((t["rps_per_canary"] for t in turns.values() if "rps_per_canary" in t), None)
    lines.append(f"- traffic: {rps} requests/s to every canary Service, no WebSockets")
    lines.append(
        f"- load average before {result['load_average']['before']}, after "
        f"{result['load_average']['after']}; machine busy {100 * result['machine_busy']:.0f} %"
    )
    return "\n".join(lines)


def show(cell: float | st.Spread, unit: str, digits: int) -> str:
    if isinstance(cell, st.Spread):
        return cell.show(unit, digits)
    return "-" if cell != cell else f"{cell:.{digits}f}{unit}"


def quotient(ours: float | st.Spread, theirs: float | st.Spread) -> str:
    """chatops' over a peer's; "-" unless both are above 0 (a lag can be below)."""
    a, b = value(ours), value(theirs)
    return f"{a / b:.2f}" if a > 0 and b > 0 else "-"


def by_pause(t: dict[str, Any]) -> str:
    """The step lag's p95 at each weight: does it grow from step to step?"""
    found = []
    for i, weight in enumerate(STEPS):
        lags = [mine[i] for mine in t["step_lags_s"] if mine[i] is not None]
        found.append(f"{weight} % {rc.percentile(lags, 95):.2f} s ({len(lags)})")
    return ", ".join(found)
