"""The local environment: a real Kubernetes (kwok's fake nodes), FerretDB, an S3 server,
and Prometheus scraping a test exporter, all on 127.0.0.1, without Docker.

    python env/localenv.py up       build what is missing, start what is not given
    python env/localenv.py down     stop everything `up` started
    python env/localenv.py status   print what runs where

`up` writes one env file, `.chatops-env/env`, with KUBECONFIG, MONGODB_URI,
S3_ENDPOINT_URL, PROMETHEUS_URL and EXPORTER_URL, which tests, the demo and the operator
read. A part already given in the environment (say KUBECONFIG of a kind cluster) is used
as it is and never started or stopped here. A given PROMETHEUS_URL needs EXPORTER_URL too:
the exporter that Prometheus scrapes.
"""

from __future__ import annotations

import argparse
import contextlib
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

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("CHATOPS_ENV_STATE", ROOT / ".chatops-env"))
ENV_FILE = STATE / "env"
CLUSTER = "chatops"
NODES = 3
GIVEN_KEYS = ("KUBECONFIG", "MONGODB_URI", "S3_ENDPOINT_URL", "PROMETHEUS_URL", "EXPORTER_URL")
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
        "gatewayapi": v["GATEWAY_API_VERSION"],
    }[part]
    return cache() / f"{part}-{version}" / "bin"


def tool_path() -> str:
    """PATH entries for the built tools: kubectl, kwokctl, mongodump, helm, …"""
    parts = ("k8s", "kwok", "ferretdb", "mongotools", "bsondump", "helm")
    return os.pathsep.join(str(bin_dir(p)) for p in parts)


def build(parts: list[str]) -> None:
    if parts:
        subprocess.run([str(ROOT / "env" / "build.sh"), *parts], check=True)


def debian(packages: dict[str, str]) -> None:
    """Install Debian packages whose command is missing, when we may (root + apt)."""
    missing = [pkg for cmd, pkg in packages.items() if shutil.which(cmd) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(
            f"missing {', '.join(missing)}: install them (apt-get install {' '.join(missing)})"
        )
    log(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )


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


def start_cluster() -> str:
    k8s, kwok = bin_dir("k8s"), bin_dir("kwok")
    log("starting Kubernetes (kwokctl, binary runtime, local binaries, env/kwok-stages.yaml)")
    flags = {
        "--runtime": "binary",
        "--kube-apiserver-port": str(free_port()),
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
    kwokctl("scale", "node", "--replicas", str(NODES))
    log(f"{NODES} fake nodes; installing the Gateway API CRDs")
    kubectl(
        "apply", "--server-side", "-f", str(bin_dir("gatewayapi") / "gateway-api-standard.yaml")
    )
    wait_established("httproutes.gateway.networking.k8s.io")
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


def stop_cluster() -> None:
    if (STATE / "kwok").exists():
        subprocess.run(
            [str(bin_dir("kwok") / "kwokctl"), "--name", CLUSTER, "delete", "cluster"],
            env=kwok_env(),
            check=False,
            capture_output=True,
        )


def start_ferretdb() -> str:
    port = free_port()
    data = STATE / "ferretdb"
    data.mkdir(parents=True, exist_ok=True)
    spawn(
        "ferretdb",
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
    wait_until("FerretDB", lambda: tcp_open(port))
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


def start_exporter() -> str:
    port = free_port()
    spawn("exporter", [sys.executable, str(ROOT / "env" / "exporter.py"), "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    wait_until("test exporter", lambda: http_ok(f"{url}/metrics"))
    return url


def start_prometheus(exporter: str) -> str:
    port = free_port()
    config = STATE / "prometheus.yml"
    target = exporter.removeprefix("http://")
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "- job_name: chat-app\n"
        f"  static_configs: [{{targets: ['{target}']}}]\n"
    )
    spawn(
        "prometheus",
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={config}",
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
    if "PROMETHEUS_URL" in have and "EXPORTER_URL" not in have:
        sys.exit("PROMETHEUS_URL is given without EXPORTER_URL (the exporter it scrapes)")
    down(quiet=True)
    STATE.mkdir(parents=True, exist_ok=True)

    need = {
        "kubernetes": "KUBECONFIG" not in have,
        "ferretdb": "MONGODB_URI" not in have,
        "s3": "S3_ENDPOINT_URL" not in have,
        "exporter": "EXPORTER_URL" not in have,
        "prometheus": "PROMETHEUS_URL" not in have,
    }
    debian({"prometheus": "prometheus"} if need["prometheus"] else {})
    build(["k8s", "etcd", "kwok", "gatewayapi", "ferretdb", "mongotools", "bsondump", "helm"])

    env = dict(have)
    if need["kubernetes"]:
        env["KUBECONFIG"] = start_cluster()
    if need["ferretdb"]:
        env["MONGODB_URI"] = start_ferretdb()
        env["MONGODB_OPLOG_MAX_DOCS"] = str(OPLOG_MAX_DOCS)
        env["MONGODB_OPLOG_SIZE_BYTES"] = str(OPLOG_SIZE_BYTES)
    if need["s3"]:
        env["S3_ENDPOINT_URL"] = start_s3()
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    env.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    if need["exporter"]:
        env["EXPORTER_URL"] = start_exporter()
    if need["prometheus"]:
        env["PROMETHEUS_URL"] = start_prometheus(env["EXPORTER_URL"])
    env["CHATOPS_TOOLS_PATH"] = tool_path()
    env["CHATOPS_ENV_STARTED"] = " ".join(name for name, needed in need.items() if needed)
    ENV_FILE.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    log(f"up in {time.monotonic() - start:.0f} s; env file: {ENV_FILE}")
    return env


def down(quiet: bool = False) -> None:
    for name in ("operator", "prometheus", "exporter", "s3", "ferretdb"):
        if alive(name) and not quiet:
            log(f"stopping {name}")
        stop(name)
    if (STATE / "kwok").exists() and not quiet:
        log("stopping Kubernetes")
    stop_cluster()
    for sub in ("kwok", "ferretdb", "prometheus", "pids"):
        shutil.rmtree(STATE / sub, ignore_errors=True)
    ENV_FILE.unlink(missing_ok=True)


def status() -> None:
    env = read_env_file()
    print(json.dumps({"running": running(), **env}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    command = parser.parse_args().command
    {"up": up, "down": down, "status": status}[command]()


if __name__ == "__main__":
    main()
