"""The environment's own network namespace, where the pods' addresses live.

kwok gives pods IPs from their node's podCIDR (inside POD_CIDR); the API server refuses
loopback addresses in EndpointSlices, so the range is a private one, put on the `lo` of
a network namespace of
this checkout's own (`chatops-<8 hex of sha1 of the checkout's path>`, so several
checkouts' environments coexist). Everything that connects to a pod runs in it: the chat
app simulator's pod sockets, Traefik, Prometheus, the load generators. On the host a
private address would leave the machine (this machine's default route answers any
address), so nothing on the host side ever connects to one.

What crosses between the namespace and the host goes through forwarders that use only
each side's own loopback: listen on 127.0.0.1:<port> in one namespace, connect to
127.0.0.1:<port> in the other. A socket belongs to the namespace of the thread that made
it, for its whole life; `socket_in` makes sockets in a namespace from a thread that
entered it once (Python 3.11 has no os.setns: libc's, through ctypes).

    python env/netns.py create NAME     the namespace, lo up, POD_CIDR on lo (idempotent)
    python env/netns.py delete NAME
    python env/netns.py forward NAME SPEC...   e.g. `netns:16443=host:6443` (listen in the
        namespace on 16443, connect on the host to 6443) or `host:9090=netns:9090`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

POD_CIDR = "10.0.0.0/16"
"""The pods' range, local on the namespace's `lo`. kwok gives a pod an IP from its node's
podCIDR (else from its `cidr` option, default 10.0.0.0/24); kwokctl's node template
gives node i the podCIDR 10.0.i.0/24 (sigs.k8s.io/kwok kustomize/kwokctl/resource/
node.yaml). localenv checks the nodes' podCIDRs are inside this range."""
HOST = "host"
"""The side of a forward that is the host's own namespace (the one this process began in)."""
CLONE_NEWNET = 0x40000000
RUN_NETNS = Path("/run/netns")

T = TypeVar("T")


def name_for(checkout: Path) -> str:
    """The namespace of a checkout: `chatops-` and 8 hex of the sha1 of its absolute path."""
    digest = hashlib.sha1(str(checkout.resolve()).encode()).hexdigest()
    return f"chatops-{digest[:8]}"


def exists(name: str) -> bool:
    return (RUN_NETNS / name).exists()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, text=True, capture_output=True)


def create(name: str) -> None:
    """The namespace `name` with `lo` up and POD_CIDR local on it. Idempotent."""
    if not exists(name):
        found = _ip("netns", "add", name, check=False)
        if found.returncode != 0 and not exists(name):
            sys.exit(f"cannot create network namespace {name} (needs root): {found.stderr}")
    _ip("-n", name, "link", "set", "lo", "up")
    addresses = _ip("-n", name, "-o", "addr", "show", "dev", "lo").stdout
    if f" {POD_CIDR} " not in addresses:
        _ip("-n", name, "addr", "add", POD_CIDR, "dev", "lo")


def delete(name: str) -> None:
    if exists(name):
        _ip("netns", "delete", name, check=False)


# -- sockets in a namespace -----------------------------------------------------------


