"""The pod template a ChatRelease component carries: a Kubernetes PodTemplateSpec whose
images are the version, checked where chatops reads it (names, images, label and
annotation keys) and passed through untouched everywhere else."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from chatops.api import bounds
from chatops.api.common import Model, Name


class Container(Model):
    """A container of the component's pod. Only name and image are checked here; every
    other field of a Kubernetes container is accepted as is."""

    # Every other field passes through untouched, on the wire and into the Deployment.
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    name: Name
    """Container name."""
    image: bounds.Image
    """Image reference, `[registry[:port]/]name[:tag][@digest]` as the kubelet reads it (no
    spaces, lowercase name, at most 512 characters); the images of all components
    together are the release's version."""


class PodSpec(Model):
    """A Kubernetes PodSpec; containers are required, all other fields pass through."""

    # Every other field passes through untouched, on the wire and into the Deployment.
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    containers: list[Container] = Field(min_length=1, max_length=20)
    """The pod's containers (at least one)."""
    init_containers: list[Container] | None = Field(default=None, max_length=20)
    """The pod's init containers; their images are checked as the containers' are."""


_KEY_MESSAGE = "a key is at most 317 characters (a 253-character prefix, /, a name of 63)"
_KEYS = {
    "x-kubernetes-validations": [{"rule": "self.all(k, k.size() <= 317)", "message": _KEY_MESSAGE}]
}


def _keys(values: dict[str, str]) -> dict[str, str]:
    if any(len(k) > 317 for k in values):
        raise ValueError(_KEY_MESSAGE)
    return values


class PodMetadata(Model):
    """Labels and annotations for the component's pods: at most 64 of each, label values
    of at most 63 characters and annotation values of at most 64 KiB; the Deployment's
    own validation (e.g. 256 KiB of annotations in all) applies on top."""

    model_config = ConfigDict(extra="allow")

    labels: Annotated[
        dict[str, Annotated[str, Field(max_length=63)]],
        Field(max_length=64, json_schema_extra=_KEYS),
        AfterValidator(_keys),
    ] = Field(default_factory=dict)
    """Pod labels (the operator adds its own selector labels)."""
    annotations: Annotated[
        dict[str, Annotated[str, Field(max_length=65536)]],
        Field(max_length=64, json_schema_extra=_KEYS),
        AfterValidator(_keys),
    ] = Field(default_factory=dict)
    """Pod annotations."""


class PodTemplate(Model):
    """A PodTemplateSpec: its images are the version being released."""

    metadata: PodMetadata = Field(default_factory=PodMetadata)
    """Pod labels and annotations."""
    spec: PodSpec
    """Pod spec."""
