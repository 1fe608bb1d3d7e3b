"""Notification delivery through a receiver's outage (issue 12, part 2).

    .venv/bin/python bench/notify_outage.py --outage 10 --notifications 20

The operator's own dispatcher (`chatops.notify.dispatcher.Dispatcher`: its outbox, two
worker threads, the default backoff of 1, 2, 4 … 60 s over 10 attempts) POSTs through
`adapters.http.post_json` to a real HTTP receiver on 127.0.0.1. No cluster: the URL is
given directly instead of read from a Secret, the one step left out. For each outage
mode — the port closed (connections refused) and the receiver answering 500 — the
receiver is away for `--outage` seconds while `--notifications` notifications are
offered, evenly spread over the outage; it then answers 2xx. Per notification: attempts
the dispatcher made (the receiver counts those it saw), seconds from the offer (the
Event) to the 2xx, and seconds from the receiver's return to the 2xx. Prints p50/max.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chatops.adapters import http
from chatops.api.common import API_VERSION
from chatops.events import Event
from chatops.notify import message
from chatops.notify.dispatcher import TIMEOUT, Dispatcher


class Receiver:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.code = 200
        self.seen: dict[str, list[tuple[float, int]]] = {}
        self.server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.seen.setdefault(body["id"], []).append((time.monotonic(), receiver.code))
                self.send_response(receiver.code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def scenario(mode: str, outage: float, count: int) -> dict[str, Any]:
    receiver = Receiver()
    url = f"http://127.0.0.1:{receiver.port}/hook"
    attempts: dict[str, int] = {}

    def send(d: message.Delivery) -> str | None:
        attempts[d.id] = attempts.get(d.id, 0) + 1
        return http.post_json(url, d.body, TIMEOUT, label=d.label)

    dispatcher = Dispatcher(send).start()
    if mode == "500":
        receiver.code = 500
        receiver.up()
    subject = {
        "apiVersion": API_VERSION, "kind": "ChatBackup",
        "metadata": {"name": "nightly", "namespace": "bench", "uid": "u"},
        "spec": {"notifications": [{"name": "hook", "urlSecretRef": {"name": "s", "key": "k"}}]},
    }
    ids = (f"n{i}" for i in itertools.count())
    offered: dict[str, float] = {}
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i * outage / count - time.monotonic()))
        [d] = message.deliveries(subject, Event("Warning", "BackupFailed", f"run {i}"),
                                 message.now(), ids)
        offered[d.id] = time.monotonic()
        dispatcher.offer([d])
    time.sleep(max(0.0, start + outage - time.monotonic()))
    receiver.code = 200
    if mode == "refused":
        receiver.up()
    back = time.monotonic()
    deadline = back + 300
    while time.monotonic() < deadline and not all(
        any(200 <= c < 300 for _, c in receiver.seen.get(i, [])) for i in offered
    ):
        time.sleep(0.05)
    dispatcher.stop()
    receiver.down()
    delivered = {
        i: next(t for t, c in receiver.seen[i] if 200 <= c < 300) for i in offered
        if any(200 <= c < 300 for _, c in receiver.seen.get(i, []))
    }
    latency = [delivered[i] - offered[i] for i in delivered]
    after = [delivered[i] - back for i in delivered]
    tries = [attempts[i] for i in delivered]
    return {
        "mode": mode, "outage": outage, "notifications": count, "delivered": len(delivered),
        "attempts_p50": statistics.median(tries), "attempts_max": max(tries),
        "event_to_delivery_p50": statistics.median(latency),
        "event_to_delivery_max": max(latency),
        "back_to_delivery_p50": statistics.median(after), "back_to_delivery_max": max(after),
        "first_offered_latency": latency[0], "first_offered_attempts": tries[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--notifications", type=int, default=20)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    rows = [scenario(mode, args.outage, args.notifications) for mode in ("refused", "500")]
    print(f"receiver away {args.outage:g} s, {args.notifications} notifications offered "
          "evenly during it; seconds")
    print("| mode | delivered | attempts p50/max | Event→2xx p50/max | back→2xx p50/max "
          "| first offered: Event→2xx, attempts |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['delivered']}/{r['notifications']} "
              f"| {r['attempts_p50']:g}/{r['attempts_max']} "
              f"| {r['event_to_delivery_p50']:.1f}/{r['event_to_delivery_max']:.1f} "
              f"| {r['back_to_delivery_p50']:.1f}/{r['back_to_delivery_max']:.1f} "
              f"| {r['first_offered_latency']:.1f}, {r['first_offered_attempts']} |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
