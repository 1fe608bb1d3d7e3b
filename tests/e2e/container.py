"""One pod of a rendered Deployment, run as a kubelet would run it — with runc, from the
image `make image` builds (env/image.sh rootfs: its root filesystem and image config).

What the pod gets comes from the manifest, never from this file: the command (the
image's ENTRYPOINT, the container's args), the environment (the image's, then the
container's, `fieldRef`s resolved), the user (runAsUser, the group from the image's
/etc/passwd as containerd takes it, fsGroup as a supplementary group), the security
context (readOnlyRootFilesystem, allowPrivilegeEscalation, capabilities), the memory
limit, the volumes (an emptyDir is a fresh world-writable directory) and the
ServiceAccount token a kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount
with the API server's CA, and KUBERNETES_SERVICE_HOST/PORT. A field this file does not
know how to give (a configMap volume, envFrom, a privileged container) fails the test:
a chart that asks for more than its test gives would be tested on less than it ships.

Two differences from a cluster: the pod shares the host's network (the local API server,
FerretDB, S3, Prometheus and the simulator listen on 127.0.0.1), and no seccomp profile
is loaded (runc takes none by default; RuntimeDefault is the runtime's own).
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
"""containerd's default capabilities, before the container's drop and add."""


@dataclass(frozen=True)
class Image:
    rootfs: Path
    config: dict[str, Any]


def build_image() -> Image:
    """`make image`'s image (built only when its sources changed), exported for runc."""
    out = subprocess.run(
        [str(ROOT / "env" / "image.sh"), "rootfs"], check=True, text=True, capture_output=True
    )
    folder = Path(out.stdout.strip().splitlines()[-1])
    return Image(folder / "rootfs", json.loads((folder / "config.json").read_text()))


@dataclass(frozen=True)
class Pod:
    """A pod of `deployment` (a rendered manifest) in `namespace`, its first container."""

    deployment: dict[str, Any]
    name: str = "chatops-0"

    @property
    def namespace(self) -> str:
        return str(self.deployment["metadata"]["namespace"])

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.deployment["spec"]["template"]["spec"])

    @property
    def container(self) -> dict[str, Any]:
        return dict(self.spec["containers"][0])

    def probe(self, kind: str) -> tuple[str, int]:
        """The HTTP path and port of the container's `livenessProbe`/`readinessProbe`."""
        get = self.container[kind]["httpGet"]
        port = get["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in self.container["ports"] if p["name"] == port)
        return get["path"], int(port)


def _field(pod: Pod, path: str) -> str:
    values = {
        "metadata.namespace": pod.namespace,
        "metadata.name": pod.name,
        "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
    }
    if path not in values:
        raise AssertionError(f"the test cannot give the pod the field {path}")
    return values[path]


def _env(pod: Pod, image: Image, api: tuple[str, int]) -> list[str]:
    env = dict(e.split("=", 1) for e in image.config.get("Env") or [])
    env.update(
        HOSTNAME=pod.name, KUBERNETES_SERVICE_HOST=api[0], KUBERNETES_SERVICE_PORT=str(api[1])
    )
    if pod.container.get("envFrom"):
        raise AssertionError("the test cannot give the pod envFrom")
    for var in pod.container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif set(var.get("valueFrom") or {}) == {"fieldRef"}:
            env[var["name"]] = _field(pod, var["valueFrom"]["fieldRef"]["fieldPath"])
        else:
            raise AssertionError(f"the test cannot give the pod the env var {var}")
    return [f"{k}={v}" for k, v in env.items()]


def _user(pod: Pod, image: Image) -> dict[str, Any]:
    """uid and gid as the kubelet and containerd set them: runAsUser (the container's over
    the pod's), its group runAsGroup, else the uid's group in the image's /etc/passwd (0
    when it has none); without runAsUser, the image's USER uid:gid. fsGroup and
    supplementalGroups are added."""
    pod_sc = pod.spec.get("securityContext") or {}
    sc = pod.container.get("securityContext") or {}
    image_uid, _, image_gid = str(image.config.get("User") or "0").partition(":")
    uid = int(sc.get("runAsUser", pod_sc.get("runAsUser", image_uid)))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if gid is None and "runAsUser" not in sc and "runAsUser" not in pod_sc and image_gid:
        gid = int(image_gid)
    if gid is None:
        gid = 0
        for line in (image.rootfs / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 3 and fields[2] == str(uid):
                gid = int(fields[3])
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
        raise AssertionError("runAsNonRoot, but the container would run as root")
    groups = ([pod_sc["fsGroup"]] if "fsGroup" in pod_sc else []) + list(
        pod_sc.get("supplementalGroups", [])
    )
    return {"uid": uid, "gid": int(gid), "additionalGids": groups}


def _capabilities(sc: Mapping[str, Any]) -> list[str]:
    caps = sc.get("capabilities") or {}
    drop = {f"CAP_{c}" for c in caps.get("drop", [])}
    kept = [] if "CAP_ALL" in drop else [c for c in DEFAULT_CAPS if c not in drop]
    return kept + [f"CAP_{c}" for c in caps.get("add", [])]


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i?)?", quantity).groups()  # type: ignore[union-attr]
    powers = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6,
              "G": 10**9, "T": 10**12}
    return int(number) * powers.get(unit or "", 1)


