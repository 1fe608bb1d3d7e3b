"""Memory: the operator's RSS at idle, under a burst of ChatReleases, and after.

    source .chatops-env/env && PATH=$CHATOPS_TOOLS_PATH:$PATH \\
        .venv/bin/python bench/memory_bench.py --releases 200

On a private kwok control plane (release_common.cluster: the environment's own code and
binaries, a Service range big enough for 200 releases of 3 Services; `--cluster shared`
uses the local environment's, whose 250 ClusterIPs hold about 80 releases), in a
namespace of its own, it starts `chatops run --namespace NS` (plain: no request
counting, which would cost memory of its own) and reads the process's
/proc/PID/status — VmRSS (resident now), VmHWM (the peak so far), RssAnon (heap and
stacks) and RssFile (mapped files: the interpreter and shared libraries) — at these
moments:

1. idle: `--idle` s after start, with no ChatRelease;
2. burst: `--releases` small ChatReleases (one component, `--replicas` replicas, the
   default canary steps, an HTTPRoute each: release_scale.py's spec) created at once;
   the peak is VmHWM once they are all Succeeded (and the largest VmRSS sampled every
   0.2 s meanwhile);
3. settled: `--settle` s after the last one is Succeeded;
4. after delete: all deleted (`deletionPolicy: Delete`, so the operator removes their
   Deployments and Services too, and the HTTPRoutes are deleted by the benchmark), gone,
   and the operator left idle `--after` s.

It prints one JSON line and a table per operator: `--source DIR` (repeatable) runs
another checkout's operator/ instead, one after the other on the same cluster, to compare
commits. What the idle RSS is made of: `--composition`
imports what `chatops run` imports, a part at a time, in a fresh interpreter, and prints
the RSS each part adds. Where memory stays after the burst: `--trace` runs the same
phases on an operator with tracemalloc on (bench/traced_operator.py), takes a snapshot at
idle and after delete + idle, and prints the biggest differences by line and by file;
its RSS numbers are inflated by tracemalloc itself and are not the ones to quote.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import release_common as rc
from kubernetes import client

HERE = Path(__file__).resolve().parent
COMPONENT = "app"
FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")


def status(pid: int) -> dict[str, float]:
    """The FIELDS of /proc/PID/status, sizes in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in FIELDS:
            value = float(rest.split()[0])
            out[key] = value if key == "Threads" else value / 1024
    return out


class Operator(rc.Operator):
    """`chatops run --namespace NS` as a user runs it (traced: with tracemalloc), its RSS
    sampled every 0.2 s."""

    def __init__(self, namespace: str, trace: Path | None, source: Path | None) -> None:
        self.trace = trace
        if trace is None:
            super().__init__(namespace, source, wrapper=None)
        else:
            super().__init__(namespace, source, "traced", {"CHATOPS_BENCH_TRACE": str(trace)})
        self.snapshots = 0
        self.peak_rss = 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2) and self.alive():
            try:
                self.peak_rss = max(self.peak_rss, status(self.proc.pid)["VmRSS"])
            except (OSError, KeyError):
                return

    def reading(self) -> dict[str, float]:
        if not self.alive():
            raise RuntimeError(f"the operator exited:\n{self.log_tail()}")
        found = status(self.proc.pid)
        found["sampled_peak_rss"] = self.peak_rss
        return found

    def reset_sampled_peak(self) -> None:
        self.peak_rss = 0.0

    def snapshot(self) -> tracemalloc.Snapshot | None:
        """The traced operator's next snapshot (None when not traced)."""
        if self.trace is None:
            return None
        path = self.trace / f"snapshot-{self.snapshots}.pickle"
        self.proc.send_signal(signal.SIGUSR1)
        rc.wait_for(path.exists, 300, "the tracemalloc snapshot")
        self.snapshots += 1
        return tracemalloc.Snapshot.load(str(path))

    def stop(self) -> None:
        self._stop.set()
        super().stop()


def parallel(func: Callable[[Any], None], items: Iterable[Any], workers: int = 8) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(func, item) for item in items]:
            done.result()


