"""A deleted ChatRelease leaves nothing behind in the operator's `/metrics`: every series
of it goes, its analysis values included, so a burst of releases created and deleted
does not leave the operator holding (and serving) their series."""

from __future__ import annotations

from prometheus_client import REGISTRY

from chatops import telemetry
from chatops.api.analysis import Measurement
from chatops.api.release_status import ChatReleaseStatus


def _series(namespace: str, name: str) -> list[str]:
    return [
        f"{sample.name}{sample.labels}"
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.labels.get("namespace") == namespace and sample.labels.get("name") == name
    ]


def _measured(metric: str, component: str, value: str | None) -> Measurement:
    return Measurement(metric=metric, component=component, query="q", value=value,
                       verdict="Pass", time="2026-12-07T14:00:00Z")


def test_every_series_of_a_deleted_release_goes_and_the_others_stay() -> None:
    status = ChatReleaseStatus(
        phase="Paused",
        current_step=1,
        canary_weight=10,
        analysis=[_measured("error-rate", "api", "0.001"),
                  _measured("latency-p95", "frontend", None)],
    )
    telemetry.record_release("forget", "gone", status, ["Aborted"])
    telemetry.record_release("forget", "kept", status, [])
    assert any("chatops_release_analysis_value" in s for s in _series("forget", "gone"))
    telemetry.forget_release("forget", "gone")
    assert _series("forget", "gone") == []
    kept = _series("forget", "kept")
    assert sum("chatops_release_analysis_value" in s for s in kept) == 2
    telemetry.forget_release("forget", "kept")
    assert _series("forget", "kept") == []