def _volume_mounts(pod: Pod, workdir: Path, service_account: Path) -> list[dict[str, Any]]:
    """The container's volumeMounts, each volume made on the host; then the token."""
    volumes = {v["name"]: v for v in pod.spec.get("volumes") or []}
    mounts = []
    for mount in pod.container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if set(volume) != {"name", "emptyDir"} or volume["emptyDir"]:
            raise AssertionError(f"the test cannot give the pod the volume {volume}")
        source = workdir / "volumes" / mount["name"]
        source.mkdir(parents=True)
        source.chmod(0o777)  # as the kubelet makes an emptyDir
        options = ["rbind", "nosuid", "nodev", "ro" if mount.get("readOnly") else "rw"]
        mounts.append({"destination": mount["mountPath"], "type": "bind",
                       "source": str(source), "options": options})
    if pod.spec.get("automountServiceAccountToken", True):
        mounts.append({"destination": SERVICE_ACCOUNT_DIR, "type": "bind",
                       "source": str(service_account), "options": ["rbind", "ro"]})
    return mounts


def oci_spec(
    pod: Pod, image: Image, workdir: Path, service_account: Path, api: tuple[str, int]
) -> dict[str, Any]:
    """The OCI runtime spec (config.json) of the pod's container."""
    c, sc = pod.container, pod.container.get("securityContext") or {}
    if sc.get("privileged"):
        raise AssertionError("the test cannot give the pod a privileged container")
    command = c.get("command") or image.config.get("Entrypoint") or []
    args = c.get("args") if "args" in c else ([] if "command" in c else image.config.get("Cmd"))
    caps = _capabilities(sc)
    hosts = workdir / "hosts"
    hosts.write_text(f"127.0.0.1\tlocalhost\n127.0.0.1\t{pod.name}\n")
    limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
    return {
        "ociVersion": "1.0.2",
        "hostname": pod.name,
        "root": {"path": str(image.rootfs), "readonly": bool(sc.get("readOnlyRootFilesystem"))},
        "process": {
            "terminal": False,
            "user": _user(pod, image),
            "args": [*command, *(args or [])],
            "env": _env(pod, image, api),
            "cwd": c.get("workingDir") or image.config.get("WorkingDir") or "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": not sc.get("allowPrivilegeEscalation", True),
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            # the host's network namespace: sysfs can only be bound, not mounted anew
            {"destination": "/sys", "type": "bind", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": str(hosts),
             "options": ["rbind", "ro"]},
            *_volume_mounts(pod, workdir, service_account),
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "resources": {"memory": {"limit": _bytes(limit)}} if limit else {},
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware",
                            "/proc/scsi", "/proc/acpi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


@dataclass
class Running:
    id: str
    process: subprocess.Popen[bytes]
    log: Path

    def pid(self) -> int:
        state = subprocess.run(["runc", "state", self.id], check=True, capture_output=True)
        return int(json.loads(state.stdout)["pid"])

    def exec(self, *argv: str, user: str = "") -> subprocess.CompletedProcess[str]:
        """`argv` inside the container (as `user`, uid:gid; default the container's)."""
        who = ["--user", user] if user else []
        return subprocess.run(
            ["runc", "exec", *who, self.id, *argv], text=True, capture_output=True, timeout=60
        )

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as the kubelet sends it; the exit code (SIGKILL after `timeout`)."""
        subprocess.run(["runc", "kill", self.id, "TERM"], capture_output=True)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            subprocess.run(["runc", "kill", self.id, "KILL"], capture_output=True)
            self.process.wait(timeout=30)
            return -9


@contextmanager
def run(spec: dict[str, Any], workdir: Path) -> Iterator[Running]:
    """The container of `spec`, its stdout and stderr in workdir/container.log; stopped
    and deleted at the end."""
    bundle = workdir / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec, indent=1))
    cid = f"chatops-e2e-{uuid.uuid4().hex[:10]}"
    log = workdir / "container.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["runc", "run", "--bundle", str(bundle), cid],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    running = Running(cid, proc, log)
    try:
        yield running
    finally:
        if proc.poll() is None:
            running.stop()
        subprocess.run(["runc", "delete", "--force", cid], capture_output=True)
