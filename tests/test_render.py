"""Rendering: the markdown plan stays under GitHub's comment limit, whatever the plan's size."""

from __future__ import annotations

from reconciler.plan import FieldChange, Plan, parse_change
from reconciler.render import GITHUB_COMMENT_LIMIT, plan_markdown, plan_text


def big_plan(n: int) -> Plan:
    changes = []
    for i in range(n):
        action = ("create", "replace", "cancel", "noop")[i % 4]
        creating = {"spec_hash": "h", "request": {"baseModel": "b"}, "request_id": f"r{i}"}
        changes.append(parse_change({
            "action": action, "name": f"model-{i:05d}", "reason": "spec changed" if action == "replace" else "x" * 40,
            "job": f"projects/1/locations/us-central1/tuningJobs/{i}",
            "diff": [FieldChange(path="supervisedTuningSpec.hyperParameters.epochCount", kind="changed", old=3, new=i)]
            if action == "replace" else [],
            "cancel_jobs": [f"projects/1/locations/us-central1/tuningJobs/{i}"] if action == "cancel" else [],
            **(creating if action in ("create", "replace") else {}),
        }))
    return Plan(stack="big", parents=[], changes=changes, fingerprint="f")


def test_markdown_of_a_huge_plan_fits_a_github_comment_and_says_what_was_cut():
    md = plan_markdown(big_plan(8000))
    assert len(md) < GITHUB_COMMENT_LIMIT
    assert md.startswith("### Tuning plan for stack `big`")
    assert "2000 to create, 2000 to replace, 2000 to cancel" in md.split("\n")[2]
    assert "**Cut:**" in md and "reconciler plan --format json" in md
    assert md.count("<details>") == md.count("</details>")
    assert md.count("```") % 2 == 0


def test_small_plan_is_complete():
    md = plan_markdown(big_plan(12))
    assert "Cut" not in md and "model-00011" in md
    assert "~ supervisedTuningSpec.hyperParameters.epochCount: 3 → 1" in md


def test_text_plan_groups_by_action_with_counts_first():
    from rich.text import Text

    text = Text.from_markup(plan_text(big_plan(8))).plain
    first, *rest = text.splitlines()
    assert "2 to create, 2 to replace" in first and "cancels 2 running job(s)" in first
    order = [line.split()[1] for line in rest if line.strip().startswith(("-/+", "+", "-"))]
    assert order == ["replace", "replace", "create", "create", "cancel", "cancel"]
