"""The state file's format (version 1), as pydantic models. Pure: no I/O.

The state is the *result* of applies (endpoints, job names) and the diff base (the spec last
applied); it is not the memory of ownership: that lives in the jobs' labels, so a lost state is
rebuilt from the API without creating anything twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

STATE_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class JobError(_Model):
    code: int | None = None
    message: str | None = None


class Endpoint(_Model):
    model: str | None = None
    endpoint: str | None = None


class SmokeRecord(_Model):
    """The outcome of a model's smokeTest against one job's endpoint."""

    passed: bool
    at: str
    reply: str | None = None
    error: str | None = None


class ModelEntry(_Model):
    """What the state knows of one manifest name."""

    parent: str
    job: str | None = None
    state: str | None = None
    spec_hash: str | None = Field(None, alias="specHash")
    spec: dict[str, Any] | None = None
    cosmetic: dict[str, Any] | None = None
    create_time: str | None = Field(None, alias="createTime")
    end_time: str | None = Field(None, alias="endTime")
    error: JobError | None = None
    tuned_model: Endpoint | None = Field(None, alias="tunedModel")
    serving_job: str | None = Field(None, alias="servingJob")
    protect: bool = False
    cancel_requested: list[str] = Field(default_factory=list, alias="cancelRequested")
    # Every parent (as addressed) holding a job of this model that still matters — running,
    # cancelling or serving — so that a model moved to another region keeps being observed.
    parents: list[str] = Field(default_factory=list)
    # Jobs owned through the state rather than their labels (jobs cannot be relabelled): those
    # adopted by `reconciler import` and those of a renamed manifest. job name → spec hash.
    adopted: dict[str, str] = Field(default_factory=dict)
    # The jobs this state knows as its own (made by its applies, found by their request id, or
    # seen when the entry was first recorded). Another checkout's job of the same name is not in
    # it, so it is never cancelled without --prune-unrecorded. None: an entry written before this
    # field existed — every job of the model counts as recorded (until the next refresh fills it).
    # Left out of what is written while None, so an entry without it reads back and is journalled
    # byte for byte as the first release wrote it.
    jobs: list[str] | None = Field(None, alias="jobs")
    # Jobs whose cancel was requested but that completed anyway (a cancel may lose the race to
    # completion): their tuned models serve although this state asked them to stop. Written only
    # when there is one, like `jobs`.
    completed_despite_cancel: list[str] = Field(default_factory=list, alias="completedDespiteCancel")
    # smokeTest outcomes by job: with a gating smokeTest, a new endpoint serves only once passed.
    smoke_tests: dict[str, SmokeRecord] = Field(default_factory=dict, alias="smokeTests")
    # pinDatasets: the data each job was tuned on (job → data hash), for jobs whose labels do not
    # say it (made before pinning was turned on, or imported), and the pins of the current job.
    data_hashes: dict[str, str] = Field(default_factory=dict, alias="dataHashes")
    dataset_pins: dict[str, dict[str, str]] = Field(default_factory=dict, alias="datasetPins")

    @model_serializer(mode="wrap")
    def _without_unset_jobs(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.jobs is None:
            data.pop("jobs", None)
        for key in ("completedDespiteCancel", "completed_despite_cancel"):
            if not data.get(key):
                data.pop(key, None)
        return data


class JournalEntry(_Model):
    """An intent written before a create, settled (removed) once the outcome is known."""

    name: str
    request_id: str = Field(alias="requestId")
    parent: str
    spec_hash: str = Field(alias="specHash")
    started: str


class State(_Model):
    version: int = STATE_VERSION
    serial: int = 0
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    stack: str = "default"
    tool: str = ""
    updated: str | None = None
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    journal: list[JournalEntry] = Field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
