"""Scale: many ChatReleases progressing at once in one namespace, one operator.

    source .chatops-env/env && PATH=$CHATOPS_TOOLS_PATH:$PATH \\
        .venv/bin/python bench/release_scale.py --releases 200

Each release has one component and its own HTTPRoute, a canary of 10 → 25 → 50 → 100 with
pauses of `--pause`, analysed every `--interval` with the operator's default metrics (the
runbook's three checks over [1m] windows) against Prometheus scraping the pods, which
the chat app simulator serves healthy, under `--rps` requests a second (and a WebSocket
every 5 s) to every canary Service: enough for the [1m] windows, light enough that 200
of them leave the machine to the operator. The benchmark:

1. creates the releases at version 1.0 and starts its own operator (watching only this
   namespace), and waits until every first release is Succeeded (phase A);
2. moves all of them to 1.1 at once and waits until every canary is promoted (phase B);
3. leaves them at rest for `--idle` seconds (phase C: what steady state costs).

What it reports, and where each number comes from:

- peak RSS: VmHWM of the operator process (/proc/PID/status), and VmRSS at the end;
- CPU seconds: utime + stime of the operator process (/proc/PID/stat), per phase;
- API requests per release: counted inside the operator process by
  counted_operator.py (the kubernetes client, kopf's aiohttp, and Prometheus queries
  separately), per phase, divided by the number of releases. As a cross-check the
  API server's own `apiserver_request_total` delta over phase B is shown for the same
  verbs and resources; it also counts everyone else's requests (controller manager,
  other sessions' tests), so it can only be larger;
- step lag: for every pause, its due time (when the release was seen entering the pause
  + the pause's duration) against when it was seen leaving it (`status.currentStep`
  changed), and against when the next weight was seen in the status. Seen = the moment
  a watch on the namespace's ChatReleases delivered the status: a watch rather than
  polling every 0.5 s, because listing 200 objects twice a second would itself load the
  API server the benchmark measures, and be less precise;
- the operator's looks: how many, how long each ran, and how long each waited for a
  thread of `asyncio.to_thread`'s executor (the sign that looks queue up).

Deployments have `--replicas` (1 on the private cluster, which gets enough fake nodes;
0 on the shared one: its three fake nodes hold 330 pods in all, and 200 releases x 2
colors x 1 replica would take them from other sessions' tests). With 0 replicas no pod
serves, so the analysis sees no data (an error: it holds, then rolls back past
consecutiveErrorLimit): measure on the private cluster.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import release_common as rc
from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families

from chatops.api.common import seconds

COMPONENT = "app"
TERMINAL = ("RolledBack", "Failed")


@dataclass
class Seen:
    """One status of one release, as the watch delivered it."""

    at: float  # monotonic
    wall: float  # time.time() of the same moment
    step: int | None
    weight: int | None
    phase: str | None
    stable: str | None
    step_started: str | None  # status.stepStartedAt, the operator's clock, whole seconds


@dataclass
class StatusWatch:
    """Every status change of the namespace's ChatReleases, with the time it arrived."""

    api: client.ApiClient
    namespace: str
    seen: dict[str, list[Seen]] = field(default_factory=lambda: collections.defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0

    def start(self) -> StatusWatch:
        threading.Thread(target=self._loop, daemon=True, name="status-watch").start()
        return self

    def _loop(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        version: str | None = None
        while not self.stop.is_set():
            stream = watch.Watch()
            try:
                if version is None:
                    listed = custom.list_namespaced_custom_object(
                        rc.GROUP, rc.VERSION, self.namespace, rc.PLURAL
                    )
                    for item in listed["items"]:
                        self._record(item)
                    version = listed["metadata"]["resourceVersion"]
                for event in stream.stream(
                    custom.list_namespaced_custom_object,
                    rc.GROUP,
                    rc.VERSION,
                    self.namespace,
                    rc.PLURAL,
                    resource_version=version,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(obj)
                    if self.stop.is_set():
                        break
            except client.ApiException as err:
                if err.status == 410:  # too old: list again
                    version = None
                self.restarts += 1
            except Exception:  # a dropped connection: carry on from the last version
                self.restarts += 1
                time.sleep(0.2)

    def _record(self, obj: dict[str, Any]) -> None:
        status = obj.get("status") or {}
        now = Seen(
            time.monotonic(),
            time.time(),
            status.get("currentStep"),
            status.get("canaryWeight"),
            status.get("phase"),
            status.get("stableVersion"),
            status.get("stepStartedAt"),
        )
        with self.lock:
            history = self.seen[obj["metadata"]["name"]]
            last = history[-1] if history else None
            if last is None or (last.step, last.weight, last.phase, last.stable) != (
                now.step,
                now.weight,
                now.phase,
                now.stable,
            ):
                history.append(now)

    def latest(self) -> dict[str, Seen]:
        with self.lock:
            return {name: h[-1] for name, h in self.seen.items() if h}

    def history(self, name: str) -> list[Seen]:
        with self.lock:
            return list(self.seen.get(name, []))


def parallel(func: Callable[[Any], None], items: Iterable[Any], workers: int = 8) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(func, item) for item in items]:
            done.result()


def apiserver_requests() -> collections.Counter[str]:
    """`VERB resource[/subresource]` → apiserver_request_total, over all clients."""
    text = subprocess.run(
        ["kubectl", "get", "--raw", "/metrics"], check=True, capture_output=True, text=True
    ).stdout
    out: collections.Counter[str] = collections.Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            verb = labels.get("verb", "")
            verb = {"APPLY": "PATCH", "POST": "CREATE", "PUT": "UPDATE"}.get(verb, verb)
            sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
            out[f"{verb} {labels.get('resource', '')}{sub}"] += int(sample.value)
    return out


@dataclass
class Phase:
    """What the operator did between two moments."""

    name: str
    wall: float = 0.0
    cpu: float = 0.0
    control_plane_cpu: float = 0.0
    machine_busy: float = 0.0  # share of all the machine's CPUs in use, by anyone
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    looks: list[tuple[float, float]] = field(default_factory=list)


class Meter:
    """Snapshots of the operator's CPU and counts, subtracted to give a Phase."""

    def __init__(self, operator: rc.Operator, cluster: rc.Cluster) -> None:
        self.operator, self.cluster = operator, cluster
        self.mark()

    def mark(self) -> None:
        self.at, self.cpu = time.monotonic(), self.operator.cpu_seconds()
        self.control_plane = self.cluster.control_plane_cpu()
        self.busy = rc.machine_busy()
        counts = self.operator.counts()
        self.requests = collections.Counter(counts["requests"])
        self.looks = len(counts["looks"])

    def phase(self, name: str) -> Phase:
        counts = self.operator.counts()
        busy, total = rc.machine_busy()
        phase = Phase(
            name,
            wall=time.monotonic() - self.at,
            cpu=self.operator.cpu_seconds() - self.cpu,
            control_plane_cpu=self.cluster.control_plane_cpu() - self.control_plane,
            machine_busy=(busy - self.busy[0]) / max(total - self.busy[1], 1e-9),
            requests=collections.Counter(counts["requests"]) - self.requests,
            looks=counts["looks"][self.looks :],
        )
        self.mark()
        return phase


def step_lags(
    history: list[Seen], since: float, steps: list[dict[str, Any]]
) -> list[tuple[float, float | None, float | None]]:
    """For every timed pause of a canary started after `since`, how late it ended:
    (seen leaving - due, next weight seen - due, seen leaving - the operator's own due).
    Due = seen entering the pause + its duration; the operator's own due is
    `status.stepStartedAt` + the duration, in its clock, which keeps whole seconds."""
    out: list[tuple[float, float | None, float | None]] = []
    mine = [s for s in history if s.at >= since]
    for index, step in enumerate(steps):
        pause = step.get("pause")
        if pause is None or pause.get("duration") is None:
            continue
        entered = next((i for i, s in enumerate(mine) if s.step == index), None)
        if entered is None:
            continue
        duration = seconds(pause["duration"])
        due = mine[entered].at + duration
        left = next((s for s in mine[entered:] if s.step != index), None)
        if left is None:
            continue
        weight = mine[entered].weight
        moved = next(
            (
                s
                for s in mine[entered:]
                if s.weight != weight or s.phase in ("Promoting", "Succeeded")
            ),
            None,
        )
        started = mine[entered].step_started
        own = (
            None
            if started is None
            else left.wall - (datetime.datetime.fromisoformat(started).timestamp() + duration)
        )
        out.append((left.at - due, None if moved is None else moved.at - due, own))
    return out


def wait_all(
    statuses: StatusWatch,
    names: list[str],
    done: Callable[[Seen], bool],
    timeout: float,
    operator: rc.Operator,
    what: str,
) -> list[str]:
    """Wait until `done` holds for every release; the names it does not hold for."""
    deadline = time.monotonic() + timeout
    while True:
        latest = statuses.latest()
        pending = [n for n in names if n not in latest or not done(latest[n])]
        if not pending or time.monotonic() > deadline:
            if pending:
                print(f"{what}: {len(pending)} not done after {timeout:.0f} s", file=sys.stderr)
            return pending
        if not operator.alive():
            raise RuntimeError(f"the operator exited:\n{operator.log_tail()}")
        time.sleep(0.5)


def main() -> int:
    rc.sigterm_as_interrupt()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=200)
    parser.add_argument(
        "--replicas", type=int, default=None, help="per release (default: 1 private, 0 shared)"
    )
    parser.add_argument("--pause", default="10s")
    parser.add_argument(
        "--rps", type=float, default=1.0, help="requests/s to every canary Service (simulator)"
    )
    parser.add_argument("--interval", default="10s", help="spec.analysis.interval")
    parser.add_argument("--weights", default="10,25,50")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per phase")
    parser.add_argument("--idle", type=float, default=60, help="seconds at rest (phase C)")
    parser.add_argument(
        "--cluster",
        choices=["private", "shared"],
        default="private",
        help="a kwok control plane of our own (default), or the environment's",
    )
    parser.add_argument(
        "--wait-alone",
        type=float,
        default=300,
        metavar="S",
        help="shared cluster: first wait up to S s for other sessions' cluster-wide operators",
    )
    parser.add_argument(
        "--source", type=Path, default=None, help="run the operator from this folder"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    shared = args.cluster == "shared"
    if args.replicas is None:
        args.replicas = 0 if shared else 1

    rc.load_env()
    if shared:
        rc.wait_alone(args.wait_alone)
    # Enough fake nodes for both colors of every release (110 pods a node), and one spare.
    nodes = max(3, 2 * args.releases * args.replicas // 110 + 2)
    with rc.cluster(args.cluster, nodes) as where:
        rc.install_crds()
        result = run(args, where)
    print(report(result))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2, default=str)
    return 0


def run(args: argparse.Namespace, where: rc.Cluster) -> dict[str, Any]:
    shared = args.cluster == "shared"
    api = rc.api_client()
    custom = client.CustomObjectsApi(api)
    steps: list[dict[str, Any]] = []
    for weight in (int(w) for w in args.weights.split(",")):
        steps += [{"setWeight": weight}, {"pause": {"duration": args.pause}}]
    steps.append({"setWeight": 100})
    names = [f"s{i:03d}" for i in range(args.releases)]

    namespace = rc.new_namespace(api, "bench-scale")
    # Traffic to the canary color only: it is the one the analysis measures.
    services = [f"{n}-{COMPONENT}-green" for n in names]
    operator: rc.Operator | None = None
    statuses: StatusWatch | None = None
    chat = rc.ChatApp(namespace)
    result: dict[str, Any] = {
        "benchmark": "release_scale",
        "machine": rc.machine(),
        "cluster": where.description,
    }
    with chat:
        try:
            setup = time.monotonic()
            parallel(lambda service: chat.traffic(service, args.rps, args.rps / 5), services)

            def create(name: str) -> None:
                route = rc.http_route(name, {COMPONENT: "/"})
                custom.create_namespaced_custom_object(
                    *rc.GATEWAY[:2], namespace, rc.GATEWAY[2], route
                )
                body = rc.release(
                    name,
                    "1.0",
                    [COMPONENT],
                    steps,
                    args.interval,
                    args.replicas,
                    scale_down_delay=5,
                )
                custom.create_namespaced_custom_object(
                    rc.GROUP, rc.VERSION, namespace, rc.PLURAL, body
                )

            parallel(create, names)
            print(f"created {len(names)} releases in {time.monotonic() - setup:.0f} s", flush=True)
            statuses = StatusWatch(api, namespace).start()

            operator = rc.Operator(namespace, args.source)
            meter = Meter(operator, where)
            with rc.ForeignOperators(own=operator.pid, enabled=shared) as foreign:
                failed_a = wait_all(
                    statuses,
                    names,
                    lambda s: s.phase == "Succeeded",
                    args.timeout,
                    operator,
                    "phase A (first releases)",
                )
                first = meter.phase("A: first releases")
                print(f"phase A: {first.wall:.0f} s, {first.cpu:.1f} CPU s", flush=True)

                apiserver_before = apiserver_requests()
                meter.mark()
                started_b = time.monotonic()
                parallel(lambda n: rc.set_version(custom, namespace, n, "1.1"), names)
                patched = time.monotonic() - started_b
                failed_b = wait_all(
                    statuses,
                    names,
                    lambda s: (
                        s.phase in TERMINAL
                        or (s.phase == "Succeeded" and "1.1" in (s.stable or ""))
                    ),
                    args.timeout,
                    operator,
                    "phase B (canaries)",
                )
                canary = meter.phase("B: canaries")
                apiserver_after = apiserver_requests()
                print(f"phase B: {canary.wall:.0f} s, {canary.cpu:.1f} CPU s", flush=True)

                time.sleep(args.idle)
                rest = meter.phase("C: at rest")
                rss, peak = operator.memory_mib()
                threads_peak = operator.counts().get("threads_peak")
            latest = statuses.latest()
            per_release = [step_lags(statuses.history(n), started_b, steps) for n in names]
            lags = [lag for mine in per_release for lag in mine]
            pauses = max((len(mine) for mine in per_release), default=0)
            by_pause = [
                rc.summary([mine[i][0] for mine in per_release if len(mine) > i])
                for i in range(pauses)
            ]
            result.update(
                {
                    "load_average": rc.loadavg(),
                    "foreign_operators": foreign.describe(),
                    "releases": args.releases,
                    "replicas": args.replicas,
                    "steps": steps,
                    "interval": args.interval,
                    "source": str(args.source or "the checkout's operator/ (the .venv install)"),
                    "not_done": {"A": failed_a, "B": failed_b},
                    "outcomes": dict(collections.Counter(s.phase for s in latest.values())),
                    "rolled_back": sorted(n for n, s in latest.items() if s.phase in TERMINAL),
                    "version_patches_s": patched,
                    "rss_mib": rss,
                    "peak_rss_mib": peak,
                    "threads_peak": threads_peak,
                    "phases": [describe(p, args.releases) for p in (first, canary, rest)],
                    "step_lag_s": rc.summary([lag for lag, _, _ in lags]),
                    "step_lag_by_pause_s": by_pause,  # does it grow from step to step?
                    "weight_lag_s": rc.summary([w for _, w, _ in lags if w is not None]),
                    "step_lag_own_due_s": rc.summary([o for _, _, o in lags if o is not None]),
                    "pauses_measured": len(lags),
                    "apiserver_phase_b": cross_check(
                        apiserver_after - apiserver_before, canary.requests
                    ),
                    "watch_restarts": statuses.restarts,
                    "rps_per_canary": args.rps,
                    "operator_warnings": operator.warnings(),
                    "operator_log": str(operator.log_path),
                }
            )
        finally:
            if statuses is not None:
                statuses.stop.set()
            if shared and not rc.delete_namespace(api, namespace, timeout=300):
                print(f"namespace {namespace} is still terminating", file=sys.stderr)
            if operator is not None:
                operator.stop()
    return result


def describe(phase: Phase, releases: int) -> dict[str, Any]:
    kube = sum(v for k, v in phase.requests.items() if not k.startswith("prometheus"))
    prom = sum(v for k, v in phase.requests.items() if k.startswith("prometheus"))
    return {
        "name": phase.name,
        "wall_s": phase.wall,
        "cpu_s": phase.cpu,
        "cpu_share": phase.cpu / phase.wall if phase.wall else 0.0,
        "control_plane_cpu_s": phase.control_plane_cpu,
        "machine_busy": phase.machine_busy,
        "kube_requests": kube,
        "kube_requests_per_release": kube / releases,
        "prometheus_queries_per_release": prom / releases,
        "by_kind": dict(phase.requests.most_common()),
        "looks": len(phase.looks),
        "look_wait_s": rc.summary([w for w, _ in phase.looks]),
        "look_run_s": rc.summary([r for _, r in phase.looks]),
    }


def cross_check(
    apiserver: collections.Counter[str], ours: collections.Counter[str]
) -> dict[str, dict[str, int]]:
    """For each verb and resource the operator used: its own count and the API server's
    (everyone's) over the same phase."""
    mine: collections.Counter[str] = collections.Counter()
    for key, count in ours.items():
        client_name, _, rest = key.partition(" ")
        if client_name in ("kube", "kopf"):
            mine[rest] += count
    return {
        key: {"operator": mine[key], "apiserver_all_clients": apiserver.get(key, 0)}
        for key in sorted(mine)
    }


def report(result: dict[str, Any]) -> str:
    if "phases" not in result:
        return "no results"
    m = result["machine"]
    lines = [
        f"## Scale: {result['releases']} ChatReleases at once "
        f"(replicas {result['replicas']}, analysis every {result['interval']})",
        "",
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, {m['date']}, "
        f"commit {m['commit']}; load average at the end {result['load_average']}; "
        f"other operators: {result['foreign_operators']}",
        f"traffic: {result['rps_per_canary']} requests/s to every canary Service",
        f"outcomes: {result['outcomes']}; not done in time: "
        f"A {len(result['not_done']['A'])}, B {len(result['not_done']['B'])}",
        f"operator peak RSS {result['peak_rss_mib']:.0f} MiB (now {result['rss_mib']:.0f} MiB), "
        f"threads peak {result['threads_peak']}",
        "",
        "| phase | wall s | operator CPU s (share of a core) | control plane CPU s "
        "| machine busy | API requests / release | Prometheus queries / release | looks "
        "| look wait p50 / p95 / max s | look run p50 / p95 s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        wait, run = p["look_wait_s"], p["look_run_s"]
        lines.append(
            f"| {p['name']} | {p['wall_s']:.0f} | {p['cpu_s']:.1f} ({p['cpu_share']:.0%}) | "
            f"{p['control_plane_cpu_s']:.1f} | {p['machine_busy']:.0%} | "
            f"{p['kube_requests_per_release']:.1f} | {p['prometheus_queries_per_release']:.1f} | "
            f"{p['looks']} | {wait['p50']:.3f} / {wait['p95']:.3f} / {wait['max']:.3f} | "
            f"{run['p50']:.3f} / {run['p95']:.3f} |"
        )
    lag, weight, own = result["step_lag_s"], result["weight_lag_s"], result["step_lag_own_due_s"]
    lines += [
        "",
        f"step lag (seen leaving a pause - due), {lag['n']} pauses: p50 {lag['p50']:.2f} s, "
        f"p95 {lag['p95']:.2f} s, max {lag['max']:.2f} s",
        "step lag p50 / p95 by pause: "
        + ", ".join(f"{p['p50']:.2f} / {p['p95']:.2f} s" for p in result["step_lag_by_pause_s"]),
        f"next weight seen - due: p50 {weight['p50']:.2f} s, p95 {weight['p95']:.2f} s, "
        f"max {weight['max']:.2f} s",
        f"seen leaving - the operator's own due (stepStartedAt + pause): p50 {own['p50']:.2f} s, "
        f"p95 {own['p95']:.2f} s, max {own['max']:.2f} s",
        "",
        "phase B requests by verb and resource (operator's own / API server, all clients):",
    ]
    for key, pair in result["apiserver_phase_b"].items():
        lines.append(f"  {key}: {pair['operator']} / {pair['apiserver_all_clients']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
