"""chatops, Argo Rollouts and Flagger side by side: the same canary on one private kwok
control plane, the three controllers running at once in their own namespaces (issue 11).

    make bench-sidebyside                       # builds the peers once, then 5 runs
    .venv/bin/python bench/sidebyside.py --runs 3 --json out.json

Each run gives each controller a fresh release (one Deployment, one replica, on an
HTTPRoute; steps 10 → 25 → 50 → 100 with 20 s pauses; the error-rate query of
sidebyside_stats.error_rate, max 1 %), all three in step: created and settled, then a
healthy new version, then a bad one. What each row is, exactly:

- **spec change → 10 %**: from just before the PATCH of the new version to the first
  HTTPRoute event (a watch) that carries 10 % to the new version's backend;
- **spec change → 100 %**: to the first route event with all of it on pods of the new
  version (sidebyside_controllers says what that is for each);
- **crossing → 100 % on stable**: a second new version, once at 10 %, starts answering 5 %
  errors after a random part of the controller's analysis interval; the crossing is the
  first time (polled every 100 ms) the controller's own query for it is above 1 %, the end
  the first route event with stable at 100 and the canary at 0;
- **API requests per release**: the private API server's audit log (kwokctl
  --kube-audit-policy), requests by the controller's user agent (sidebyside_stats), from
  the healthy change to 10 s after its 100 %; with `--counted`, chatops' are also
  counted inside its process (bench/counted_operator.py) as a cross-check (not by
  default: the counting costs CPU and memory of its own);
- **Prometheus queries per release** (and per second of it): each controller's Prometheus
  address is a counting pass-through proxy of its own (sidebyside_peers.PrometheusCounter),
  same window;
- **CPU per release**: utime + stime of the controller's process tree in the same window;
- **peak RSS** (VmHWM) of the tree at the end, and **idle** (VmRSS) 20 s after start with
  an empty namespace.

The machine is shared: the results carry the load average and how busy it was.

`--scale N` runs instead the scale run of sidebyside_scale: N releases at once, one
controller at a time, on a private control plane of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import release_common as rc
import sidebyside_controllers as ctl
import sidebyside_scale as scale
import sidebyside_stats as st
from release_reaction import FirstTime, prometheus_value
from sidebyside_peers import INTERVAL, Peer, tree_cpu, tree_memory, versions

SETTLE = 10.0  # seconds after 100 % still counted in a release's requests and CPU
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""


def patch_localenv() -> None:
    """The private control plane with an audit log, and a Prometheus that also keeps the
    pod labels Argo's and Flagger's queries select on (`rollouts_pod_template_hash`, `app`).
    The checkout's own environment need not be up: only its binaries are used."""
    sys.path.insert(0, str(rc.ROOT / "env"))
    import localenv

    os.environ["PATH"] = f"{localenv.tool_path()}{os.pathsep}{os.environ['PATH']}"
    for key in ("KUBECONFIG", "CHATAPP_URL", "PROMETHEUS_URL"):
        os.environ.setdefault(key, "")

    policy = Path(tempfile.mkdtemp(prefix="sidebyside-audit-")) / "policy.yaml"
    policy.write_text(AUDIT_POLICY)
    create, config = localenv.kwokctl, localenv.prometheus_config

    def kwokctl(*args: str) -> None:
        if args[:2] == ("create", "cluster"):
            args = (*args, "--kube-audit-policy", str(policy))
        create(*args)
        # localenv's checks ask the cluster of $KUBECONFIG: ours from now on
        os.environ["KUBECONFIG"] = str(localenv.STATE / "kubeconfig")

    def prometheus_config(kubeconfig: str) -> str:
        found = json.loads(config(kubeconfig))
        found["scrape_configs"][0]["relabel_configs"].append(
            {
                "action": "labelmap",
                "regex": "__meta_kubernetes_pod_label_(app|rollouts_pod_template_hash)",
            }
        )
        return json.dumps(found)

    localenv.kwokctl = kwokctl
    localenv.prometheus_config = prometheus_config


def since(t0: float, at: float | None) -> float | None:
    return None if at is None else at - t0