def phases(args: argparse.Namespace, trace: Path | None, source: Path | None) -> dict[str, Any]:
    """Run the four phases once; the readings, and the snapshots' diff when traced."""
    api = rc.api_client()
    custom = client.CustomObjectsApi(api)
    namespace = rc.new_namespace(api, "bench-memory")
    names = [f"m{i:03d}" for i in range(args.releases)]
    steps = [{"setWeight": 10}, {"pause": {"duration": "10s"}}, {"setWeight": 100}]
    operator = Operator(namespace, trace, source)
    readings: dict[str, dict[str, float]] = {}
    out: dict[str, Any] = {"namespace": namespace, "operator_log": str(operator.log_path)}
    try:
        time.sleep(args.idle)
        readings["idle"] = operator.reading()
        before = operator.snapshot()
        operator.reset_sampled_peak()

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(
                *rc.GATEWAY[:2], namespace, rc.GATEWAY[2], rc.http_route(name, {COMPONENT: "/"})
            )
            body = rc.release(name, "1.0", [COMPONENT], steps, "10s", args.replicas)
            body["spec"]["deletionPolicy"] = "Delete"
            custom.create_namespaced_custom_object(
                rc.GROUP, rc.VERSION, namespace, rc.PLURAL, body
            )

        started = time.monotonic()
        parallel(create, names)
        out["created_s"] = time.monotonic() - started

        def phases_now() -> dict[str, int]:
            listed = custom.list_namespaced_custom_object(
                rc.GROUP, rc.VERSION, namespace, rc.PLURAL
            )
            found: dict[str, int] = {}
            for item in listed["items"]:
                phase = (item.get("status") or {}).get("phase") or "none"
                found[phase] = found.get(phase, 0) + 1
            return found

        def settled() -> bool:
            operator.reading()  # raises if the operator died
            return phases_now().get("Succeeded", 0) == len(names)

        try:
            rc.wait_for(settled, args.timeout, "every release to succeed", interval=2)
        except TimeoutError:
            out["not_settled"] = phases_now()
        out["burst_s"] = time.monotonic() - started
        readings["burst"] = operator.reading()
        time.sleep(args.settle)
        readings["settled"] = operator.reading()
        operator.reset_sampled_peak()

        started = time.monotonic()
        custom.delete_collection_namespaced_custom_object(
            rc.GROUP, rc.VERSION, namespace, rc.PLURAL
        )
        rc.wait_for(
            lambda: not custom.list_namespaced_custom_object(
                rc.GROUP, rc.VERSION, namespace, rc.PLURAL
            )["items"],
            args.timeout,
            "every release to be deleted",
            interval=2,
        )
        custom.delete_collection_namespaced_custom_object(*rc.GATEWAY[:2], namespace,
                                                          rc.GATEWAY[2])
        apps = client.AppsV1Api(api)
        rc.wait_for(
            lambda: not apps.list_namespaced_deployment(namespace).items,
            args.timeout,
            "the releases' Deployments to be deleted",
            interval=2,
        )
        out["deleted_s"] = time.monotonic() - started
        time.sleep(args.after)
        readings["after_delete"] = operator.reading()
        after = operator.snapshot()
        if before is not None and after is not None:
            out["trace"] = diff(before, after)
        out["warnings"] = operator.warnings()
    finally:  # the operator removes the finalizers: it stops once the namespace is gone
        if not rc.delete_namespace(api, namespace, timeout=300):
            print(f"namespace {namespace} is still terminating", file=sys.stderr)
        operator.stop()
    out["readings"] = readings
    return out


