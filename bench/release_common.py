"""What both ChatRelease benchmarks need: the local environment, an operator process of
their own watching only their namespace, the objects of a release (HTTPRoute,
ChatRelease), its versions' behaviour and traffic in the chat app simulator
(env/chatapp.py), and the machine the numbers came from.

The benchmarks share the local environment with e2e tests that run operators of their
own, cluster-wide. Such an operator also acts on the benchmark's releases, which would
change what is measured, so `ForeignOperators` records whether one ran meanwhile and the
results say so.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / ".chatops-env" / "env"
GROUP, VERSION, PLURAL = "chatops.dev", "v1alpha1", "chatreleases"
GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVICES = "10.96.0.0/16"  # the private cluster's Service range


# -- environment ------------------------------------------------------------------------


def load_env() -> dict[str, str]:
    """The local environment's variables (`make env-up` writes them), also exported to
    this process so kubectl and the operator child find the cluster."""
    if not ENV_FILE.exists():
        sys.exit(f"{ENV_FILE} is missing: run `make env-up` first")
    env: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        if "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = shlex.split(value)[0] if value else ""
    os.environ.update(env)
    os.environ["PATH"] = f"{env.get('CHATOPS_TOOLS_PATH', '')}{os.pathsep}{os.environ['PATH']}"
    return env


@dataclass(frozen=True)
class Cluster:
    """The Kubernetes a benchmark runs against."""

    description: str
    state: Path | None = None
    """The private control plane's folder: its processes' command lines name it."""

    def control_plane_cpu(self) -> float:
        """CPU seconds so far of the private control plane's processes (API server, etcd,
        controller manager, scheduler, kwok); 0 for the shared cluster, which is not ours
        alone to measure."""
        if self.state is None:
            return 0.0
        total = 0.0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and str(self.state) in " ".join(_cmdline(int(entry.name))):
                with contextlib.suppress(OSError):
                    total += cpu_seconds(int(entry.name))
        return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat: the
    share of the machine others used during a phase is read from two of these."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


@contextlib.contextmanager
def cluster(mode: str, nodes: int = 3) -> Iterator[Cluster]:
    """The Kubernetes the benchmark runs against, as `mode` says.

    `shared`: the local environment's cluster, as the e2e tests use it. Any cluster-wide
    operator of another session (a test's, or the one `make demo` leaves running) then
    acts on the benchmark's releases too, and 200 releases slow everyone's tests.

    `private` (the default of both benchmarks): a kwok control plane of the benchmark's
    own, started with the environment's own code (env/localenv.py) and binaries, and
    deleted afterwards. Only our operator sees its objects, and the API server counts
    only our requests. It has its own network namespace, chat app simulator and
    Prometheus too (they watch one cluster each), started with the same code.
    """
    if mode == "shared":
        yield Cluster(f"the local environment's cluster ({os.environ['KUBECONFIG']})")
        return
    sys.path.insert(0, str(ROOT / "env"))
    import localenv
    import netns

    localenv.STATE = Path(tempfile.mkdtemp(prefix="chatops-bench-cluster-"))
    localenv.CLUSTER = f"bench-{uuid.uuid4().hex[:6]}"
    localenv.NODES = nodes
    # kube-apiserver's default Service range, 10.0.0.0/24, holds 250 ClusterIPs, and every
    # component of a release has three Services (blue, green, stable): 200 releases need
    # a bigger range. localenv has no flag for it, so its kwokctl call gets one more arg.
    create = localenv.kwokctl

    def kwokctl(*args: str) -> None:
        if args[:2] == ("create", "cluster"):
            args = (*args, "--extra-args", f"kube-apiserver=service-cluster-ip-range={SERVICES}")
        create(*args)

    localenv.kwokctl = kwokctl
    localenv.NETNS = f"chatops-{localenv.CLUSTER}"
    saved = {k: os.environ[k] for k in ("KUBECONFIG", "CHATAPP_URL", "PROMETHEUS_URL")}
    started = time.monotonic()
    try:
        os.environ["KUBECONFIG"] = kubeconfig = localenv.start_cluster()
        localenv.start_netns(kubeconfig)
        os.environ["CHATAPP_URL"] = localenv.start_chatapp(kubeconfig)
        os.environ["PROMETHEUS_URL"] = localenv.start_prometheus(kubeconfig)
        took = time.monotonic() - started
        yield Cluster(
            f"a private kwok control plane, {nodes} fake nodes (started in {took:.0f} s)",
            localenv.STATE,
        )
    finally:
        os.environ.update(saved)
        for name in ("prometheus", "forward-prometheus", "chatapp", "forward-apiserver"):
            localenv.stop(name)
        localenv.stop_cluster()
        netns.delete(localenv.NETNS)
        shutil.rmtree(localenv.STATE, ignore_errors=True)


def install_crds() -> None:
    """The checkout's CRDs, as the e2e tests install them, so a fresh environment works."""
    kubectl = ["kubectl", "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")]
    wait_for(functools.partial(_succeeds, kubectl), 60, "the CRDs to apply")
    for plural in ("chatreleases", "chatbackups", "chatrecoveries"):
        crd = f"crd/{plural}.{GROUP}"
        wait = ["kubectl", "wait", "--for=condition=Established", crd, "--timeout=10s"]
        wait_for(functools.partial(_succeeds, wait), 60, f"{crd} to be Established")
        # Established is not yet servable: a list right after can still answer 429
        # "storage is (re)initializing", which the operator would log as a failed request.
        wait_for(functools.partial(_served, plural), 30, f"{plural} to be served")


