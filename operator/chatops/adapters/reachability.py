"""Whether the API server answers this operator's credentials, asked every few seconds
from a thread of its own: the "working" of `/healthz` (telemetry.Health).

A replica that cannot read its kubeconfig or ServiceAccount token, cannot reach the API
server, or is refused by its authentication (an expired or revoked token) does nothing
useful, whatever its event loop does; reported as not alive, it gets restarted and reads
its credentials again. The request is `GET /version`: cheap, allowed to every
authenticated user (so RBAC is not what it checks), and refused with 401 when the
credentials are bad.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from chatops.telemetry import Health

EVERY = 5.0
"""Seconds between two checks."""
TIMEOUT = 10.0
"""Seconds one check may take (connect and read); a slower answer is none."""
log = logging.getLogger("chatops.reachability")


def check(api: client.ApiClient) -> str | None:
    """None when the API server answers a request made with `api`'s credentials, else
    what went wrong (the status or the error's kind, never a credential)."""
    try:  # the status is the answer: the body is not parsed (nor its schema checked)
        answer = client.VersionApi(api).get_code(
            _request_timeout=TIMEOUT, _preload_content=False
        )
        answer.read()  # a connection goes back to the pool only with its answer read:
        answer.release_conn()  # otherwise the next check finds it mid-response
    except ApiException as err:
        if not err.status:  # the client's own words for a TLS failure
            return f"the API server is unreachable: {str(err.reason).splitlines()[0]}"
        return f"the API server answered {err.status} {err.reason}"
    except (HTTPError, OSError) as err:
        return f"the API server is unreachable: {type(err).__name__}"
    return None


def watch(
    health: Health, connect: Callable[[], client.ApiClient], stop: threading.Event
) -> threading.Thread:
    """Check now and every `EVERY` seconds until `stop`, telling `health`. The client
    `connect` makes is kept while it works (the kubernetes client rereads a rotated
    token file itself) and made again after a failure; a change is logged once."""

    def loop() -> None:
        said: str | None = None
        api: client.ApiClient | None = None
        while True:
            try:
                api = api or connect()
                trouble = check(api)
            except (config.ConfigException, OSError, ValueError) as err:
                trouble = f"no Kubernetes credentials: {err}"
            if trouble is None:
                health.answered()
                if said is not None:
                    log.info("the API server answers again")
            else:
                health.not_answered(trouble)
                if trouble != said:
                    log.error("not working: %s", trouble)
                if api is not None:
                    api.close()
                api = None
            said = trouble
            if stop.wait(EVERY):
                return

    thread = threading.Thread(target=loop, name="reachability", daemon=True)
    thread.start()
    return thread