def _where(filename: str) -> str:
    for marker in ("site-packages/", "/operator/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def diff(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int = 25
) -> dict[str, Any]:
    """What the traced heap gained between two snapshots, by line and by file."""
    def total(snap: tracemalloc.Snapshot) -> float:
        return sum(s.size for s in snap.statistics("filename")) / 2**20

    by_line = after.compare_to(before, "lineno")
    by_file = after.compare_to(before, "filename")
    return {
        "traced_before_mib": total(before),
        "traced_after_mib": total(after),
        "by_line": [
            {"where": f"{_where(s.traceback[0].filename)}:{s.traceback[0].lineno}",
             "kib": s.size_diff / 1024, "blocks": s.count_diff}
            for s in by_line[:top]
        ],
        "by_file": [
            {"where": _where(s.traceback[0].filename), "kib": s.size_diff / 1024,
             "blocks": s.count_diff}
            for s in by_file[:top]
        ],
        "at_idle_by_file": [
            {"where": _where(s.traceback[0].filename), "kib": s.size / 1024}
            for s in before.statistics("filename")[:top]
        ],
    }


COMPOSITION = [
    ("the interpreter", "pass"),
    ("chatops (its __init__: lazykube when present)", "import chatops"),
    ("pydantic", "import pydantic"),
    ("kubernetes (client, config, watch, stream, utils…)", "import kubernetes"),
    ("aiohttp", "import aiohttp"),
    ("kopf", "import kopf"),
    ("prometheus_client", "import prometheus_client"),
    ("prometheus_api_client + requests", "import prometheus_api_client.prometheus_connect"),
    ("jsonpath_ng", "import jsonpath_ng.ext"),
    ("chatops.api (the models)", "import chatops.api.release, chatops.api.backup, "
     "chatops.api.recovery"),
    ("chatops.cli", "import chatops.cli"),
    ("chatops.release (runner, traffic, metrics)", "import chatops.release.runner"),
    ("chatops.handlers (and what they import)", "import chatops.handlers"),
    ("the rest of `chatops run`'s imports",
     "from chatops.notify import dispatcher; from chatops.adapters import reachability"),
]


def composition(source: Path | None) -> list[dict[str, Any]]:
    """RSS after each part of `chatops run`'s imports, in one fresh interpreter."""
    code = textwrap.dedent(
        f"""
        import json, sys
        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        out = []
        for what, statement in {COMPOSITION!r}:
            modules = len(sys.modules)
            exec(statement)
            out.append({{"part": what, "rss_mib": rss(),
                         "modules": len(sys.modules) - modules}})
        heavy = ("pymongo", "boto3", "botocore", "kubernetes.client.models.v1_pod")
        out.append({{"loaded": {{m: m in sys.modules for m in heavy}},
                     "kubernetes_models": sum(m.startswith("kubernetes.client.models.")
                                              for m in sys.modules)}})
        print(json.dumps(out))
        """
    )
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env)
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"## Memory: {result['releases']} ChatReleases at once (replicas {result['replicas']})",
        "",
        f"operator: {result['source']}; {result['cluster']}",
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, {m['date']}, commit "
        f"{m['commit']}; load average before {result['load_before']}, after "
        f"{result['load_after']}",
        f"burst: created in {result['created_s']:.0f} s, all Succeeded "
        f"{result['burst_s']:.0f} s after the first create; deleted in "
        f"{result['deleted_s']:.0f} s; operator warnings {result['warnings']}",
        "",
        "| moment | VmRSS MiB | VmHWM MiB | RssAnon MiB | RssFile MiB | threads "
        "| largest VmRSS sampled since the last moment |",
        "|---|---|---|---|---|---|---|",
    ]
    for moment, r in result["readings"].items():
        lines.append(
            f"| {moment} | {r['VmRSS']:.1f} | {r['VmHWM']:.1f} | {r['RssAnon']:.1f} | "
            f"{r['RssFile']:.1f} | {r['Threads']:.0f} | {r['sampled_peak_rss']:.1f} |"
        )
    if "not_settled" in result:
        lines.append(f"\nnot all Succeeded in time: {result['not_settled']}")
    return "\n".join(lines)