def _served(plural: str) -> bool:
    return _succeeds(["kubectl", "get", plural, "-A"])


def _succeeds(argv: list[str]) -> bool:
    """Whether a command succeeds; a young API server refuses some calls for a while."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{' '.join(argv[:3])}: {done.stderr.strip()[:200]}; retrying", file=sys.stderr)
    return done.returncode == 0


def api_client() -> client.ApiClient:
    """A client with a connection pool big enough for the benchmark's parallel setup."""
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=os.environ["KUBECONFIG"], client_configuration=configuration
    )
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def machine() -> dict[str, str]:
    """The machine and the code the numbers came from."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor() or "unknown",
    )
    kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "operator"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "ram": f"{kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit.stdout.strip() + (" + uncommitted changes in operator/" if dirty else ""),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- operator processes -----------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def cluster_wide_operators(exclude: Iterable[int] = ()) -> list[int]:
    """Pids of `chatops run` processes watching every namespace (no `--namespace`)."""
    skip = {os.getpid(), *exclude}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        argv = _cmdline(int(entry.name))
        joined = " ".join(argv)
        runs = "chatops.cli run" in joined or (
            any(a.endswith("/chatops") for a in argv[:2]) and "run" in argv
        )
        if runs and "--namespace" not in argv and "-n" not in argv:
            found.append(int(entry.name))
    return found


@dataclass
class ForeignOperators:
    """Samples, once a second, whether an operator of someone else's could act on our
    objects; `seen` is how many samples found one."""

    own: int = 0
    enabled: bool = True  # False on a private cluster, which no other operator can reach
    samples: int = 0
    seen: int = 0
    pids: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> ForeignOperators:
        if self.enabled:
            threading.Thread(target=self._loop, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            found = cluster_wide_operators(exclude=[self.own])
            self.samples += 1
            if found:
                self.seen += 1
                self.pids.update(found)

    def describe(self) -> str:
        if not self.seen:
            return "none"
        share = 100 * self.seen / max(self.samples, 1)
        return f"cluster-wide operators of other sessions ran {share:.0f}% of the time"


def wait_alone(timeout: float) -> None:
    """Wait up to `timeout` s for other sessions' cluster-wide operators to end."""
    deadline = time.monotonic() + timeout
    while (found := cluster_wide_operators()) and time.monotonic() < deadline:
        print(f"waiting for cluster-wide operators {found} to end", file=sys.stderr)
        time.sleep(5)


def sigterm_as_interrupt() -> None:
    """SIGTERM as Ctrl-C, so that `kill` also tears the private control plane down (a
    background job started by a script ignores SIGINT)."""

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)


class Operator:
    """`chatops run --namespace NS` in a child process; /proc tells its memory and CPU.
    `wrapper` "counted" (the default) runs it under counted_operator.py, which counts
    its API and Prometheus requests and its looks (at a cost in CPU and memory of its
    own); "traced" under traced_operator.py (tracemalloc, `env` says where); None
    plain, as a user runs it."""

    def __init__(
        self,
        namespace: str,
        source: Path | None = None,
        wrapper: str | None = "counted",
        env: dict[str, str] | None = None,
    ) -> None:
        self.counts_path = Path(tempfile.mkdtemp(prefix="chatops-bench-")) / "counts.json"
        self.log_path = self.counts_path.with_name("operator.log")
        env = dict(os.environ, **(env or {}))
        if wrapper == "counted":
            env["CHATOPS_BENCH_COUNTS"] = str(self.counts_path)
        if source is not None:  # another checkout's operator, e.g. to compare commits
            env["PYTHONPATH"] = str(source)
        here = Path(__file__).resolve().parent
        argv = (
            [sys.executable, "-m", "chatops.cli"]
            if wrapper is None
            else [sys.executable, str(here / f"{wrapper}_operator.py")]
        )
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                # the sweep at the environment's scrape interval, as the README advises
                [*argv, "run", "--namespace", namespace, "--sweep-interval", "1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory_mib(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MiB: now and the peak so far."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def counts(self) -> dict[str, Any]:
        """The last counts the process wrote (half a second old at most), and every look
        so far as (waited for a thread, ran) in seconds."""
        found: dict[str, Any] = {"requests": {}, "threads_peak": 0}  # nothing written yet
        with contextlib.suppress(FileNotFoundError):
            found = json.loads(self.counts_path.read_text())  # replaced atomically
        looks = []
        with contextlib.suppress(OSError):
            for line in Path(f"{self.counts_path}.looks").read_text().splitlines():
                parts = line.split()
                if len(parts) == 2:  # the last line may be half written
                    looks.append((float(parts[0]), float(parts[1])))
        found["looks"] = looks
        return found

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def warnings(self) -> int:
        """Lines the operator logged at WARNING or above: a look that failed."""
        text = self.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if "[WARNING" in line or "[ERROR" in line)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# -- the objects of a release ----------------------------------------------------------