def enter(name: str) -> None:
    """Move the calling thread (only it) into the namespace `name`."""
    fd = os.open(RUN_NETNS / name, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into network namespace {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class _Resident:
    """A thread that entered a namespace once and runs small calls there."""

    def __init__(self, name: str) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        entered: Future[None] = Future()
        threading.Thread(
            target=self._run, args=(name, entered), daemon=True, name=f"netns-{name}"
        ).start()
        entered.result()

    def _run(self, name: str, entered: Future[None]) -> None:
        try:
            enter(name)
        except BaseException as err:
            entered.set_exception(err)
            return
        entered.set_result(None)
        while True:
            call, done = self.calls.get()
            try:
                done.set_result(call())
            except BaseException as err:
                done.set_exception(err)

    def run(self, call: Callable[[], T]) -> T:
        done: Future[T] = Future()
        self.calls.put((call, done))
        return done.result()


_residents: dict[str, _Resident] = {}
_residents_lock = threading.Lock()


def run_in(name: str, call: Callable[[], T]) -> T:
    """Run `call` (quick, non-blocking) in the namespace `name`, or here for HOST."""
    if name == HOST:
        return call()
    with _residents_lock:
        resident = _residents.get(name) or _residents.setdefault(name, _Resident(name))
    return resident.run(call)


def socket_in(
    name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A new socket of the namespace `name` (HOST: this process's own)."""
    return run_in(name, lambda: socket.socket(family, kind, proto))


def listener(name: str, address: str, port: int, backlog: int = 512) -> socket.socket:
    """A listening, non-blocking TCP socket on address:port in the namespace `name`."""
    sock = socket_in(name)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def socket_factory(name: str) -> Callable[[Any], socket.socket]:
    """For aiohttp's `TCPConnector(socket_factory=…)`: its connections made in `name`,
    so a client on the host reaches pod addresses inside the namespace."""

    def make(addr_info: Any) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = socket_in(name, family, kind, proto)
        sock.setblocking(False)
        return sock

    return make


async def open_connection(
    name: str, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection, from the namespace `name`."""
    sock = socket_in(name)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except OSError:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


# -- forwarders -----------------------------------------------------------------------


@dataclass(frozen=True)
class Forward:
    """Listen on 127.0.0.1:listen_port in listen_ns, connect to 127.0.0.1:connect_port in
    connect_ns (HOST or the environment's namespace)."""

    listen_ns: str
    listen_port: int
    connect_ns: str
    connect_port: int

    @classmethod
    def parse(cls, spec: str, netns: str) -> Forward:
        """`netns:16443=host:6443` → listen in `netns` on 16443, connect on the host to 6443."""
        try:
            listen, connect = spec.split("=")
            (lside, lport), (cside, cport) = (p.split(":") for p in (listen, connect))
            sides = {"host": HOST, "netns": netns}
            forward = cls(sides[lside], int(lport), sides[cside], int(cport))
        except (ValueError, KeyError):
            raise ValueError(
                f"forward {spec!r}: want SIDE:PORT=SIDE:PORT, SIDE one of host, netns"
            ) from None
        if forward.listen_ns == forward.connect_ns:
            raise ValueError(f"forward {spec!r}: both ends in the same namespace")
        return forward

    def __str__(self) -> str:
        return (
            f"{self.listen_ns}:127.0.0.1:{self.listen_port} -> "
            f"{self.connect_ns}:127.0.0.1:{self.connect_port}"
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _relay(
    forward: Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await open_connection(
            forward.connect_ns, "127.0.0.1", forward.connect_port
        )
    except OSError:
        writer.close()  # nothing listens on the other side: the client sees the close
        return
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()


async def serve_forwards(forwards: list[Forward]) -> None:
    """Run the forwards until cancelled."""
    servers = []
    for forward in forwards:
        sock = listener(forward.listen_ns, "127.0.0.1", forward.listen_port)

        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, forward: Forward = forward
        ) -> None:
            await _relay(forward, reader, writer)

        servers.append(await asyncio.start_server(handle, sock=sock))
        print(f"forwarding {forward}", file=sys.stderr, flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("create", "delete"):
        sub.add_parser(command).add_argument("name")
    fwd = sub.add_parser("forward")
    fwd.add_argument("name")
    fwd.add_argument("specs", nargs="+", metavar="SPEC")
    args = parser.parse_args()
    if args.command == "create":
        create(args.name)
    elif args.command == "delete":
        delete(args.name)
    else:
        try:
            forwards = [Forward.parse(spec, args.name) for spec in args.specs]
        except ValueError as err:
            parser.error(str(err))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_forwards(forwards))


if __name__ == "__main__":
    main()