def trace_table(trace: dict[str, Any]) -> str:
    lines = [
        "",
        f"traced heap (tracemalloc): {trace['traced_before_mib']:.1f} MiB at idle, "
        f"{trace['traced_after_mib']:.1f} MiB after delete + idle",
        "",
        "| grew after the burst, by line | KiB | blocks |",
        "|---|---|---|",
    ]
    lines += [f"| {s['where']} | {s['kib']:+.0f} | {s['blocks']:+d} |" for s in trace["by_line"]]
    lines += ["", "| grew after the burst, by file | KiB | blocks |", "|---|---|---|"]
    lines += [f"| {s['where']} | {s['kib']:+.0f} | {s['blocks']:+d} |" for s in trace["by_file"]]
    lines += ["", "| traced heap at idle, by file | KiB |", "|---|---|"]
    lines += [f"| {s['where']} | {s['kib']:.0f} |" for s in trace["at_idle_by_file"]]
    return "\n".join(lines)


def composition_table(parts: list[dict[str, Any]]) -> str:
    lines = ["", "| `chatops run`'s imports, in order | RSS after, MiB | + MiB | + modules |",
             "|---|---|---|---|"]
    last = 0.0
    for part in parts[:-1]:
        lines.append(f"| {part['part']} | {part['rss_mib']:.1f} | "
                     f"{part['rss_mib'] - last:+.1f} | {part['modules']} |")
        last = part["rss_mib"]
    lines.append(f"\nloaded by the imports: {parts[-1]}")
    return "\n".join(lines)


def summary_table(runs: list[dict[str, Any]]) -> str:
    lines = ["", "| operator | idle VmRSS | burst peak (VmHWM) | settled VmRSS "
             "| after delete + idle VmRSS | imports alone |", "|---|---|---|---|---|---|"]
    for run in runs:
        r = run["readings"]
        lines.append(
            f"| {run['source']} | {r['idle']['VmRSS']:.1f} | {r['burst']['VmHWM']:.1f} | "
            f"{r['settled']['VmRSS']:.1f} | {r['after_delete']['VmRSS']:.1f} | "
            f"{run['composition'][-2]['rss_mib']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=0, help="per release")
    parser.add_argument("--idle", type=float, default=30, help="s after start: the idle reading")
    parser.add_argument("--settle", type=float, default=30, help="s after all Succeeded")
    parser.add_argument("--after", type=float, default=60, help="s idle after the deletion")
    parser.add_argument("--timeout", type=float, default=900, help="s per wait")
    parser.add_argument("--cluster", choices=["private", "shared"], default="private")
    parser.add_argument("--trace", action="store_true",
                        help="also run the phases traced, and diff idle before/after")
    parser.add_argument("--composition", action="store_true",
                        help="only print what the imports add to RSS")
    parser.add_argument("--source", type=Path, action="append", default=[],
                        help="run the operator from this folder (another checkout's "
                        "operator/); repeatable: one after the other")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    machine = rc.machine()
    sources: list[Path | None] = list(args.source) or [None]
    if args.composition:
        for source in sources:
            parts = composition(source)
            print(json.dumps({"benchmark": "memory", "machine": machine,
                              "source": str(source or "operator/"), "composition": parts}))
            print(composition_table(parts))
        return 0
    rc.load_env()
    runs: list[dict[str, Any]] = []
    with rc.cluster(args.cluster) as where:
        rc.install_crds()
        for source in sources:
            result: dict[str, Any] = {
                "benchmark": "memory", "machine": machine, "cluster": where.description,
                "source": str(source or "operator/"), "releases": args.releases,
                "replicas": args.replicas, "load_before": rc.loadavg(),
            }
            result.update(phases(args, None, source))
            result["composition"] = composition(source)
            if args.trace:
                with tempfile.TemporaryDirectory(prefix="chatops-bench-trace-") as folder:
                    traced = phases(args, Path(folder), source)
                result["traced"] = {"readings": traced["readings"], **traced.get("trace", {})}
            result["load_after"] = rc.loadavg()
            runs.append(result)
            print(json.dumps(result, default=str), flush=True)
            print(table(result))
            print(composition_table(result["composition"]))
            if args.trace:
                print(trace_table(result["traced"]))
            print(flush=True)
    print(summary_table(runs))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(runs, out, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
