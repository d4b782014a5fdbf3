"""The journal's operations: the four changes apply records between two full writes. Pure.

A line of the journal is one operation as a JSON object, discriminated by `op`:

| `op` | fields | change |
|---|---|---|
| `set` | `name`, `entry` (a model entry) | the state entry of `name` becomes `entry` |
| `drop` | `name` | the state entry of `name` is removed |
| `intent` | `entry` (a create intent) | a create intent is opened (written before the create) |
| `settle` | `requestId` | the intent of that request is settled (removed) |

A local journal line also carries the `lineage` and `serial` it applies to (see `codec`). The
shape on disk is the one version 0.1 wrote, byte for byte: old journals replay, and what this
version writes is read by the previous one. Reading and writing lines is `codec`'s business.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.state.model import JournalEntry, ModelEntry, State

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover - Python 3.10
    from typing_extensions import assert_never


class _Op(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class SetEntry(_Op):
    """The state entry of `name` becomes `entry`."""

    op: Literal["set"] = "set"
    name: str
    entry: ModelEntry


class DropEntry(_Op):
    """The state entry of `name` is removed (no error when there is none)."""

    op: Literal["drop"] = "drop"
    name: str


class OpenIntent(_Op):
    """A create intent, journalled before the create is sent."""

    op: Literal["intent"] = "intent"
    entry: JournalEntry


class SettleIntent(_Op):
    """The intent of `request_id` is settled: its outcome is known (recorded or failed)."""

    op: Literal["settle"] = "settle"
    request_id: str = Field(alias="requestId")


JournalOp = Annotated[SetEntry | DropEntry | OpenIntent | SettleIntent, Field(discriminator="op")]

OPS = ("set", "drop", "intent", "settle")


def apply_op(state: State, op: JournalOp) -> None:
    """Apply one journalled change to `state` in place (the state takes the op's entry as is)."""
    match op:
        case SetEntry(name=name, entry=entry):
            state.models[name] = entry
        case DropEntry(name=name):
            state.models.pop(name, None)
        case OpenIntent(entry=entry):
            state.journal.append(entry)
        case SettleIntent(request_id=request_id):
            state.journal = [j for j in state.journal if j.request_id != request_id]
        case _:
            assert_never(op)
