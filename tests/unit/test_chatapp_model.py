"""The chat app simulator's pure parts (env/chatapp_model.py): which sockets the pods
want served, how served sockets follow the pods, a version's behaviour as set at run
time, a Service's ready addresses; and the forward specs of env/netns.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "env"))

from chatapp_model import (
    Behaviour,
    Endpoint,
    endpoints,
    ready_addresses,
    reconcile,
    serving,
)
from netns import HOST, Forward, name_for


def pod(
    name: str = "chat-api-green-1",
    ip: str | None = "10.0.0.7",
    phase: str = "Running",
    ready: bool = True,
    deleting: bool = False,
    ports: tuple[int, ...] = (8080,),
    image: str = "chat-api:2.0",
    uid: str = "u1",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "uid": uid,
        "labels": labels if labels is not None else {"chatops.dev/color": "green"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T05:00:00Z"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    return {
        "metadata": meta,
        "spec": {
            "containers": [
                {"name": "api", "image": image, "ports": [{"containerPort": p} for p in ports]}
            ]
        },
        "status": status,
    }


@pytest.mark.parametrize(
    ("changes", "served"),
    [
        ({}, True),
        ({"ready": False}, False),
        ({"phase": "Pending"}, False),
        ({"ip": None}, False),
        ({"deleting": True}, False),
    ],
)
def test_only_a_ready_running_pod_with_an_ip_not_being_deleted_is_served(
    changes: dict[str, Any], served: bool
) -> None:
    assert serving(pod(**changes)) is served
    assert bool(endpoints(pod(**changes))) is served


def test_a_pod_is_served_on_each_container_port_as_its_image() -> None:
    found = endpoints(pod(ports=(8080, 9090)))
    assert [(e.ip, e.port, e.image, e.color) for e in found] == [
        ("10.0.0.7", 8080, "chat-api:2.0", "green"),
        ("10.0.0.7", 9090, "chat-api:2.0", "green"),
    ]


def test_a_udp_port_or_a_pod_without_ports_is_not_served() -> None:
    udp = pod()
    udp["spec"]["containers"][0]["ports"][0]["protocol"] = "UDP"
    assert endpoints(udp) == []
    assert endpoints(pod(ports=())) == []


def test_a_reused_ip_restarts_the_socket_and_a_relabel_does_not() -> None:
    (old,) = endpoints(pod(uid="u1"))
    (new,) = endpoints(pod(uid="u2", name="chat-api-green-2"))
    change = reconcile([old], [new])
    assert change.stop == (old,) and change.start == (new,) and change.relabel == ()

    (relabelled,) = endpoints(pod(labels={"chatops.dev/color": "blue"}))
    change = reconcile([old], [relabelled])
    assert change.stop == () and change.start == ()
    assert [e.color for e in change.relabel] == ["blue"]


def test_a_new_image_in_the_same_pod_restarts_its_socket() -> None:
    (old,) = endpoints(pod(image="chat-api:1.0"))
    (new,) = endpoints(pod(image="chat-api:2.0"))
    change = reconcile([old], [new])
    assert change.stop == (old,) and change.start == (new,)


_pods = st.lists(
    st.builds(
        pod,
        name=st.sampled_from(["a", "b", "c"]),
        ip=st.sampled_from(["10.0.0.1", "10.0.0.2", None]),
        ready=st.booleans(),
        deleting=st.booleans(),
        ports=st.sampled_from([(8080,), (8080, 9090), ()]),
        image=st.sampled_from(["chat-api:1", "chat-api:2"]),
        uid=st.sampled_from(["u1", "u2", "u3"]),
        labels=st.sampled_from([{}, {"chatops.dev/color": "blue"}]),
    ),
    max_size=5,
)


@settings(max_examples=200)
@given(st.lists(_pods, min_size=1, max_size=6))
def test_served_sockets_always_end_as_the_pods_want_them(worlds: list[list[Any]]) -> None:
    """Whatever the pods do in turn, applying each change leaves exactly the wanted
    sockets served, each with the wanted labels, and never starts a socket twice."""
    served: dict[tuple[str, int], Endpoint] = {}
    for world in worlds:
        wanted: dict[tuple[str, int], Endpoint] = {}
        for p in world:
            for e in endpoints(p):
                wanted.setdefault(e.key, e)
        change = reconcile(served.values(), [e for p in world for e in endpoints(p)])
        for e in change.stop:
            assert served.pop(e.key) == e
        for e in change.relabel:
            served[e.key] = e
        for e in change.start:
            assert e.key not in served
            served[e.key] = e
        assert served == wanted
        assert all(dict(served[k].labels) == dict(wanted[k].labels) for k in wanted)


def test_a_behaviour_keeps_the_defaults_of_the_fields_left_out() -> None:
    b = Behaviour.from_json({"errorRate": 0.05})
    assert b == Behaviour(error_rate=0.05)
    assert b.to_json() == {"errorRate": 0.05, "latency": 0.005, "wsSuccess": 1.0, "healthy": True}
    assert Behaviour.from_json(b.to_json()) == b


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"errorRate": 1.5}, "errorRate"),
        ({"errorRate": -0.1}, "errorRate"),
        ({"wsSuccess": "all"}, "wsSuccess"),
        ({"latency": 120}, "latency"),
        ({"latency": float("nan")}, "latency"),
        ({"healthy": "yes"}, "healthy"),
        ({"errorrate": 0.1}, "errorrate"),
        ([0.05], "object"),
    ],
)
def test_a_wrong_behaviour_is_refused_naming_its_field(body: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Behaviour.from_json(body)


def test_a_service_is_its_slices_ready_addresses_on_their_port() -> None:
    slices = [
        {
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.0.0.2"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": False}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": True, "terminating": True}},
                {"addresses": ["10.0.0.1"], "conditions": {}},
            ],
        },
        {"ports": [], "endpoints": [{"addresses": ["10.0.0.9"]}]},
    ]
    assert ready_addresses(slices) == [("10.0.0.1", 8080), ("10.0.0.2", 8080)]


def test_a_forward_spec_names_both_sides() -> None:
    assert Forward.parse("netns:16443=host:6443", "chatops-x") == Forward(
        "chatops-x", 16443, HOST, 6443
    )
    assert Forward.parse("host:9090=netns:9091", "chatops-x") == Forward(
        HOST, 9090, "chatops-x", 9091
    )
    for wrong in ("host:1=host:2", "netns:1", "pod:1=host:2", "host:x=netns:2"):
        with pytest.raises(ValueError, match="forward"):
            Forward.parse(wrong, "chatops-x")


def test_each_checkout_has_its_own_namespace(tmp_path: Path) -> None:
    one, other = name_for(tmp_path / "a"), name_for(tmp_path / "b")
    assert one != other and one.startswith("chatops-") and len(one) == len("chatops-") + 8
    assert name_for(tmp_path / "a") == one
