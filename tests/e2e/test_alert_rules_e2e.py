"""The chart's PrometheusRule (`alerts.enabled`), rendered by the environment's helm and
judged by Prometheus' own rule engine (`promtool check rules`, `promtool test rules`):
each of the runbook's alerts and chatops' own fires on series that cross its threshold,
with the labels and the summary an on-call engineer reads, and stays silent on series
just under it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.usefixtures("environment")
CHART = Path(__file__).resolve().parents[2] / "charts" / "chatops"
RELEASE = "ops"
OPERATOR_JOB = "ops-chatops"


def _rules(*values: str) -> dict[str, Any]:
    sets = [f"--set={v}" for v in ("alerts.enabled=true", *values)]
    rendered = subprocess.run(
        ["helm", "template", RELEASE, str(CHART), *sets,
         "--show-only", "templates/prometheusrule.yaml"],
        check=True, text=True, capture_output=True,
    ).stdout
    rule = yaml.safe_load(rendered)
    assert rule["kind"] == "PrometheusRule"
    return dict(rule["spec"])


def _promtool(*args: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the environment's Prometheus (env/localenv.py)"
    run = subprocess.run([promtool, *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def s(series: str, values: str) -> dict[str, str]:
    return {"series": series, "values": values}


def fires(name: str, labels: dict[str, str], summary: str, at: str = "10m") -> dict[str, Any]:
    return {"eval_time": at, "alertname": name,
            "exp_alerts": [{"exp_labels": labels, "exp_annotations": {"summary": summary}}]}


def silent(name: str, at: str = "10m") -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


APP = [  # chat-api crosses every threshold; chat-web stays just under each
    s('http_request_duration_seconds_bucket{namespace="chat",service="chat-api",le="0.5"}',
      "0+1x20"),
    s('http_request_duration_seconds_bucket{namespace="chat",service="chat-api",le="1"}',
      "0+1x20"),
    s('http_request_duration_seconds_bucket{namespace="chat",service="chat-api",le="2.5"}',
      "0+10x20"),
    s('http_request_duration_seconds_bucket{namespace="chat",service="chat-api",le="+Inf"}',
      "0+10x20"),
    s('http_request_duration_seconds_bucket{namespace="chat",service="chat-web",le="0.5"}',
      "0+9x20"),
    s('http_request_duration_seconds_bucket{namespace="chat",service="chat-web",le="1"}',
      "0+10x20"),
    s('http_request_duration_seconds_bucket{namespace="chat",service="chat-web",le="2.5"}',
      "0+10x20"),
    s('http_request_duration_seconds_bucket{namespace="chat",service="chat-web",le="+Inf"}',
      "0+10x20"),
    s('http_requests_total{namespace="chat",service="chat-api",code="500"}', "0+6x20"),
    s('http_requests_total{namespace="chat",service="chat-api",code="200"}', "0+94x20"),
    s('http_requests_total{namespace="chat",service="chat-web",code="500"}', "0+4x20"),
    s('http_requests_total{namespace="chat",service="chat-web",code="200"}', "0+96x20"),
    s('container_cpu_usage_seconds_total{namespace="chat",pod="api-1",container="api"}',
      "0+54x20"),
    s('kube_pod_container_resource_limits{namespace="chat",pod="api-1",resource="cpu"}', "1x20"),
    s('container_cpu_usage_seconds_total{namespace="chat",pod="web-1",container="web"}',
      "0+45x20"),
    s('kube_pod_container_resource_limits{namespace="chat",pod="web-1",resource="cpu"}', "1x20"),
    s('container_memory_working_set_bytes{namespace="chat",pod="api-1",container="api"}',
      "900x20"),
    s('kube_pod_container_resource_limits{namespace="chat",pod="api-1",resource="memory"}',
      "1000x20"),
    s('container_memory_working_set_bytes{namespace="chat",pod="web-1",container="web"}',
      "800x20"),
    s('kube_pod_container_resource_limits{namespace="chat",pod="web-1",resource="memory"}',
      "1000x20"),
    s('websocket_connections_active{namespace="chat",service="chat-api",pod="api-1"}', "6000x20"),
    s('websocket_connections_active{namespace="chat",service="chat-api",pod="api-2"}', "5000x20"),
    s('websocket_connections_active{namespace="chat",service="chat-web",pod="web-1"}', "9999x20"),
    s('mongodb_ss_connections{namespace="db",service="mongo",conn_type="current"}', "90x20"),
    s('mongodb_ss_connections{namespace="db",service="mongo",conn_type="available"}', "10x20"),
    s('mongodb_ss_connections{namespace="db",service="mongo-b",conn_type="current"}', "79x20"),
    s('mongodb_ss_connections{namespace="db",service="mongo-b",conn_type="available"}', "21x20"),
    s('chatops_release_phase{namespace="chat",name="chat",phase="RolledBack"}', "1x20"),
    s('chatops_release_phase{namespace="shop",name="shop",phase="RolledBack"}', "0x20"),
    s(f'up{{job="{OPERATOR_JOB}",instance="a"}}', "0x20"),
]


def _api(service: str) -> dict[str, str]:
    return {"namespace": "chat", "service": service}


def test_each_alert_fires_over_its_threshold_and_stays_silent_under_it(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(_rules()))
    _promtool("check", "rules", str(rules))
    app_alerts = [
        fires("ChatAPILatencyHigh", {"severity": "warning", **_api("chat-api")},
              "p95 latency of chat/chat-api is 2.417s (above 1 s)"),
        fires("ChatAPIErrorsHigh", {"severity": "critical", **_api("chat-api")},
              "chat/chat-api answers 6% of its requests with a 5xx (above 0.05)"),
        fires("ChatCPUHigh", {"severity": "warning", "namespace": "chat", "pod": "api-1"},
              "chat/api-1 uses 90% of its CPU limit (above 0.8)"),
        fires("ChatMemoryHigh", {"severity": "warning", "namespace": "chat", "pod": "api-1"},
              "chat/api-1 uses 90% of its memory limit (above 0.85)"),
        fires("ChatWebSocketsHigh", {"severity": "warning", **_api("chat-api")},
              "chat/chat-api holds 11000 WebSocket connections (above 10000)"),
        fires("ChatDatabaseConnectionsHigh",
              {"severity": "warning", "namespace": "db", "service": "mongo"},
              "MongoDB db/mongo has 90% of its connections in use (above 0.8)"),
        fires("ChatReleaseRolledBack",
              {"severity": "warning", "namespace": "chat", "name": "chat",
               "phase": "RolledBack"},
              "ChatRelease chat/chat rolled back: kubectl describe chatrelease -n chat chat"),
        fires("ChatopsOperatorDown", {"severity": "critical"},
              "no chatops operator replica answers its metrics: releases, backups and "
              "restores stand still"),
        # held for `for` (5m) before they fire
        *(silent(name, at="4m") for name in (
            "ChatAPIErrorsHigh", "ChatCPUHigh", "ChatMemoryHigh", "ChatWebSocketsHigh",
            "ChatDatabaseConnectionsHigh", "ChatopsOperatorDown")),
    ]
    backups = [
        s('chatops_backup_last_success_timestamp_seconds{namespace="chat",name="nightly"}',
          "0x30"),  # its last good backup at 00:00
        s('chatops_backup_last_success_timestamp_seconds{namespace="chat",name="hourly"}',
          "7200x30"),  # at 02:00: 25 h before 27:00
    ]
    healthy = [  # the same app, every figure just under its threshold
        s(f'up{{job="{OPERATOR_JOB}",instance="a"}}', "0x20"),
        s(f'up{{job="{OPERATOR_JOB}",instance="b"}}', "1x20"),
    ]
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {"interval": "1m", "input_series": APP, "alert_rule_test": app_alerts},
            {"interval": "1h", "input_series": backups, "alert_rule_test": [
                fires("ChatBackupMissing",
                      {"severity": "critical", "namespace": "chat", "name": "nightly"},
                      "ChatBackup chat/nightly has had no good backup for 1d 3h 0m 0s "
                      "(more than 26 h)", at="27h"),
            ]},
            {"interval": "1m", "input_series": healthy, "alert_rule_test": [
                silent("ChatopsOperatorDown"),  # one replica of two answers
            ]},
        ],
    }
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    _promtool("test", "rules", str(path))


def test_thresholds_and_the_app_selector_come_from_the_values(tmp_path: Path) -> None:
    spec = _rules("alerts.thresholds.websocketConnections=20000",
                  'alerts.selector=job="chat"', "alerts.for=2m")
    rules = {r["alert"]: r for g in spec["groups"] for r in g["rules"]}
    assert rules["ChatWebSocketsHigh"]["expr"].rstrip().endswith("> 20000")
    assert 'websocket_connections_active{job="chat"}' in rules["ChatWebSocketsHigh"]["expr"]
    assert rules["ChatAPIErrorsHigh"]["for"] == "2m"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(spec))
    _promtool("check", "rules", str(path))
    tests = {"rule_files": [str(path)], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": [
            s('websocket_connections_active{job="chat",service="chat-api",pod="a"}', "11000x20"),
            s('websocket_connections_active{job="other",service="x",pod="b"}', "30000x20"),
        ], "alert_rule_test": [silent("ChatWebSocketsHigh")]},
    ]}
    cases = tmp_path / "tests.yaml"
    cases.write_text(yaml.safe_dump(tests, sort_keys=False))
    _promtool("test", "rules", str(cases))
