"""The Helm chart against the real API server: it lints, every rendered manifest passes
a server-side dry run, it installs, and the operator it describes does a canary and a
backup under its own ServiceAccount — which cannot do what it must not."""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from pymongo import MongoClient

import backups
import releases as rel
from support import kubectl, wait_for

pytestmark = pytest.mark.e2e
CHART = Path(__file__).resolve().parents[2] / "charts" / "chatops"


def helm(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["helm", *args], check=True, text=True, capture_output=True, input=input)


def test_the_chart_lints_and_every_manifest_passes_a_server_side_dry_run(
    crds: None, namespace: str
) -> None:
    lint = helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in lint.stdout
    variants: list[dict[str, object]] = [
        {},
        {"watchNamespaces": [namespace], "grafana": {"dashboard": {"enabled": True}}},
        {"replicas": 1, "secretNamespaces": [namespace]},
        # the doctor's CronJob, cluster-wide and in one namespace
        {"doctor": {"enabled": True}},
        {"doctor": {"enabled": True, "namespace": namespace, "existingSecret": "doctor",
                    "timeZone": "Europe/Paris", "require": ["api", "mongodb"]}},
    ]
    for values in variants:
        rendered = helm(
            "template",
            "chatops",
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            "1.32.0",
            "--include-crds",
            "-f",
            "-",
            input=json.dumps(values),
        ).stdout
        kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
        assert {"Deployment", "ServiceAccount", "Service", "CustomResourceDefinition"} <= kinds
        dry = kubectl(
            "apply",
            "--dry-run=server",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
            input=rendered,
            check=False,
        )
        assert dry.returncode == 0, dry.stderr


def test_the_chart_renders_without_a_kube_version(environment: dict[str, str]) -> None:
    """Issue 8 case 21: `helm template charts/chatops` as README's reader types it, with
    no --kube-version (helm then assumes its own default Kubernetes version)."""
    rendered = helm("template", "chatops", str(CHART)).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"Deployment", "ServiceAccount", "ClusterRole"} <= kinds


@pytest.fixture
def installed(
    crds: None, api: client.ApiClient, namespace: str
) -> Iterator[tuple[str, str]]:
    """The chart installed in its own namespace, watching `namespace` (its CRDs applied
    first, as the chart's README says: `--skip-crds` here); yields the operator's
    namespace and ServiceAccount."""
    system = f"chatops-{uuid.uuid4().hex[:6]}"
    values = {"watchNamespaces": [namespace], "replicas": 1}
    helm(
        "install",
        "chatops",
        str(CHART),
        "--namespace",
        system,
        "--create-namespace",
        "--skip-crds",
        "-f",
        "-",
        "--wait",
        "--timeout",
        "90s",
        input=json.dumps(values),
    )
    try:
        yield system, "chatops"
    finally:
        helm("uninstall", "chatops", "--namespace", system)
        client.CoreV1Api(api).delete_namespace(system)


