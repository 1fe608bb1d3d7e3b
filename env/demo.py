"""The demo: the local environment up, the CRDs installed, the operator running, the
examples applied, and what kubectl shows of them.

    python env/demo.py          (make demo)

The operator keeps running in the background (log: .chatops-env/logs/operator.log);
`make env-down` stops it with everything else.
"""

from __future__ import annotations

import json
import os
import sys
import time

import localenv
from localenv import ROOT, kubectl, log

NAMESPACE = "chat-demo"


def main() -> None:
    env = localenv.up()
    os.environ.update(env)
    log("installing the chatops CRDs")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for plural in ("chatreleases", "chatbackups", "chatrecoveries"):
        kubectl("wait", "--for=condition=Established", f"crd/{plural}.chatops.dev")

    localenv.stop("operator")
    log("starting the operator (chatops run)")
    localenv.spawn("operator", [str(ROOT / ".venv" / "bin" / "chatops"), "run"])

    kubectl("create", "namespace", NAMESPACE, check=False)
    log(f"applying examples/ into namespace {NAMESPACE}")
    print(kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples")).stdout)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = json.loads(kubectl("get", "chatops", "-n", NAMESPACE, "-o", "json").stdout)["items"]
        if items and all(i.get("status", {}).get("observedGeneration") for i in items):
            break
        time.sleep(1)
    else:
        sys.exit(
            "the operator did not observe the examples in 60 s; see .chatops-env/logs/operator.log"
        )

    print(kubectl("get", "crel,cbak,crec", "-n", NAMESPACE).stdout)
    for item in items:
        for c in item["status"].get("conditions", []):
            print(
                f"{item['kind']}/{item['metadata']['name']}: {c['type']}={c['status']} "
                f"({c['reason']}) {c['message']}"
            )
    print(
        f"\nThe cluster is yours: `source {localenv.ENV_FILE}` then kubectl, "
        "or `make env-down` to stop everything."
    )


if __name__ == "__main__":
    main()
