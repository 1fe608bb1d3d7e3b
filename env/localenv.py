"""The local environment: a real Kubernetes (kwok's fake nodes), FerretDB, an S3 server,
the chat app's pods served on their own IPs by a simulator, and Prometheus scraping them,
without Docker.

    python env/localenv.py up       build what is missing, start what is not given
    python env/localenv.py down     stop everything `up` started
    python env/localenv.py status   print what runs where
    python env/localenv.py session CMD...   run commands in turn with it up (see `session`)

`up` writes one env file, `.chatops-env/env`, with KUBECONFIG, MONGODB_URI,
S3_ENDPOINT_URL, PROMETHEUS_URL, CHATAPP_URL, REDIS_URL (the chat app's Redis, with a
password) and CHATOPS_NETNS, which tests, the demo and the operator read. A part
already given in the environment (say KUBECONFIG of a kind cluster) is used as it is and
never started or stopped here.

The pods' network: kwok gives pods IPs from netns.POD_CIDR; that range lives on the `lo`
of a network namespace of this checkout's own (env/netns.py), where the simulator
(env/chatapp.py) serves every Ready pod and where Prometheus runs, discovering the pods
through the API server (forwarded into the namespace on the same port, so one kubeconfig
serves both sides) and scraping them at their IPs. Prometheus' port is forwarded back to
the host's loopback (PROMETHEUS_URL). Nothing on the host connects to a pod address.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netns

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("CHATOPS_ENV_STATE", ROOT / ".chatops-env"))
ENV_FILE = STATE / "env"
CLUSTER = "chatops"
NODES = 3
GIVEN_KEYS = (
    "KUBECONFIG", "MONGODB_URI", "S3_ENDPOINT_URL", "PROMETHEUS_URL",
    "GATEWAY_URL", "GATEWAY_NAME", "GATEWAY_NAMESPACE", "REDIS_URL",
)
NETNS = netns.name_for(ROOT)
# FerretDB's replica set name (`hello.setName`) and its oplog: a capped `local.oplog.rs`
# small enough that a test rolls it over in seconds (written to the env file as
# MONGODB_OPLOG_MAX_DOCS / MONGODB_OPLOG_SIZE_BYTES, so tests read them, not these).
REPL_SET = "rs0"
OPLOG_MAX_DOCS = 10_000
OPLOG_SIZE_BYTES = 64 * 1024 * 1024
# kwok Stages of the fake nodes: kwok's defaults plus the image tag `never-ready` (never
# Ready) and the Job pod annotation `chatops.dev/test-outcome: fail` (pod Failed).
KWOK_STAGES = ROOT / "env" / "kwok-stages.yaml"


def log(message: str) -> None:
    print(f"[env {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- versions and binaries ------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {}
    for line in (ROOT / "env" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip('"')
    return out


def cache() -> Path:
    return Path(os.environ.get("CHATOPS_ENV_CACHE", Path.home() / ".cache" / "chatops-env"))


def bin_dir(part: str) -> Path:
    v = versions()
    version = {
        "k8s": v["K8S_VERSION"],
        "etcd": v["ETCD_VERSION"],
        "kwok": v["KWOK_VERSION"],
        "ferretdb": v["FERRETDB_VERSION"],
        "mongotools": v["MONGO_TOOLS_VERSION"],
        "bsondump": v["MONGO_TOOLS_VERSION"],
        "helm": v["HELM_VERSION"],
        "redis": v["MINIREDIS_VERSION"],
        "gatewayapi": v["GATEWAY_API_VERSION"],
        "prometheus": v["PROMETHEUS_VERSION"],
        "promtool": v["PROMETHEUS_VERSION"],
        "traefik": v["TRAEFIK_VERSION"],
    }[part]
    return cache() / f"{part}-{version}" / "bin"


def tool_path() -> str:
    """PATH entries for the built tools: kubectl, kwokctl, mongodump, helm, …"""
    parts = ("k8s", "kwok", "ferretdb", "mongotools", "bsondump", "helm", "promtool")
    return os.pathsep.join(str(bin_dir(p)) for p in parts)


def build(parts: list[str]) -> None:
    if parts:
        subprocess.run([str(ROOT / "env" / "build.sh"), *parts], check=True)


# -- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    """Start a daemon in its own session, logging to .chatops-env/logs/<name>.log."""
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    (STATE / "pids").mkdir(parents=True, exist_ok=True)
    with open(STATE / "logs" / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=STATE,
        )
    (STATE / "pids" / f"{name}.pid").write_text(str(proc.pid))
    (STATE / "pids" / f"{name}.cmd").write_text(shlex.join(argv))


def alive(name: str) -> bool:
    pid_file = STATE / "pids" / f"{name}.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def stop(name: str) -> None:
    pid_file = STATE / "pids" / f"{name}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    pid_file.unlink()


def restart(name: str) -> None:
    """Start a stopped daemon again with the command it was started with."""
    argv = shlex.split((STATE / "pids" / f"{name}.cmd").read_text())
    spawn(name, argv)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    sys.exit(f"{what} did not become ready in {timeout:.0f} s (logs: {STATE / 'logs'})")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return 200 <= reply.status < 300


def tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


# -- the parts ------------------------------------------------------------------------


def kubectl(*args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir("k8s") / "kubectl"), "--kubeconfig", str(STATE / "kubeconfig"), *args],
        check=check,
        text=True,
        capture_output=True,
        **kw,  # type: ignore[call-overload]
    )


def established(crd: str) -> bool:
    """Whether the CRD `crd` serves its resource: condition Established is True. Asks
    the cluster of `KUBECONFIG` when it is set (a given cluster, or after `up`)."""
    kubeconfig = os.environ.get("KUBECONFIG", str(STATE / "kubeconfig"))
    found = subprocess.run(
        [
            str(bin_dir("k8s") / "kubectl"),
            "--kubeconfig",
            kubeconfig,
            "get",
            "crd",
            crd,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Established')].status}",
        ],
        text=True,
        capture_output=True,
        check=False,
    )
    return found.returncode == 0 and found.stdout.strip() == "True"


def wait_established(*crds: str, timeout: float = 120) -> None:
    """Wait until every CRD is Established. Not `kubectl wait`: right after an apply the
    CRD has no `status.conditions` yet (or is not visible yet), and `kubectl wait` then
    fails at once (`.status.conditions accessor error`, `NotFound`) instead of waiting;
    this polls through both until the condition is True or `timeout` passes."""
    for crd in crds:
        wait_until(f"CRD {crd} Established", lambda crd=crd: established(crd), timeout)


def kwok_env() -> dict[str, str]:
    return {
        **os.environ,
        "KWOK_WORKDIR": str(STATE / "kwok"),
        "PATH": f"{tool_path()}{os.pathsep}{os.environ['PATH']}",
    }


def kwokctl(*args: str) -> None:
    subprocess.run(
        [str(bin_dir("kwok") / "kwokctl"), "--name", CLUSTER, *args],
        check=True,
        env=kwok_env(),
    )


def check_pod_range() -> None:
    """Every node's podCIDR inside netns.POD_CIDR: pods take their IPs from their node's
    podCIDR, and only that range is local in the namespace."""
    found = kubectl("get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDRs}").stdout
    cidrs = [c for item in found.split() for c in json.loads(item)]
    pods = ipaddress.ip_network(netns.POD_CIDR)
    outside = [
        c for c in cidrs
        if ipaddress.ip_network(c).version == 4 and not ipaddress.ip_network(c).subnet_of(pods)
    ]
    if outside or not cidrs:
        sys.exit(f"nodes' podCIDRs {cidrs} are not inside the pods' range {netns.POD_CIDR}")


def start_cluster() -> str:
    k8s, kwok = bin_dir("k8s"), bin_dir("kwok")
    log("starting Kubernetes (kwokctl, binary runtime, local binaries, env/kwok-stages.yaml;"
        " no leader election)")
    flags = {
        "--runtime": "binary",
        "--kube-apiserver-port": str(free_port()),
        # kwokctl's own pick counts down from 32765 and checks only that a port is free
        # now: two checkouts starting at once took the same one, and the second's API
        # server then stored its objects in the first one's etcd (a shared cluster).
        "--etcd-port": str(free_port()),
        "--kube-apiserver-binary": str(k8s / "kube-apiserver"),
        "--kube-controller-manager-binary": str(k8s / "kube-controller-manager"),
        "--kube-scheduler-binary": str(k8s / "kube-scheduler"),
        "--kwok-controller-binary": str(kwok / "kwok"),
        "--etcd-binary": str(bin_dir("etcd") / "etcd"),
        "--kubeconfig": str(STATE / "kubeconfig"),
        "--timeout": "3m",
        # With Stage objects in its config kwokctl uses only those: the file carries the
        # defaults too.
        "--config": str(KWOK_STAGES),
    }
    kwokctl("create", "cluster", *(arg for pair in flags.items() for arg in pair))
    revive_controller_manager()
    kwokctl("scale", "node", "--replicas", str(NODES))
    log(f"{NODES} fake nodes; installing the Gateway API CRDs")
    kubectl(
        "apply", "--server-side", "-f", str(bin_dir("gatewayapi") / "gateway-api-standard.yaml")
    )
    wait_established("httproutes.gateway.networking.k8s.io")
    check_pod_range()
    wait_until("default ServiceAccount", lambda: kubectl("get", "sa", "default").returncode == 0)
    wait_until(
        f"{NODES} Ready nodes",
        lambda: (
            kubectl(
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
            )
            .stdout.split()
            .count("True")
            >= NODES
        ),
    )
    return str(STATE / "kubeconfig")


def revive_controller_manager(timeout: float = 120) -> None:
    """kube-controller-manager gives up when the API server is not healthy within its
    first ~10 s, which a loaded machine's API server (RBAC bootstrap) can miss; kwokctl
    does not start it again. Once the API server is ready, start it again as kwokctl
    did (its binary and args from the cluster's kwok.yaml, its pid where kwokctl keeps
    it, so `kwokctl delete cluster` stops it)."""
    cluster = STATE / "kwok" / "clusters" / CLUSTER
    pid_file = cluster / "pids" / "kube-controller-manager.pid"
    wait_until(
        "the API server ready", lambda: kubectl("get", "--raw", "/readyz").returncode == 0, timeout
    )
    time.sleep(1)  # a controller manager that is starting now has had the ready server
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
        return
    except (ProcessLookupError, ValueError, FileNotFoundError):
        pass
    import yaml

    docs = yaml.safe_load_all((cluster / "kwok.yaml").read_text())
    components = next(d for d in docs if d and d.get("kind") == "KwokctlConfiguration")
    component = next(
        c for c in components["components"] if c["name"] == "kube-controller-manager"
    )
    log("kube-controller-manager gave up on a slow API server: starting it again")
    # Its port may be another checkout's by now (kwokctl picked it free, then it was).
    args = [
        f"--secure-port={free_port()}" if a.startswith("--secure-port=") else a
        for a in component["args"]
    ]
    with open(cluster / "logs" / "kube-controller-manager.log", "ab") as out:
        proc = subprocess.Popen(
            [component["binary"], *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=component.get("workDir", cluster),
        )
    pid_file.write_text(str(proc.pid))


def stop_cluster() -> None:
    if (STATE / "kwok").exists():
        subprocess.run(
            [str(bin_dir("kwok") / "kwokctl"), "--name", CLUSTER, "delete", "cluster"],
            env=kwok_env(),
            check=False,
            capture_output=True,
        )


def start_ferretdb(name: str = "ferretdb") -> str:
    """A FerretDB on its own SQLite files (`.chatops-env/<name>/`), its replica set and
    oplog created; its URI. `down` stops every one, by name."""
    port = free_port()
    data = STATE / name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    spawn(
        name,
        [
            str(bin_dir("ferretdb") / "ferretdb"),
            "--handler=sqlite",
            f"--sqlite-url=file:{data}/",
            f"--state-dir={data}",
            f"--listen-addr=127.0.0.1:{port}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
            f"--repl-set-name={REPL_SET}",
            # Capped collections are trimmed by a background sweep: every second, so the
            # oplog rolls over as soon as it passes its size (FerretDB's default is 1 min).
            "--test-capped-cleanup-interval=1s",
        ],
    )
    wait_until(name, lambda: tcp_open(port))
    uri = f"mongodb://127.0.0.1:{port}/"
    create_oplog(uri)
    return uri


def create_oplog(uri: str) -> None:
    """`local.oplog.rs` as a capped collection: FerretDB records every insert, update and
    delete into it once it exists (a real replica set has its own, never touched here)."""
    import datetime

    from bson.timestamp import Timestamp  # the venv's pymongo; the build needs none of it
    from pymongo import MongoClient

    with MongoClient(uri, directConnection=True, serverSelectionTimeoutMS=10_000) as client:
        local = client["local"]
        if "oplog.rs" not in local.list_collection_names():
            local.create_collection(
                "oplog.rs", capped=True, size=OPLOG_SIZE_BYTES, max=OPLOG_MAX_DOCS
            )
            # A replica set's oplog starts with a no-op, never empty: readers always
            # have a position to start from (FerretDB's own entries come after it).
            now = datetime.datetime.now(datetime.UTC)
            local["oplog.rs"].insert_one({
                "ts": Timestamp(int(now.timestamp()), 1), "t": 1, "v": 2, "op": "n",
                "ns": "", "o": {"msg": "initiating set"}, "wall": now,
            })
        hello = client.admin.command("hello")
    if hello.get("setName") != REPL_SET:
        sys.exit(f"FerretDB does not report replica set {REPL_SET!r}: hello = {hello}")


def start_s3() -> str:
    port = free_port()
    spawn(
        "s3", [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    )
    url = f"http://127.0.0.1:{port}"
    wait_until("S3 (moto)", lambda: http_ok(f"{url}/moto-api/"))
    return url


def start_redis(name: str = "redis") -> str:
    """The chat app's Redis: a Redis-protocol server (miniredis, env/build.sh) that asks
    for a password, as a production one does; its URL, the password in it."""
    import secrets

    port, password = free_port(), secrets.token_hex(12)
    spawn(
        name,
        [str(bin_dir("redis") / "redis-server"), f"--addr=127.0.0.1:{port}"],
        env={"REDIS_PASSWORD": password},
    )
    wait_until(name, lambda: tcp_open(port))
    return f"redis://:{password}@127.0.0.1:{port}/0"


def start_forward(name: str, *specs: str) -> None:
    """A forwarder (env/netns.py) between the host's loopback and the namespace's."""
    netns_py = str(ROOT / "env" / "netns.py")
    spawn(f"forward-{name}", [sys.executable, netns_py, "forward", NETNS, *specs])


def start_netns(kubeconfig: str) -> None:
    """The pods' namespace, and the API server's port forwarded into it."""
    netns.create(NETNS)
    port = api_server_port(kubeconfig)
    start_forward("apiserver", f"netns:{port}=host:{port}")


def api_server_port(kubeconfig: str) -> int:
    server = kubectl(
        "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}",
        "--kubeconfig", kubeconfig,
    ).stdout
    return int(server.rsplit(":", 1)[1].strip("/"))


def start_chatapp(kubeconfig: str) -> str:
    port = free_port()
    spawn(
        "chatapp",
        [
            sys.executable, str(ROOT / "env" / "chatapp.py"), "--netns", NETNS,
            "--kubeconfig", kubeconfig, "--port", str(port),
        ],
    )
    url = f"http://127.0.0.1:{port}"
    wait_until("chat app simulator", lambda: http_ok(f"{url}/healthz"))
    return url


def prometheus_config(kubeconfig: str) -> str:
    """Pods discovered through the API server and scraped at podIP:containerPort, with
    the labels a Prometheus Operator PodMonitor gives on a real cluster (README: the
    label contract), `service` being the release's color Service."""
    pod = "__meta_kubernetes_pod_"
    label = f"{pod}label_"
    copies = {
        "namespace": "__meta_kubernetes_namespace",
        "pod": f"{pod}name",
        "container": f"{pod}container_name",
        "release": f"{label}app_kubernetes_io_instance",
        "component": f"{label}app_kubernetes_io_component",
        "color": f"{label}chatops_dev_color",
        "revision": f"{label}chatops_dev_revision",
    }
    relabel = [
        {"source_labels": [f"{pod}phase"], "regex": "Running", "action": "keep"},
        {"source_labels": [f"{pod}container_port_number"], "regex": ".+", "action": "keep"},
        {"source_labels": [f"{pod}container_port_protocol"], "regex": "TCP", "action": "keep"},
        *({"source_labels": [src], "target_label": dst} for dst, src in copies.items()),
        {
            "source_labels": [copies["release"], copies["component"], copies["color"]],
            "regex": "(.+);(.+);(.+)",
            "replacement": "$1-$2-$3",
            "target_label": "service",
        },
    ]
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "chat-app",
            "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": kubeconfig}],
            "relabel_configs": relabel,
        }
    ]
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": jobs}
    return json.dumps(config, indent=1)


