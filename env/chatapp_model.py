"""The chat app simulator's pure parts: what a version does, which sockets the cluster's
pods want served, which pods back a Service. No I/O here (tests/unit reads it as it is).

A version is its image: `chat-api:1.2` with `errorRate: 0.05` fails 5 % of its API
requests in every pod that runs it. A pod is served while it is Ready, has an IP and is
not being deleted: one socket per container port, podIP:containerPort, answering as its
container's image does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

COLOR_LABEL = "chatops.dev/color"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

FIELDS = {
    "errorRate": "error_rate",
    "latency": "latency",
    "wsSuccess": "ws_success",
    "healthy": "healthy",
}


@dataclass(frozen=True)
class Behaviour:
    """What every pod of one version (image) does, as a test sets it at run time."""

    error_rate: float = 0.0
    """Share of API requests answered 500, 0..1."""
    latency: float = 0.005
    """Seconds every API request takes before it is answered."""
    ws_success: float = 1.0
    """Share of WebSocket handshakes accepted (the others get 503), 0..1."""
    healthy: bool = True
    """What /api/health answers: 200, or 503 when False."""

    @classmethod
    def from_json(cls, data: Any) -> Behaviour:
        """From the control API's JSON (`errorRate`, `latency`, `wsSuccess`, `healthy`);
        fields left out keep their defaults. ValueError names the field that is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a version's behaviour is a JSON object")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}: known are {sorted(FIELDS)}")
        values: dict[str, Any] = {}
        for key, name in FIELDS.items():
            if key not in data:
                continue
            value = data[key]
            if name == "healthy":
                if not isinstance(value, bool):
                    raise ValueError(f"healthy: want true or false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key}: want a number, got {value!r}")
            elif not math.isfinite(value) or value < 0:
                raise ValueError(f"{key}: want a finite number >= 0, got {value!r}")
            elif name in ("error_rate", "ws_success") and value > 1:
                raise ValueError(f"{key}: a share, want 0..1, got {value!r}")
            elif name == "latency" and value > 60:
                raise ValueError(f"latency: at most 60 s, got {value!r}")
            values[name] = value
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        own = asdict(self)
        return {key: own[name] for key, name in FIELDS.items()}


@dataclass(frozen=True)
class Endpoint:
    """One socket a Ready pod serves: podIP:containerPort, as its container's image."""

    ip: str
    port: int
    namespace: str
    pod: str
    uid: str
    image: str
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.ip, self.port)

    @property
    def color(self) -> str:
        return self.labels.get(COLOR_LABEL, "")

    def same_process(self, other: Endpoint) -> bool:
        """The same container still behind the socket (labels may change in place): every
        field but the labels, so a reused IP, a new image or another pod restarts it."""
        return self == other


def _condition(pod: Mapping[str, Any], kind: str) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def serving(pod: Mapping[str, Any]) -> bool:
    """Whether the pod takes traffic: Running, Ready, an IP, and not being deleted."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return (
        not meta.get("deletionTimestamp")
        and status.get("phase") == "Running"
        and bool(status.get("podIP"))
        and _condition(pod, "Ready")
        and not (pod.get("spec") or {}).get("hostNetwork")
    )


def endpoints(pod: Mapping[str, Any]) -> list[Endpoint]:
    """The sockets the pod (a Kubernetes Pod as JSON) wants served now: none unless it
    serves, else one per TCP container port."""
    if not serving(pod):
        return []
    meta, spec = pod["metadata"], pod.get("spec") or {}
    out = []
    seen: set[int] = set()
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if port.get("protocol", "TCP") != "TCP" or not number or number in seen:
                continue
            seen.add(number)
            out.append(
                Endpoint(
                    ip=pod["status"]["podIP"],
                    port=int(number),
                    namespace=meta.get("namespace", ""),
                    pod=meta.get("name", ""),
                    uid=meta.get("uid", ""),
                    image=container.get("image", ""),
                    labels=dict(meta.get("labels") or {}),
                )
            )
    return out


@dataclass(frozen=True)
class Change:
    """What to do to the served sockets: stop these, start those, relabel the rest."""

    stop: tuple[Endpoint, ...] = ()
    start: tuple[Endpoint, ...] = ()
    relabel: tuple[Endpoint, ...] = ()


def reconcile(served: Iterable[Endpoint], wanted: Iterable[Endpoint]) -> Change:
    """From the sockets served now to the ones the pods want. A socket whose container
    changed (another pod on a reused IP, a new image) stops and starts again; a changed
    label (color, revision) is applied in place, as a pod's labels change without a
    restart."""
    now = {e.key: e for e in served}
    want: dict[tuple[str, int], Endpoint] = {}
    for e in wanted:
        want.setdefault(e.key, e)
    stop, start, relabel = [], [], []
    for key, current in now.items():
        target = want.get(key)
        if target is None or not current.same_process(target):
            stop.append(current)
        elif dict(target.labels) != dict(current.labels):
            relabel.append(target)
    for key, target in want.items():
        current = now.get(key)
        if current is None or not current.same_process(target):
            start.append(target)
    return Change(tuple(stop), tuple(start), tuple(relabel))


def ready_addresses(slices: Iterable[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """The ready (address, port) pairs of a Service's EndpointSlices: where kube-proxy
    (or an ingress) would send a request to it. The first port of each slice."""
    out: list[tuple[str, int]] = []
    for s in slices:
        ports = [p["port"] for p in s.get("ports") or [] if p.get("port")]
        if not ports:
            continue
        for endpoint in s.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating"):
                continue
            out += [(address, ports[0]) for address in endpoint.get("addresses") or []]
    return sorted(set(out))
