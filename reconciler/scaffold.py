"""Manifests written by the tool: from an existing job (`import` of a job no manifest names yet,
as terraform generates configuration). The output is YAML a person would write, in the field order
of docs/manifest.md, and is validated by the caller before it is kept."""

from __future__ import annotations

from typing import Any

import yaml

from reconciler.models import ObservedJob

API_VERSION = "reconciler/v1"
KIND = "TunedModel"
# Fields of a job's spec that a manifest leaves to the service or that are not settable.
_OUTPUT_ONLY = ("tunedModelDisplayName", "description", "serviceAccount")


def manifest_from_job(job: ObservedJob, name: str, *, project: str | None, region: str | None) -> str:
    """A manifest whose spec is exactly the job's (so importing it re-tunes nothing)."""
    spec: dict[str, Any] = {}
    if project:
        spec["project"] = project
    if region:
        spec["region"] = region
    spec.update({k: v for k, v in job.spec.items() if k not in _OUTPUT_ONLY and v not in (None, {}, "")})
    cosmetic = job.cosmetic()
    metadata: dict[str, Any] = {"name": name}
    if cosmetic.get("tunedModelDisplayName") and cosmetic["tunedModelDisplayName"] != name:
        spec["tunedModelDisplayName"] = cosmetic["tunedModelDisplayName"]
    if cosmetic.get("description"):
        spec["description"] = cosmetic["description"]
    if cosmetic.get("serviceAccount"):
        spec["serviceAccount"] = cosmetic["serviceAccount"]
    if cosmetic.get("labels"):
        metadata["labels"] = dict(sorted(cosmetic["labels"].items()))
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    head = f"# Written by `reconciler import {job.name} --name {name}`: the job's spec, as it was made.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
