"""The plan's types: the closed set of actions is complete everywhere it must be, and changes keep
their documented wire form (docs/plan-format.md) in JSON and saved plans.

Fast unit tests: no emulator.
"""

from __future__ import annotations

import json
import typing

import pytest
from pydantic import ValidationError

from reconciler.plan import ACTIONS, Action, Change, Plan, fingerprint, parse_change
from reconciler.plan.types import WIRE_DEFAULTS
from reconciler.render import ORDER, plan_json, plan_text, style

MINIMAL: dict[str, dict[str, object]] = {
    "create": {"spec_hash": "h", "request": {"baseModel": "b"}, "request_id": "r"},
    "replace": {"spec_hash": "h", "request": {"baseModel": "b"}, "request_id": "r", "cancel_jobs": ["j0"]},
    "recreate": {"spec_hash": "h", "request": {"baseModel": "b"}, "request_id": "r"},
    "move": {"moved_from": "old", "adopt_jobs": {"j": "h"}},
    "cancel": {"cancel_jobs": ["j"]},
    "forget": {},
    "noop": {},
}


def change(action: str, **extra: object) -> Change:
    return parse_change({"action": action, "name": "m", "reason": "why", **MINIMAL[action], **extra})


def test_every_action_has_a_variant_a_style_and_a_place_in_the_order():
    variants = typing.get_args(typing.get_args(Change)[0])
    covered = {a for v in variants for a in typing.get_args(v.model_fields["action"].annotation)}
    assert covered == set(Action)
    assert set(ORDER) == set(ACTIONS) and len(ORDER) == len(ACTIONS)
    assert len({style(a).rank for a in Action}) == len(Action)
    assert set(MINIMAL) == {a.value for a in Action}  # this test itself covers every action


@pytest.mark.parametrize("action", [a.value for a in Action])
def test_every_change_has_every_documented_field_on_the_wire_and_reads_back(action):
    c = change(action)
    wire = json.loads(c.model_dump_json())
    assert list(wire)[:3] == ["action", "name", "reason"]
    assert set(wire) == {"action", "name", "reason", *WIRE_DEFAULTS}
    assert parse_change(wire) == c


def test_a_field_of_another_action_is_refused_unless_absent():
    with pytest.raises(ValidationError):
        change("noop", request={"baseModel": "evil"})
    with pytest.raises(ValidationError):
        change("forget", cancel_jobs=["j"])
    with pytest.raises(ValidationError):
        change("noop", surprise=1)
    assert change("noop", request=None, cancel_jobs=[]).action is Action.NOOP


def test_a_variant_needs_what_its_action_acts_on():
    for action, field in (("create", "request_id"), ("cancel", "cancel_jobs"), ("move", "moved_from")):
        data = {"action": action, "name": "m", "reason": "r", **MINIMAL[action]}
        del data[field]
        with pytest.raises(ValidationError):
            parse_change(data)


def test_a_plan_round_trips_through_its_saved_form_with_the_same_fingerprint():
    changes = [change(a.value) for a in Action]
    plan = Plan(stack="s", parents=[], changes=changes, fingerprint="")
    plan = plan.model_copy(update={"fingerprint": fingerprint(plan)})
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again == plan and fingerprint(again) == plan.fingerprint
    assert json.loads(plan_json(plan))["summary"]["changes"] == len(Action) - 1
    text = plan_text(plan, show_noop=True)
    for a in Action:
        assert f" {a.value}" in text
