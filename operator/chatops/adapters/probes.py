"""The doctor's looks at the chat app's parts (`chatops doctor`): one function per
check, each bounded by `timeout` seconds, each answering a `Finding` whose text carries
no secret — connection strings' passwords and URL tokens are scrubbed from whatever a
driver said. The verdicts on the cluster's objects are pure (`chatops.doctor.checks`);
these only look. Imported only by the doctor, so its drivers' import time is never
counted in a check's duration."""

from __future__ import annotations

import secrets
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.sync.client import connect

from chatops.adapters import http
from chatops.adapters.mongo import Mongo
from chatops.adapters.redact import redact, uri_secrets
from chatops.doctor.checks import Finding
from chatops.errors import DatabaseError

ECHO_PREFIX = "chatops-doctor-"
"""The message the WebSocket check sends, followed by a random token."""


def api_health(url: str, timeout: float) -> Finding:
    """The API's health URL answers 2xx."""
    problem = http.probe(url, timeout, label="health URL")
    return Finding(problem is None, problem or "answered 2xx")


def mongodb_ping(uri: str, timeout: float) -> Finding:
    """MongoDB answers a `ping`, and says its version."""
    try:
        with Mongo(uri, timeout_ms=max(1, int(timeout * 1000)), app_name="chatops-doctor") as db:
            db.ping()
            version = db.server_version()
    except DatabaseError as err:  # pymongo appends its whole topology description: cut
        return Finding(False, str(err).split(" (configured timeouts", 1)[0].split(
            ", Timeout: ", 1)[0])
    return Finding(True, f"ping ok, server {version}")


def redis_ping(url: str, timeout: float) -> Finding:
    """Redis answers PING with PONG (after AUTH, when the URL has a password)."""
    hidden = uri_secrets(url)
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # one try: the doctor reports, it does not wait
        )
        with client:
            pong = client.ping()
    except redis.AuthenticationError:
        if not hidden:
            return Finding(False, "Redis asks for a password the URL does not give (NOAUTH)")
        return Finding(False, "Redis refused the credentials (AUTH)")
    except redis.RedisError as err:
        return Finding(False, redact(f"{type(err).__name__}: {err}", hidden))
    except ValueError:  # the text quotes the URL
        return Finding(False, "not a Redis URL: redis://[:password@]host:port[/db], "
                              "rediss:// or unix://")
    return Finding(bool(pong), "PONG" if pong else f"PING answered {pong!r}")


def websocket_echo(url: str, timeout: float) -> Finding:
    """A WebSocket connects and a message sent on it comes back within `timeout`: a chat
    room that broadcasts to everyone in it, its sender included, echoes. Other messages
    (a hello, other members' messages) are read past."""
    hidden = [*uri_secrets(url), *(url.split("?", 1)[1:])]
    token = f"{ECHO_PREFIX}{secrets.token_hex(8)}"
    deadline = time.monotonic() + timeout
    connected = False
    try:
        with connect(url, open_timeout=timeout, close_timeout=1, ping_interval=None) as ws:
            connected = True
            ws.send(token)
            while (left := deadline - time.monotonic()) > 0:
                message = ws.recv(timeout=left)
                text = message if isinstance(message, str) else message.decode(errors="replace")
                if token in text:
                    return Finding(True, "connected; the message sent came back")
            raise TimeoutError
    except TimeoutError:
        if connected:
            return Finding(False, f"connected, but the message sent did not come back "
                                  f"within {timeout:g} s")
        return Finding(False, f"no WebSocket handshake within {timeout:g} s")
    except InvalidStatus as err:
        return Finding(False, f"handshake refused: HTTP {err.response.status_code}")
    except InvalidURI:
        return Finding(False, "not a WebSocket URL: ws:// or wss://")
    except ConnectionClosed as err:
        code = err.rcvd.code if err.rcvd else "no close frame"
        return Finding(False, f"closed by the server before the echo ({code})")
    except (OSError, WebSocketException) as err:
        said = getattr(err, "strerror", None) or str(err) or type(err).__name__
        return Finding(False, redact(f"{type(err).__name__}: {said}", hidden))