def _kubeconfig_for(service_account: str, namespace: str, tmp: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, by a bound token."""
    token = kubectl(
        "create", "token", service_account, "-n", namespace, "--duration", "1h"
    ).stdout.strip()
    mine = yaml.safe_load(kubectl("config", "view", "--raw", "--minify").stdout)
    cluster = mine["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": service_account}}],
        "current-context": "sa",
    }
    path = tmp / "sa.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.mongodb
def test_the_installed_operator_releases_under_its_own_rbac(
    installed: tuple[str, str],
    api: client.ApiClient,
    namespace: str,
    custom: client.CustomObjectsApi,
    tmp_path: Path,
) -> None:
    system, sa = installed
    objects = kubectl(
        "get", "deployment,serviceaccount,service,role,rolebinding", "-n", system, "-o", "name"
    ).stdout
    assert "deployment.apps/chatops" in objects and "serviceaccount/chatops" in objects

    who = f"system:serviceaccount:{system}:{sa}"

    def can(*args: str) -> bool:
        return kubectl("auth", "can-i", "--as", who, *args, check=False).stdout.strip() == "yes"

    assert can("patch", "chatreleases.chatops.dev", "-n", namespace)
    assert can("get", "secrets", "-n", namespace)
    assert not can("list", "secrets", "-n", namespace)
    assert not can("watch", "secrets", "-n", namespace)
    assert not can("get", "secrets", "-n", "kube-system")
    assert not can("delete", "namespaces")
    assert not can("create", "clusterroles")
    assert not can("delete", "deployments", "-n", namespace)
    assert not can("patch", "deployments", "-n", "kube-system")

    # The chart's operator pod runs on a fake node here; run the same command as that
    # ServiceAccount from the host, through a canary.
    kubeconfig = _kubeconfig_for(sa, system, tmp_path)
    log = tmp_path / "operator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatops.cli",
                "run",
                "--namespace",
                namespace,
                "--leader-elect",
                "--leader-namespace",
                system,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            # as the chart's Deployment sets it: the leader and database Leases live there
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": system},
        )
    try:
        rel.http_route(api, namespace)
        for color in ("blue", "green"):
            rel.traffic(namespace, "chat", color)
        spec = rel.release_spec(
            "1.0", rel.canary(pause="2s"), {"gatewayAPI": {"httpRoute": "chat"}}
        )
        rel.create(custom, namespace, "chat", spec)
        rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)
        rel.set_version(custom, namespace, "chat", "1.1")
        wait_for(
            lambda: (
                rel.status(custom, namespace, "chat").get("stableVersion")
                == "chat-api:1.1,chat-web:1.1"
            ),
            timeout=90,
            what="the canary promoted",
        )
        # and a backup: the MongoDB URI and S3 keys come from Secrets it may only `get`
        database = f"chart_{uuid.uuid4().hex[:6]}"
        with MongoClient(os.environ["MONGODB_URI"]) as mongo:
            mongo[database].messages.insert_many([{"n": i} for i in range(100)])
            bucket = backups.new_bucket(os.environ["S3_ENDPOINT_URL"])
            backups.create_secrets(
                client.CoreV1Api(api),
                namespace,
                backups.uri_with_password(os.environ["MONGODB_URI"]),
            )
            backups.create(
                custom,
                namespace,
                "chatbackups",
                "ChatBackup",
                "nightly",
                backups.backup_spec(os.environ["S3_ENDPOINT_URL"], bucket, database),
            )
            last = backups.finished_run(custom, namespace, "nightly", timeout=120)
            mongo.drop_database(database)
        assert last["result"] == "Succeeded" and last["documents"] == 100, last
        # and a deletion, which releases the live version with the same least privilege
        kubectl("delete", "crel", "chat", "-n", namespace, "--wait=false")
        wait_for(
            lambda: "chat" not in kubectl("get", "crel", "-n", namespace, "-o", "name").stdout,
            timeout=60,
            what="the ChatRelease deleted",
        )
        live = client.AppsV1Api(api).read_namespaced_deployment("chat-api-green", namespace)
        assert (live.metadata.labels or {}).get("chatops.dev/released-from") == "chat"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # A refusal as the API server and the client word it (not a bare "403", which a log
    # line's milliseconds can show: "01:13:34,403").
    refused = re.compile(r"orbidden|\(403\)|code\W+403|status\W+403")
    forbidden = [line for line in log.read_text().splitlines() if refused.search(line)]
    assert forbidden == [], forbidden[:5]


def _render(namespace: str, values: dict[str, object]) -> list[dict[str, Any]]:
    rendered = helm("template", "chatops", str(CHART), "--namespace", namespace,
                    "--kube-version", "1.32.0", "-f", "-", input=json.dumps(values)).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def test_the_doctor_cronjob_is_off_by_default_and_its_args_are_the_commands_own(
    environment: dict[str, str],
) -> None:
    """`doctor.enabled` renders a CronJob whose arguments the real `chatops` parser reads
    as meant: JSON out, the backup age of the chart's alert, the URLs from the Secret."""
    from chatops import cli

    assert "CronJob" not in {d["kind"] for d in _render("chat", {})}
    docs = _render("chat", {"doctor": {"enabled": True, "existingSecret": "doctor-urls",
                                       "schedule": "30 6 * * *", "require": ["api"]}})
    cron = next(d for d in docs if d["kind"] == "CronJob")
    assert cron["spec"]["schedule"] == "30 6 * * *"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "doctor-urls"}}]
    args = cli.parser().parse_args(container["args"])
    assert (args.command, args.output, args.all_namespaces) == ("doctor", "json", True)
    assert args.backup_max_age == datetime.timedelta(hours=26)  # alerts' backupMaxAgeHours
    assert args.require == ["api"]
    assert {d["kind"] for d in docs} >= {"ClusterRole", "ClusterRoleBinding"}
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"]
                == pod["serviceAccountName"])
    assert role["rules"] == [{"apiGroups": ["chatops.dev"],
                              "resources": ["chatreleases", "chatbackups"],
                              "verbs": ["get", "list"]}]


def test_the_doctor_runs_as_the_charts_cronjob_would_under_its_own_serviceaccount(
    crds: None, api: client.ApiClient, namespace: str, tmp_path: Path,
) -> None:
    """The CronJob's pod would run on a fake node here: its ServiceAccount, Role and
    Secret are applied as rendered, and its command runs from the host with that
    ServiceAccount's token and the Secret's keys as its environment."""
    values = {"doctor": {"enabled": True, "namespace": namespace, "existingSecret": "doctor"}}
    docs = _render(namespace, values)
    access = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
              and d["metadata"]["name"].endswith("-doctor")]
    assert len(access) == 3
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": access}))
    core = client.CoreV1Api(api)
    urls = {"MONGODB_URI": backups.uri_with_password(os.environ["MONGODB_URI"])}
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="doctor"), string_data=urls))
    cron = next(d for d in docs if d["kind"] == "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    secret = core.read_namespaced_secret("doctor", namespace).data
    env = {k: base64.b64decode(v).decode() for k, v in secret.items()}
    kubeconfig = _kubeconfig_for(pod["serviceAccountName"], namespace, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "chatops.cli", *pod["containers"][0]["args"]],
        capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "KUBECONFIG": str(kubeconfig), **env},
    )
    report = json.loads(done.stdout)
    got = {c["name"]: (c["status"], c["detail"]) for c in report["checks"]}
    # it may list what it checks (no 403), finds no ChatBackup here, and pings MongoDB
    assert got["releases"] == ("ok", "no ChatReleases")
    assert got["backups"] == ("failed", "no ChatBackup: nothing backs MongoDB up")
    assert got["mongodb"][0] == "ok", got
    assert got["redis"][0] == got["api"][0] == "skipped"
    assert done.returncode == 1 and backups.PASSWORD not in done.stdout + done.stderr
    who = f"system:serviceaccount:{namespace}:{pod['serviceAccountName']}"
    for verb in ("patch", "delete"):
        assert kubectl("auth", "can-i", "--as", who, verb, "chatbackups.chatops.dev", "-n",
                       namespace, check=False).stdout.strip() == "no"