class Runner:
    """One controller's side of the runs; the three meet at a barrier between phases so
    that their changes happen at the same moments."""

    def __init__(self, peer: Peer, chat: rc.ChatApp, barrier: threading.Barrier) -> None:
        self.peer, self.chat, self.barrier = peer, chat, barrier
        self.runs: list[dict[str, Any]] = []

    def _phase(self) -> None:
        self.barrier.wait(timeout=900)

    def run(self, index: int) -> None:
        peer, name = self.peer, f"r{index}"
        result: dict[str, Any] = {"run": index}
        self.runs.append(result)
        try:
            for suffix in peer.streams:
                self.chat.traffic(f"{name}-{suffix}", rps=20, ws_rate=1)
            peer.create(name, "1.0")
            rc.wait_for(
                lambda: self._alive() and peer.ready(name), 300, f"{peer.name} {name} ready"
            )
            self._phase()
            result.update(self.healthy(name, f"1.{2 * index + 1}"))
            self._phase()
            result.update(self.bad(name, f"1.{2 * index + 2}", index))
        except Exception as err:
            result["error"] = f"{type(err).__name__}: {err}"
            self.barrier.abort()
        finally:
            with contextlib.suppress(Exception):
                peer.delete(name)
            for suffix in peer.streams:
                self.chat.forget(f"{name}-{suffix}")

    def _alive(self) -> bool:
        if not self.peer.alive():
            raise RuntimeError(f"{self.peer.name} exited:\n{self.peer.log_tail()}")
        return True

    def healthy(self, name: str, version: str) -> dict[str, Any]:
        peer = self.peer
        peer.prepare(name)
        ten, full = peer.seen.expect(peer.at_ten(name)), peer.seen.expect(peer.full(name, version))
        counted = peer.in_process_requests()
        cpu, wall, t0 = tree_cpu(peer.pid), time.time(), time.monotonic()
        peer.change(name, version)
        ten_at = ten(300)
        full_at = full(600)
        time.sleep(SETTLE)
        if counted is not None:
            time.sleep(1)  # counted_operator writes its counts every 0.5 s
            counted = (peer.in_process_requests() or 0) - counted
        return {
            "in_process_requests": counted,
            "to_ten_s": since(t0, ten_at),
            "to_full_s": since(t0, full_at),
            "window": (wall, time.time()),
            "cpu_s": tree_cpu(peer.pid) - cpu,
        }

    def bad(self, name: str, version: str, index: int) -> dict[str, Any]:
        peer = self.peer
        peer.prepare(name)
        ten = peer.seen.expect(peer.at_ten(name))
        peer.change(name, version)
        if ten(300) is None:
            return {"rollback_error": "the bad version never reached 10 %"}
        delay = random.Random(index).uniform(0, INTERVAL[peer.name])
        time.sleep(delay)
        query = peer.query(name)
        back = peer.seen.expect(peer.back(name))
        self.chat.play(f"chat-api:{version}", errorRate=0.05)
        bad_at = time.monotonic()
        crossing = FirstTime(lambda: (prometheus_value(query) or 0) > st.THRESHOLD, "crossing")
        back_at = back(300)
        crossing.done.wait(5)
        crossing.done.set()
        return {
            "errors_after_step_s": delay,
            "errors_to_crossing_s": since(bad_at, crossing.at),
            "rollback_s": None if back_at is None or crossing.at is None else back_at - crossing.at,
            "errors_to_stable_s": since(bad_at, back_at),
            "query": query,
        }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    patch_localenv()
    started, busy0 = time.time(), rc.machine_busy()
    load_before = rc.loadavg()
    with rc.cluster("private") as where:
        rc.install_crds()
        ctl.install_crds()
        api = rc.api_client()
        api.user_agent = "sidebyside-bench"
        peers = {c: ctl.PEERS[c](api, rc.new_namespace(api, f"sbs-{c}")) for c in args.controllers}
        namespaces = {c: p.namespace for c, p in peers.items()}
        chats = {c: rc.ChatApp(p.namespace) for c, p in peers.items()}
        try:
            for p in peers.values():
                p.start()
            time.sleep(20)
            idle = {c: tree_memory(p.pid)[0] for c, p in peers.items()}
            barrier = threading.Barrier(len(peers))
            runners = {c: Runner(p, chats[c], barrier) for c, p in peers.items()}
            for index in range(args.runs):
                barrier.reset()
                threads = [
                    threading.Thread(target=r.run, args=(index,), daemon=True)
                    for r in runners.values()
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    while t.is_alive():  # in steps, so that Ctrl-C still tears down
                        t.join(1)
                for c, r in runners.items():
                    print(json.dumps({"controller": c, **r.runs[-1]}), flush=True)
            peak = {c: tree_memory(p.pid)[1] for c, p in peers.items()}
            audit = sorted(where.state.rglob("audit.log")) if where.state else []
            requests = st.audited(audit[0].read_text().splitlines(), namespaces) if audit else []
        finally:
            for p in peers.values():
                p.stop()
            for chat in chats.values():
                chat.__exit__()
    busy1 = rc.machine_busy()
    runs = {c: r.runs for c, r in runners.items()}
    for c, rs in runs.items():
        for run in rs:
            if "window" in run:
                run["requests"] = st.count(requests, c, *run["window"])
                run["prometheus_queries"] = peers[c].prometheus.count(*run["window"])
    windows = {c: [tuple(r["window"]) for r in rs if "window" in r] for c, rs in runs.items()}
    return {
        "benchmark": "sidebyside",
        "requests_by_kind": {c: st.breakdown(requests, c, w) for c, w in windows.items()},
        "machine": rc.machine(),
        "versions": {
            k: v
            for k, v in versions().items()
            if k in ("FLAGGER_VERSION", "ARGO_ROLLOUTS_VERSION", "K8S_VERSION")
        },
        "cluster": where.description,
        "load_average": {"before": load_before, "after": rc.loadavg()},
        "machine_busy": (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1e-9),
        "duration_s": time.time() - started,
        "runs": runs,
        "idle_rss_mib": idle,
        "peak_rss_mib": peak,
        "audited_requests": len(requests),
    }


ROWS = (
    ("first_weight", "spec change → 10 % on the new version", "to_ten_s", " s"),
    ("full", "spec change → 100 %", "to_full_s", " s"),
    ("rollback", "metric crosses 1 % → 100 % on stable", "rollback_s", " s"),
    ("requests", "Kubernetes API requests per release", "requests", ""),
    ("prometheus", "Prometheus queries per release", "prometheus_queries", ""),
    ("cpu", "controller CPU per release", "cpu_s", " s"),
)


def table(result: dict[str, Any]) -> dict[str, dict[str, st.Spread]]:
    rows = {
        key: {c: st.spread(r.get(field) for r in result["runs"][c]) for c in result["runs"]}
        for key, _, field, _ in ROWS
    }
    rows["idle_rss"] = {c: st.spread([v]) for c, v in result["idle_rss_mib"].items()}
    rows["peak_rss"] = {c: st.spread([v]) for c, v in result["peak_rss_mib"].items()}
    return rows


def report(result: dict[str, Any]) -> str:
    rows = table(result)
    names = [c for c in st.CONTROLLERS if c in result["runs"]]
    head = {"chatops": "chatops", "argo": "Argo Rollouts", "flagger": "Flagger"}
    ratios = [p for p in ("argo", "flagger") if p in names and "chatops" in names]
    lines = [
        "| median (min-max) | "
        + " | ".join(head[c] for c in names)
        + " | "
        + " | ".join(f"chatops / {head[p]}" for p in ratios)
        + " |",
        "|---" * (1 + len(names) + len(ratios)) + "|",
    ]
    labels = {key: (label, unit) for key, label, _, unit in ROWS}
    labels.update({"peak_rss": ("peak RSS", " MiB"), "idle_rss": ("idle RSS", " MiB")})
    for key, (label, unit) in labels.items():
        digits = 0 if key in ("requests", "prometheus", "peak_rss", "idle_rss") else 2
        cells = [rows[key][c].show(unit, digits) for c in names]
        quotients = [f"{st.ratio(rows[key]['chatops'], rows[key][p]):.2f}" for p in ratios]
        lines.append(f"| {label} | " + " | ".join(cells + quotients) + " |")
    lines.append("")
    for target in st.TARGETS:
        if target.peer in names and "chatops" in names:
            met = target.met(rows)
            verdict = "not measured" if met is None else ("met" if met else "NOT met")
            lines.append(
                f"- target {labels[target.row][0]} ≤ {target.factor} x "
                f"{head[target.peer]}: {verdict}"
            )
    for c in names:
        kinds = result["requests_by_kind"].get(c, {})
        top = ", ".join(f"{k} {n:.1f}" for k, n in list(kinds.items())[:8])
        lines.append(f"- {head[c]} requests per release: {top}")
    for c in names:
        rates = [
            r["prometheus_queries"] / (r["window"][1] - r["window"][0])
            for r in result["runs"][c]
            if "prometheus_queries" in r
        ]
        lines.append(
            f"- {head[c]} Prometheus queries per second of a release: "
            f"{st.spread(rates).show('', 2)}"
        )
    counted = st.spread(r.get("in_process_requests") for r in result["runs"].get("chatops", []))
    if counted.n:
        lines.append(
            f"- chatops requests per release counted in its process: {counted.show('', 0)}"
        )
    failed = [
        f"{c} run {r['run']}: {r['error']}"
        for c in names
        for r in result["runs"][c]
        if "error" in r
    ]
    lines += [f"- failed: {f}" for f in failed]
    lines.append(
        f"- load average before {result['load_average']['before']}, after "
        f"{result['load_average']['after']}; machine busy {100 * result['machine_busy']:.0f} %"
    )
    return "\n".join(lines)


def main() -> int:
    rc.sigterm_as_interrupt()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--controllers",
        default="chatops,argo,flagger",
        help="comma-separated, of chatops, argo, flagger",
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--scale", type=int, default=0, metavar="N", help="the scale run, N releases at once"
    )
    parser.add_argument(
        "--rps", type=float, default=2.0, help="scale run: requests/s to every canary Service"
    )
    parser.add_argument(
        "--scale-timeout", type=float, default=900, help="scale run: seconds per wait"
    )
    parser.add_argument("--report", default=None, help="only print the table of a --json file")
    parser.add_argument(
        "--counted", action="store_true",
        help="chatops under counted_operator.py: its requests also counted in its process",
    )
    args = parser.parse_args()
    ctl.Chatops.counted = args.counted
    args.controllers = [c for c in args.controllers.split(",") if c]
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        print(scale.report(saved) if saved["benchmark"] == "sidebyside-scale" else report(saved))
        return 0
    if args.scale:
        patch_localenv()
        result = scale.measure(args)
        print(scale.report(result))
    else:
        result = measure(args)
        print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