def new_namespace(api: client.ApiClient, prefix: str) -> str:
    """A namespace of our own, once it has the default ServiceAccount pods need."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"chatops.dev/bench": "true"})
        )
    )
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
        60,
        f"the default ServiceAccount of {name}",
    )
    return name


def delete_namespace(api: client.ApiClient, namespace: str, timeout: float = 180) -> bool:
    """Delete and wait until it is gone (our operator must still run: it removes the
    finalizers of the ChatReleases)."""
    core = client.CoreV1Api(api)
    try:
        core.delete_namespace(namespace, propagation_policy="Background")
    except client.ApiException as err:
        if err.status != 404:
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except client.ApiException as err:
            if err.status == 404:
                return True
            raise
        time.sleep(1)
    return False


def _chatapp(method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
    request = urllib.request.Request(
        f"{os.environ['CHATAPP_URL']}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        data: bytes = reply.read()
        return data


class ChatApp:
    """Our namespace in the chat app simulator: how our versions behave in their pods,
    and steady traffic (50 requests/s unless told otherwise, and WebSockets) to the
    Services the analysis measures. Forgotten on leaving."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def play(self, image: str, **behaviour: Any) -> None:
        """How the pods running `image` behave: errorRate, latency, wsSuccess, healthy."""
        _chatapp("PUT", f"/versions/{image}?namespace={self.namespace}", behaviour)

    def traffic(self, service: str, rps: float = 50, ws_rate: float = 2) -> None:
        body = {"rps": rps, "wsRate": min(ws_rate, rps)}
        _chatapp("PUT", f"/traffic/{self.namespace}/{service}", body)

    def forget(self, service: str) -> None:
        with contextlib.suppress(OSError):  # a stream left behind only costs a few ticks
            _chatapp("DELETE", f"/traffic/{self.namespace}/{service}")

    def __enter__(self) -> ChatApp:
        return self

    def __exit__(self, *_: object) -> None:
        for path in (f"/traffic/{self.namespace}", f"/versions?namespace={self.namespace}"):
            with contextlib.suppress(OSError):
                _chatapp("DELETE", path)


def http_route(name: str, components: dict[str, str]) -> dict[str, Any]:
    """An HTTPRoute with one rule per component (component → path prefix), blue at 100."""
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "backendRefs": [
                {"name": f"{name}-{component}-blue", "port": 8080, "weight": 100},
                {"name": f"{name}-{component}-green", "port": 8080, "weight": 0},
            ],
        }
        for component, path in components.items()
    ]
    return {
        "apiVersion": f"{GATEWAY[0]}/{GATEWAY[1]}",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "chat-gateway"}], "rules": rules},
    }


def release(
    name: str,
    version: str,
    components: Iterable[str],
    steps: list[dict[str, Any]],
    interval: str,
    replicas: int,
    metrics: list[dict[str, Any]] | None = None,
    scale_down_delay: int = 5,
) -> dict[str, Any]:
    """A canary ChatRelease on Gateway API (HTTPRoute `name`), health-checked on its
    pods' /api/health (through the simulator's view of the Service); `metrics` None keeps
    the operator's default analysis (the runbook's three checks over [1m] windows)."""
    health = f"{os.environ['CHATAPP_URL']}/services/{{{{namespace}}}}/{{{{service}}}}"
    analysis: dict[str, Any] = {
        "interval": interval,
        "prometheus": {"address": os.environ["PROMETHEUS_URL"]},
    }
    if metrics is not None:
        analysis["metrics"] = metrics
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ChatRelease",
        "metadata": {"name": name},
        "spec": {
            "components": [
                {
                    "name": c,
                    "replicas": replicas,
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": c,
                                    "image": f"chat-{c}:{version}",
                                    "ports": [{"containerPort": 8080}],
                                }
                            ]
                        }
                    },
                    "service": {"port": 8080},
                    "healthCheck": {"url": f"{health}/proxy/api/health"},
                }
                for c in components
            ],
            "strategy": {
                "canary": {
                    "steps": steps,
                    "scaleDownDelaySeconds": scale_down_delay,
                    "abortScaleDownDelaySeconds": scale_down_delay,
                }
            },
            "trafficRouting": {"gatewayAPI": {"httpRoute": name}},
            "analysis": analysis,
        },
    }


def set_version(custom: client.CustomObjectsApi, namespace: str, name: str, version: str) -> None:
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    components = body["spec"]["components"]
    for c in components:
        c["template"]["spec"]["containers"][0]["image"] = f"chat-{c['name']}:{version}"
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"components": components}}
    )


def route_weights(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, int]:
    """Service → weight, as the HTTPRoute holds them."""
    route = custom.get_namespaced_custom_object(*GATEWAY[:2], namespace, GATEWAY[2], name)
    return {
        ref["name"]: ref.get("weight", 1)
        for rule in route["spec"]["rules"]
        for ref in rule["backendRefs"]
    }


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- numbers ------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }
