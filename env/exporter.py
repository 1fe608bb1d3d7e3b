"""A test exporter that plays the chat app's versions for Prometheus.

Each *target* is one Service of the app (a color or canary of a component) with the
behaviour a test wants it to have: requests per second, error rate, latency, WebSocket
connection success. The exporter turns that into the series the real app exports —
request counters by status code, a latency histogram, WebSocket connection counters —
growing in real time, so PromQL `rate()` and `histogram_quantile()` see what a real
version doing that would show.

    PUT    /targets/<namespace>/<service>   {"rps": 50, "errorRate": 0.05, ...}
    DELETE /targets/<namespace>/<service>   the version stops (its counters stay)
    DELETE /targets/<namespace>             forget the namespace's versions, counters too
    GET    /targets                         the behaviours now set
    GET    /health/<namespace>/<service>    200 when the version is healthy, 503 when not,
                                            404 for a version no test has set
    GET    /metrics                         Prometheus exposition

Run: python env/exporter.py --port N
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Behaviour:
    """What one version of a Service does, as a test sets it."""

    rps: float = 20.0
    errorRate: float = 0.0
    latency: float = 0.05  # seconds, every request
    wsRate: float = 5.0
    wsSuccess: float = 1.0
    labels: dict[str, str] = field(default_factory=dict)  # extra labels, e.g. color
    healthy: bool = True  # what GET /health/<namespace>/<service> answers: 200 or 503


@dataclass
class Totals:
    """Counters of one target since the exporter started."""

    requests: float = 0.0
    errors: float = 0.0
    latency_sum: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))
    ws_attempts: float = 0.0
    ws_successes: float = 0.0


class App(Collector):
    """The targets and their counters, advanced to the time of each scrape."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.behaviours: dict[tuple[str, str], Behaviour] = {}
        self.totals: dict[tuple[str, str], Totals] = {}
        self.last = time.monotonic()

    def set(self, namespace: str, service: str, behaviour: Behaviour) -> None:
        with self.lock:
            self._advance()
            self.behaviours[(namespace, service)] = behaviour
            self.totals.setdefault((namespace, service), Totals())

    def remove(self, namespace: str, service: str) -> None:
        with self.lock:
            self._advance()
            self.behaviours.pop((namespace, service), None)

    def forget(self, namespace: str) -> int:
        """Drop every version of `namespace`, counters too: its app is gone."""
        with self.lock:
            keys = [k for k in self.totals if k[0] == namespace]
            for key in keys:
                self.behaviours.pop(key, None)
                del self.totals[key]
        return len(keys)

    def _advance(self) -> None:
        now = time.monotonic()
        dt, self.last = now - self.last, now
        for key, b in self.behaviours.items():
            t = self.totals[key]
            n = b.rps * dt
            t.requests += n
            t.errors += n * b.errorRate
            t.latency_sum += n * b.latency
            for i, bound in enumerate(BUCKETS):
                if b.latency <= bound:
                    t.buckets[i] += n
            t.ws_attempts += b.wsRate * dt
            t.ws_successes += b.wsRate * dt * b.wsSuccess

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        with self.lock:
            self._advance()
            rows = [(k, self.behaviours.get(k), t) for k, t in self.totals.items()]
        names = ["namespace", "service"]
        extra = sorted({name for _, b, _ in rows if b for name in b.labels})
        requests = CounterMetricFamily(
            "http_requests", "HTTP requests by status code.", labels=[*names, *extra, "code"]
        )
        latency = HistogramMetricFamily(
            "http_request_duration_seconds", "HTTP request latency.", labels=[*names, *extra]
        )
        websockets = CounterMetricFamily(
            "websocket_connections",
            "WebSocket connection attempts.",
            labels=[*names, *extra, "result"],
        )
        for (namespace, service), behaviour, t in rows:
            own = behaviour.labels if behaviour else {}
            base = [namespace, service, *(own.get(name, "") for name in extra)]
            requests.add_metric([*base, "200"], t.requests - t.errors)
            requests.add_metric([*base, "500"], t.errors)
            cumulative = [
                (str(bound), count) for bound, count in zip(BUCKETS, t.buckets, strict=True)
            ]
            latency.add_metric(base, [*cumulative, ("+Inf", t.requests)], t.latency_sum)
            websockets.add_metric([*base, "success"], t.ws_successes)
            websockets.add_metric([*base, "failure"], t.ws_attempts - t.ws_successes)
        yield requests
        yield latency
        yield websockets


def serve(port: int) -> None:
    app = App()
    registry = CollectorRegistry()
    registry.register(app)

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _target(self, prefix: str = "targets") -> tuple[str, str] | None:
            parts = self.path.strip("/").split("/")
            return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == prefix else None

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(registry), "text/plain; version=0.0.4")
            elif (target := self._target("health")) is not None:
                with app.lock:
                    behaviour = app.behaviours.get(target)
                code = 404 if behaviour is None else 200 if behaviour.healthy else 503
                self._reply(code, json.dumps({"healthy": code == 200}).encode())
            elif self.path == "/targets":
                with app.lock:
                    body = {f"{ns}/{svc}": asdict(b) for (ns, svc), b in app.behaviours.items()}
                self._reply(200, json.dumps(body).encode())
            else:
                self._reply(404, b"{}")

        def do_PUT(self) -> None:
            target = self._target()
            if target is None:
                self._reply(404, b"{}")
                return
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"
            try:
                behaviour = Behaviour(**json.loads(raw))
            except (TypeError, ValueError) as err:
                self._reply(400, json.dumps({"error": str(err)}).encode())
                return
            app.set(*target, behaviour)
            self._reply(200, json.dumps(asdict(behaviour)).encode())

        def do_DELETE(self) -> None:
            target = self._target()
            parts = self.path.strip("/").split("/")
            if target is not None:
                app.remove(*target)
            elif len(parts) == 2 and parts[0] == "targets":
                app.forget(parts[1])
            else:
                self._reply(404, b"{}")
                return
            self._reply(200, b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)