def start_prometheus(kubeconfig: str) -> str:
    """Prometheus inside the pods' namespace (it reaches pods as on a real cluster's pod
    network), its port forwarded to the same port on the host's loopback."""
    port = free_port()
    config = STATE / "prometheus.yml"
    config.write_text(prometheus_config(kubeconfig))
    start_forward("prometheus", f"host:{port}=netns:{port}")
    spawn(
        "prometheus",
        [
            "ip", "netns", "exec", NETNS,
            str(bin_dir("prometheus") / "prometheus"),
            f"--config.file={config}",
            "--scrape.discovery-reload-interval=1s",
            f"--storage.tsdb.path={STATE / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    wait_until("Prometheus", lambda: http_ok(f"{url}/-/ready"))
    return url


# -- up, down, status -----------------------------------------------------------------


def read_env_file() -> dict[str, str]:
    if not ENV_FILE.exists():
        return {}
    pairs = (line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)
    return {k.removeprefix("export "): shlex.split(v)[0] if v else "" for k, v in pairs}


def given() -> dict[str, str]:
    """Parts the caller already has, leaving out values that came from our own env file."""
    ours = read_env_file()
    return {
        k: os.environ[k] for k in GIVEN_KEYS if os.environ.get(k) and os.environ[k] != ours.get(k)
    }


def running() -> bool:
    """True when the env file's local parts all still answer."""
    env = read_env_file()
    if not env:
        return False
    started = env.get("CHATOPS_ENV_STARTED", "").split()
    return all(alive(name) for name in started if name != "kubernetes") and (
        "kubernetes" not in started
        or kubectl("get", "--raw", "/readyz", check=False).returncode == 0
    )


def up() -> dict[str, str]:
    if running():
        log(f"already up ({ENV_FILE})")
        return read_env_file()
    start = time.monotonic()
    have = given()
    for name in have:
        log(f"using the given {name}")
    if "KUBECONFIG" in have and "PROMETHEUS_URL" not in have:
        sys.exit(
            "KUBECONFIG is given without PROMETHEUS_URL: a cluster of your own runs its own "
            "app; give the Prometheus that scrapes it (README: the label contract)"
        )
    down(quiet=True)
    STATE.mkdir(parents=True, exist_ok=True)

    need = {
        "kubernetes": "KUBECONFIG" not in have,
        "ferretdb": "MONGODB_URI" not in have,
        "s3": "S3_ENDPOINT_URL" not in have,
        "redis": "REDIS_URL" not in have,
        "chatapp": "KUBECONFIG" not in have,
        "traefik": "KUBECONFIG" not in have and "GATEWAY_URL" not in have,
        "prometheus": "PROMETHEUS_URL" not in have,
    }
    parts = ["k8s", "etcd", "kwok", "gatewayapi", "ferretdb", "mongotools", "bsondump", "helm"]
    parts += ["promtool", *(["prometheus"] if need["prometheus"] else [])]
    parts += ["traefik"] if need["traefik"] else []
    parts += ["redis"] if need["redis"] else []
    build(parts)

    env = dict(have)
    if need["kubernetes"]:
        env["KUBECONFIG"] = start_cluster()
        start_netns(env["KUBECONFIG"])
        env["CHATOPS_NETNS"] = NETNS
    if need["ferretdb"]:
        env["MONGODB_URI"] = start_ferretdb()
        env["MONGODB_OPLOG_MAX_DOCS"] = str(OPLOG_MAX_DOCS)
        env["MONGODB_OPLOG_SIZE_BYTES"] = str(OPLOG_SIZE_BYTES)
    if need["s3"]:
        env["S3_ENDPOINT_URL"] = start_s3()
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    if need["redis"]:
        env["REDIS_URL"] = start_redis()
    env.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    if need["chatapp"]:
        env["CHATAPP_URL"] = start_chatapp(env["KUBECONFIG"])
    if need["traefik"]:
        import gateway  # it builds on this module

        env.update(gateway.start(env["KUBECONFIG"]))
    if need["prometheus"]:
        env["PROMETHEUS_URL"] = start_prometheus(env["KUBECONFIG"])
    env["CHATOPS_TOOLS_PATH"] = tool_path()
    started = [name for name, needed in need.items() if needed and name == "kubernetes"]
    started += sorted(p.stem for p in (STATE / "pids").glob("*.pid"))
    env["CHATOPS_ENV_STARTED"] = " ".join(started)
    ENV_FILE.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    log(f"up in {time.monotonic() - start:.0f} s; env file: {ENV_FILE}")
    return env


def down(quiet: bool = False) -> None:
    first = ["operator", "traefik", "prometheus", "chatapp", "s3", "redis", "ferretdb"]
    rest = sorted(p.stem for p in (STATE / "pids").glob("*.pid") if p.stem not in first)
    for name in first + rest:
        if alive(name) and not quiet:
            log(f"stopping {name}")
        stop(name)
    if (STATE / "kwok").exists() and not quiet:
        log("stopping Kubernetes")
    stop_cluster()
    netns.delete(NETNS)
    for sub in ("kwok", "prometheus", "pids", *(p.name for p in STATE.glob("ferretdb*"))):
        shutil.rmtree(STATE / sub, ignore_errors=True)
    ENV_FILE.unlink(missing_ok=True)


def status() -> None:
    env = read_env_file()
    print(json.dumps({"running": running(), **env}, indent=2))


def session(commands: list[str]) -> int:
    """Run each shell command in turn against the environment, every one even after a
    failure (so a run reports all its phases), starting the environment first if it is
    not up and stopping it at the end if it was started here. The first failure's code."""
    started = not running()
    up()
    stop("operator")  # the demo's operator acts on every namespace; the tests run their own
    code = 0
    try:
        for command in commands:
            log(f"running: {command}")
            done = subprocess.run(command, shell=True).returncode
            code = code or done
    finally:
        if started:
            down()
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "session"])
    parser.add_argument("commands", nargs="*", help="session: shell commands to run in turn")
    args = parser.parse_args()
    if args.command == "session":
        sys.exit(session(args.commands))
    {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    main()
