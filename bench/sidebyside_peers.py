"""The three controllers of the side-by-side benchmark (bench/sidebyside.py), each in its
namespace of one private control plane, with the same canary: one Deployment (one
replica, image `chat-api:<version>`) on an HTTPRoute, 10 → 25 → 50 → 100 with 20 s
pauses, judged by the same error-rate query (sidebyside_stats.error_rate, max 1 %).

Each class knows its controller's objects and how to read, from what the benchmark's
watches saw (`Seen`), when the route carries 10 % to the new version, 100 % to it, and
100 % back on stable. What cannot be evened out is said where it is decided:

- chatops: blue/green Deployments and Services; the canary is the color that is not live.
  Analysis every 5 s, one Fail rolls back.
- Argo Rollouts: a Rollout (its ReplicaSets), a stable and a canary Service whose selectors
  Argo pins to pod-template hashes, weights set by our plugin. Background analysis (an
  AnalysisRun, every 5 s, failureLimit 0) from the first step.
- Flagger: it copies the Deployment to `<name>-primary`, makes the Services and the
  HTTPRoute itself, and promotes by copying the canary's spec onto the primary. One
  analysis per interval, and an interval is a step: 20 s (its minimum is 10 s, and it has
  no pause of its own); threshold 1, so a failed check rolls back on the next tick.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import release_common as rc
from kubernetes import client, watch

ROOT = Path(__file__).resolve().parents[1]
INTERVAL = {"chatops": 5.0, "argo": 5.0, "flagger": 20.0}
STEPS = (10, 25, 50)
PAUSE = "20s"
Objects = dict[tuple[str, str], dict[str, Any]]


def versions() -> dict[str, str]:
    found = {}
    for line in (ROOT / "env" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found[key] = value.strip('"')
    return found


def bin_dir(part: str, version: str) -> Path:
    cache = Path(os.environ.get("CHATOPS_ENV_CACHE", Path.home() / ".cache" / "chatops-env"))
    return cache / f"{part}-{version}" / "bin"


def plugin_dir() -> Path:
    """The plugin's cache directory (its version carries a hash of its source)."""
    v = versions()["ARGO_ROLLOUTS_VERSION"]
    found = sorted(
        Path(bin_dir("argo-gatewayapi-plugin", v)).parent.parent.glob(
            f"argo-gatewayapi-plugin-{v}-*/.done"
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise FileNotFoundError("argo-gatewayapi-plugin is not built: env/build.sh")
    return found[-1].parent / "bin"


class Seen:
    """What watches on one namespace saw of HTTPRoutes, Services and Deployments, and the
    monotonic time a condition on them first held (taken when the event arrived)."""

    KINDS = ("httproutes", "services", "deployments")

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.objects: Objects = {}
        self.routes: dict[str, list[tuple[float, dict[str, int]]]] = {}
        """Every HTTPRoute's backend weights, each time they changed (the scale run's step
        lags are read from it)."""
        self._lock = threading.Lock()
        self._waiters: list[Waiter] = []
        custom, core, apps = (
            client.CustomObjectsApi(api),
            client.CoreV1Api(api),
            client.AppsV1Api(api),
        )
        listers: dict[str, Callable[..., Any]] = {
            "httproutes": lambda **kw: custom.list_namespaced_custom_object(
                *rc.GATEWAY[:2], namespace, rc.GATEWAY[2], **kw
            ),
            "services": lambda **kw: core.list_namespaced_service(namespace, **kw),
            "deployments": lambda **kw: apps.list_namespaced_deployment(namespace, **kw),
        }
        for kind, lister in listers.items():
            threading.Thread(target=self._loop, args=(kind, lister), daemon=True).start()

    def _loop(self, kind: str, lister: Callable[..., Any]) -> None:
        while True:
            with contextlib.suppress(Exception):  # an expired or broken watch re-lists
                listing = json.loads(lister(_preload_content=False).data)
                self._update(kind, {o["metadata"]["name"]: o for o in listing["items"]}, True)
                version = listing["metadata"]["resourceVersion"]
                for event in watch.Watch().stream(
                    lister, resource_version=version, timeout_seconds=120
                ):
                    obj = event["raw_object"]
                    gone = event["type"] == "DELETED"
                    self._update(kind, {obj["metadata"]["name"]: None if gone else obj}, False)
            time.sleep(0.5)

    def _update(self, kind: str, objs: dict[str, Any], replace: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if replace:
                for key in [k for k in self.objects if k[0] == kind]:
                    del self.objects[key]
            for name, obj in objs.items():
                if obj is None:
                    self.objects.pop((kind, name), None)
                else:
                    self.objects[(kind, name)] = obj
                    if kind == "httproutes":
                        self._record_route(name, now)
            self._check(now, None if replace else set(objs))

    def _record_route(self, name: str, now: float) -> None:
        with contextlib.suppress(KeyError, TypeError):
            w = weights(self.objects, name)
            history = self.routes.setdefault(name, [])
            if not history or history[-1][1] != w:
                history.append((now, w))

    def _check(self, now: float, names: set[str] | None = None) -> None:
        """Try the waiters not yet met: all of them, or those about objects `names`."""
        for waiter in self._waiters:
            if waiter.at is None and waiter.concerns(names):
                with contextlib.suppress(KeyError, TypeError, IndexError):
                    if waiter.predicate(self.objects):
                        waiter.at = now
                        waiter.done.set()

    def watch_for(self, predicate: Callable[[Objects], bool], about: str = "") -> Waiter:
        """Start watching for `predicate` (until `forget`): its Waiter tells when it first
        held. `about`: a release's name, when the predicate reads only objects named after
        it, so that other objects' events skip it (200 releases make many events)."""
        waiter = Waiter(predicate, about)
        with self._lock:
            self._waiters.append(waiter)
            self._check(time.monotonic())
        return waiter

    def forget(self, waiters: list[Waiter]) -> None:
        with self._lock:
            self._waiters = [w for w in self._waiters if w not in waiters]

    def expect(self, predicate: Callable[[Objects], bool]) -> Callable[[float], float | None]:
        """Start watching for `predicate`; call the result with a timeout to get the time
        it first held (None: it did not in time)."""
        waiter = self.watch_for(predicate)

        def wait(timeout: float) -> float | None:
            waiter.done.wait(timeout)
            self.forget([waiter])
            return waiter.at

        return wait

    def history(self, route: str) -> list[tuple[float, dict[str, int]]]:
        with self._lock:
            return list(self.routes.get(route, []))

    def clear_history(self) -> None:
        with self._lock:
            self.routes.clear()


@dataclass(eq=False)
class Waiter:
    """A condition on what a Seen saw, and the monotonic time it first held."""

    predicate: Callable[[Objects], bool]
    about: str = ""
    at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def concerns(self, names: set[str] | None) -> bool:
        if not self.about or names is None:
            return True
        return any(n == self.about or n.startswith(f"{self.about}-") for n in names)


def weights(objects: Objects, route: str) -> dict[str, int]:
    return {
        ref["name"]: ref.get("weight", 1)
        for rule in objects[("httproutes", route)]["spec"]["rules"]
        for ref in rule["backendRefs"]
    }


def image_of(template: dict[str, Any]) -> str:
    return str(template["spec"]["containers"][0]["image"])


def container(version: str) -> dict[str, Any]:
    return {"name": "api", "image": f"chat-api:{version}", "ports": [{"containerPort": 8080}]}


class Process:
    """A controller's process; CPU and memory are its whole tree's (Argo's plugin runs as
    its child)."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str], cwd: str) -> None:
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd
            )
        self.pid = self.proc.pid
        self.log = log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def tree(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found += children
        todo += children
    return found


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += rc.cpu_seconds(p)
    return total


def tree_memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB, summed over the tree."""
    rss = hwm = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key == "VmRSS":
                    rss += int(rest.split()[0]) / 1024
                elif key == "VmHWM":
                    hwm += int(rest.split()[0]) / 1024
    return rss, hwm


class Peer:
    """What each controller provides to the benchmark."""

    name = ""
    streams: tuple[str, ...] = ()  # Service name suffixes that get steady traffic

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.custom = client.CustomObjectsApi(api)
        self.seen = Seen(api, namespace)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sidebyside-{self.name}-"))
        self.pid = 0
        self.prometheus = PrometheusCounter(os.environ["PROMETHEUS_URL"])

    def create(self, name: str, version: str) -> None:
        raise NotImplementedError

    def ready(self, name: str) -> bool:
        raise NotImplementedError

    def prepare(self, name: str) -> None:
        """Note what is live before a change (which backend is stable)."""

    def canary_service(self, name: str) -> str:
        """The route backend whose weight is the canary's (after `prepare`)."""
        return f"{name}-canary"

    def change(self, name: str, version: str) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        """Delete a run's objects (what the controller made is owned by them)."""
        raise NotImplementedError

    def at_ten(self, name: str) -> Callable[[Objects], bool]:
        raise NotImplementedError

    def full(self, name: str, version: str) -> Callable[[Objects], bool]:
        raise NotImplementedError

    def back(self, name: str) -> Callable[[Objects], bool]:
        raise NotImplementedError

    def query(self, name: str) -> str:
        """The controller's own error-rate query for the canary now in progress."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def in_process_requests(self) -> int | None:
        """API requests counted inside the controller's process so far (chatops only)."""
        return None

    def alive(self) -> bool:
        raise NotImplementedError

    def log_tail(self) -> str:
        raise NotImplementedError

    def _route(self, name: str, stable: str, canary: str) -> None:
        route = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {
                "parentRefs": [{"name": "chat-gateway"}],
                "rules": [
                    {
                        "backendRefs": [
                            {"name": stable, "port": 8080, "weight": 100},
                            {"name": canary, "port": 8080, "weight": 0},
                        ]
                    }
                ],
            },
        }
        self.custom.create_namespaced_custom_object(
            *rc.GATEWAY[:2], self.namespace, rc.GATEWAY[2], route
        )

    def _delete_route(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            *rc.GATEWAY[:2], self.namespace, rc.GATEWAY[2], name
        )

    def apply(self, manifest: dict[str, Any]) -> None:
        subprocess.run(
            ["kubectl", "apply", "--server-side", "-n", self.namespace, "-f", "-"],
            input=json.dumps(manifest),
            text=True,
            check=True,
            capture_output=True,
        )


def _stable_back(route: str, stable: str, canary: str) -> Callable[[Objects], bool]:
    def check(objects: Objects) -> bool:
        w = weights(objects, route)
        return w[stable] == 100 and w[canary] == 0

    return check


def selector(objects: Objects, service: str) -> dict[str, str]:
    return dict(objects[("services", service)]["spec"].get("selector") or {})


def wait_status(peer: Peer, check: Callable[[], bool], timeout: float, what: str) -> None:
    rc.wait_for(lambda: check() or (not peer.alive() and _died(peer)), timeout, what)


def _died(peer: Peer) -> bool:
    raise RuntimeError(f"{peer.name} exited:\n{peer.log_tail()}")


class PrometheusCounter:
    """A pass-through proxy in front of Prometheus for one controller, which counts its
    queries (Prometheus' own request counter cannot tell clients apart). It adds a local
    hop of about a millisecond to each query, the same for all three."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import urllib.error
        import urllib.request

        self.times: list[float] = []
        counter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else None
                if self.path.startswith("/api/v1/query"):
                    counter.times.append(time.time())
                request = urllib.request.Request(
                    upstream + self.path,
                    data=body,
                    method=self.command,
                    # plain answers: the proxy passes bodies on, not encodings
                    headers={
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("host", "accept-encoding")
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as reply:
                        status, headers, data = reply.status, reply.headers, reply.read()
                except urllib.error.HTTPError as err:
                    status, headers, data = err.code, err.headers, err.read()
                self.send_response(status)
                for key in ("Content-Type",):
                    if headers.get(key):
                        self.send_header(key, headers[key])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, start: float, end: float) -> int:
        return sum(1 for t in self.times if start <= t <= end)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
