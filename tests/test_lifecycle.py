"""The model catalog and base-model lifecycles, through the CLI against the emulator: current
models plan cleanly (with a cost when priced), a retired model is refused with its dates, a
serving model whose base model retires soon is warned about in every plan format, one whose base
model retired is said to serve no more (plan, status, output), a baseModel bump keeps the old
endpoint serving; `reconciler models`; `models:` overrides validated with file:line errors.

Dates near today are written into reconciler.yaml as `models:` overrides computed from today, so
nothing depends on the wall clock beyond today's date."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from tests.clihelp import Cli, Result, write_config
from tests.gcsfake import new_bucket, put_object

CURRENT = ("gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-flash-lite")
TODAY = datetime.date.today()


def clean(r: Result, *codes: int) -> Result:
    assert r.code in (codes or (0,)), f"exit {r.code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
    assert "Traceback" not in r.out + r.err and "this is a bug" not in r.out + r.err
    return r


def serving(cli: Cli, emulator, name: str = "alpha", base: str = "gemini-3.5-flash") -> str:
    """Apply a model and let its job succeed; returns its endpoint."""
    cli.manifest(name, base=base)
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    cli.ok("refresh")
    return cli.state()["models"][name]["tunedModel"]["endpoint"]


@pytest.mark.parametrize("base", CURRENT)
def test_each_current_model_validates_and_plans_without_warning_and_with_a_cost(
        base: str, cli: Cli, emulator, fake_gcs_server: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs_server)
    bucket = new_bucket(fake_gcs_server)
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"x" * 4_000_000)
    write_config(cli.workdir, models={base: {"price": 2.0}})
    path = cli.manifest("alpha", base=base, spec={"pinDatasets": True})
    path.write_text(path.read_text().replace("gs://bucket/", f"gs://{bucket}/"))
    r = clean(cli("validate"))
    assert "Warning" not in r.err
    r = clean(cli("plan", "--format", "json"))
    assert "Warning" not in r.err
    body = r.json()
    assert body["warnings"] == [] and not body.get("errors")
    [change] = body["changes"]
    assert change["action"] == "create" and change["request"]["baseModel"] == base
    assert change["cost_usd"] == round(4_000_000 / 4 * 3 / 1e6 * 2.0, 2)
    assert "$2.00 per 1M" in change["cost_note"]
    clean(cli("apply", "--auto-approve", "--max-cost", "100"))
    assert emulator.stats()["requests"]["create"] == 1


def test_a_model_without_a_price_blocks_max_cost_and_says_how_to_set_one(
        cli: Cli, emulator, fake_gcs_server: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs_server)
    bucket = new_bucket(fake_gcs_server)
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"x" * 1000)
    path = cli.manifest("alpha", spec={"pinDatasets": True})
    path.write_text(path.read_text().replace("gs://bucket/", f"gs://{bucket}/"))
    r = clean(cli("apply", "--auto-approve", "--max-cost", "10"), 1)
    assert "--max-cost 10: no estimate for alpha (no price for gemini-3.5-flash (supervised tuning): set " \
           "prices: or models: in reconciler.yaml" in r.err
    assert emulator.stats()["requests"].get("create", 0) == 0
    # The older `prices:` setting still prices a model.
    write_config(cli.workdir, prices={"gemini-3.5-flash": 1.0})
    clean(cli("apply", "--auto-approve", "--max-cost", "10"))


def test_a_retired_model_is_refused_with_its_dates_and_successor(cli: Cli, emulator):
    cli.manifest("support-bot", base="gemini-2.0-flash-001")
    clean(cli("validate"))  # the manifest is well-formed; the plan judges the day
    r = clean(cli("plan"), 1)
    assert ("support-bot: gemini-2.0-flash-001 is closed to new tuning since 2026-01-05 (retired 2026-02-05); "
            "successor gemini-3.5-flash-lite") in r.err
    r = clean(cli("apply", "--auto-approve"), 1)
    assert "closed to new tuning since 2026-01-05" in r.err
    assert emulator.stats()["requests"].get("create", 0) == 0


def test_a_model_closed_by_an_override_is_refused(cli: Cli, emulator):
    closes = TODAY - datetime.timedelta(days=1)
    write_config(cli.workdir, models={"gemini-3.5-flash": {"tuningClosesDate": closes.isoformat()}})
    cli.manifest("alpha")
    r = clean(cli("plan", "--format", "json"), 1)
    assert f"alpha: gemini-3.5-flash is closed to new tuning since {closes.isoformat()}" in r.err


def test_a_serving_model_retiring_in_ten_days_is_warned_about_in_every_plan_format(cli: Cli, emulator):
    serving(cli, emulator)
    retires = TODAY + datetime.timedelta(days=10)
    write_config(cli.workdir, models={"gemini-3.5-flash": {"retirementDate": retires, "successor":
                                                          "gemini-3.1-flash-lite"}})
    warning = (f"alpha: base model gemini-3.5-flash retires {retires.isoformat()} (in 10 day(s)); ")
    text = clean(cli("--no-color", "plan", "--detailed-exitcode"))
    assert warning in text.out + text.err and "successor gemini-3.1-flash-lite" in text.out + text.err
    body = clean(cli("plan", "--format", "json")).json()
    [said] = [w for w in body["warnings"] if w.startswith(warning)]
    assert "stops serving then; successor gemini-3.1-flash-lite: change spec.baseModel and apply" in said
    assert [c["action"] for c in body["changes"]] == ["noop"]
    markdown = clean(cli("plan", "--format", "markdown")).out
    assert "#### warnings" in markdown and f"retires {retires.isoformat()} (in 10 day(s))" in markdown
    # A shorter window says nothing.
    write_config(cli.workdir, retirementWarningDays=5,
                 models={"gemini-3.5-flash": {"retirementDate": retires.isoformat()}})
    assert clean(cli("plan", "--format", "json")).json()["warnings"] == []


def test_after_retirement_the_model_is_shown_as_no_longer_serving(cli: Cli, emulator):
    endpoint = serving(cli, emulator)
    retired = TODAY - datetime.timedelta(days=1)
    write_config(cli.workdir, models={"gemini-3.5-flash": {"retirementDate": retired}})
    body = clean(cli("plan", "--format", "json", "--detailed-exitcode")).json()
    [change] = body["changes"]
    gone = f"no longer serving: base model gemini-3.5-flash retired {retired.isoformat()}"
    assert change["action"] == "noop" and gone in change["reason"] and change["notes"] == [gone]
    assert any("is no longer serving" in w for w in body["warnings"])
    status = clean(cli("status", "--format", "json")).json()
    assert gone in str(status), status
    out = clean(cli("output")).json()["alpha"]
    assert out["endpoint"] == endpoint and out["serving"] is False
    assert out["note"] == f"no longer serving: base model gemini-3.5-flash retired on {retired.isoformat()}"
    env = clean(cli("output", "--format", "env"))
    assert "ALPHA_ENDPOINT=\n" in env.out and "no longer serving" in env.err
    # Before the date, output says nothing more than before.
    write_config(cli.workdir)
    assert "serving" not in clean(cli("output")).json()["alpha"]


def test_a_base_model_bump_is_a_replace_that_keeps_the_old_endpoint_serving(cli: Cli, emulator):
    old = serving(cli, emulator, base="gemini-3.1-flash-lite")
    cli.manifest("alpha", base="gemini-3.5-flash")
    body = clean(cli("plan", "--format", "json")).json()
    [change] = body["changes"]
    assert change["action"] == "replace" and change["cancel_jobs"] == []
    assert "keeps serving until the new job succeeds" in change["reason"]
    assert [(d["path"], d["old"], d["new"]) for d in change["diff"]] == [
        ("baseModel", "gemini-3.1-flash-lite", "gemini-3.5-flash")]
    clean(cli("apply", "--auto-approve"))
    assert clean(cli("output")).json()["alpha"]["endpoint"] == old  # the new job runs; the old serves
    emulator.advance(10_000)
    clean(cli("refresh"))
    new = clean(cli("output")).json()["alpha"]["endpoint"]
    assert new and new != old


def test_models_command_prints_the_catalog_with_sources(cli: Cli):
    text = clean(cli("models")).out
    assert text.splitlines()[0].split()[:3] == ["MODEL", "STAGE", "TODAY"]
    table = text.split("Catalog read")[0].splitlines()[1:]
    rows = {line.split()[0]: line for line in table}
    assert set(CURRENT) <= set(rows) and "gemini-2.0-flash-001" in rows
    assert rows["gemini-3.5-flash"].split()[1:3] == ["ga", "open"]
    assert "2027-05-19+" in rows["gemini-3.5-flash"]
    assert "(read 2026-12-03)" in text and "model-versions" in text
    entries = clean(cli("models", "--format", "json")).json()
    by_id = {e["id"]: e for e in entries}
    flash = by_id["gemini-3.5-flash"]
    assert flash["retirement_date"] == {"value": "2027-05-19", "or_later": True, "read": "2026-12-03",
                                        "source": flash["retirement_date"]["source"]}
    assert flash["tuning_closes"]["value"] == "2027-04-19" and flash["tuning_closes"]["derived"] is True
    assert flash["adapter_sizes"]["supervised"]["value"] == [1, 2, 4, 8, 16]
    assert flash["price_per_million_training_tokens_usd"]["supervised"]["value"] is None  # none shipped
    assert by_id["gemini-2.0-flash-001"]["status"]["value"] == "retired"
    assert by_id["gemini-2.0-flash-001"]["successor"]["open_to_tuning"] == "gemini-3.5-flash-lite"
    assert clean(cli("models", "nope"), 1).err.startswith("Error: not in the model catalog: nope")


def test_models_command_shows_overrides_with_their_lines(cli: Cli):
    (cli.workdir / "reconciler.yaml").write_text(
        "project: demo-project\nregion: us-central1\nstack: test\n"  # 1-3
        "prices: {gemini-3.1-flash-lite: 1.5}\n"  # 4
        "models:\n"  # 5
        "  gemini-3.5-flash:\n"  # 6
        "    price: 3.25\n"  # 7
        "    retirementDate: 2027-01-31\n"  # 8
        "  acme-llm-001:\n"  # 9
        "    stage: preview\n"  # 10
        "    adapterSizes: {supervised: [4]}\n")  # 11
    [flash, lite, acme] = clean(cli("models", "gemini-3.5-flash", "gemini-3.1-flash-lite", "acme-llm-001",
                                    "--format", "json")).json()
    config = str(cli.workdir / "reconciler.yaml")
    assert flash["price_per_million_training_tokens_usd"]["supervised"] == {
        "value": 3.25, "source": f"{config}:7", "read": None}
    assert flash["retirement_date"]["value"] == "2027-01-31" and flash["retirement_date"]["source"] == f"{config}:8"
    assert flash["tuning_closes"] == {"value": "2026-12-31", "source": f"{config}:8", "read": None, "derived": True}
    assert lite["price_per_million_training_tokens_usd"]["preference"]["value"] == 1.5
    assert acme["stage"]["value"] == "preview" and acme["adapter_sizes"]["supervised"]["value"] == [4]
    text = clean(cli("models", "gemini-3.5-flash")).out
    assert f"[1] {config}:7" in text or f"{config}:7" in text


def test_model_overrides_are_validated_with_file_and_line(cli: Cli, emulator):
    path: Path = cli.workdir / "reconciler.yaml"
    path.write_text(
        "project: demo-project\n"  # 1
        "retirementWarningDays: -1\n"  # 2
        "models:\n"  # 3
        "  gemini-3.5-flash:\n"  # 4
        "    stage: sunset\n"  # 5
        "    retirementDate: next tuesday\n"  # 6
        "    adapterSizes: {supervised: [3]}\n"  # 7
        "    hyperParameters: {supervised: [epochs]}\n"  # 8
        "    price: -2\n"  # 9
        "    colour: red\n"  # 10
        "  Bad Name:\n"  # 11
        "    stage: ga\n")  # 12
    r = clean(cli("models"), 1)
    for line, where in ((2, "retirementWarningDays"), (5, "models.gemini-3.5-flash.stage"),
                        (6, "models.gemini-3.5-flash.retirementDate"),
                        (7, "models.gemini-3.5-flash.adapterSizes.supervised[0]"),
                        (8, "models.gemini-3.5-flash.hyperParameters.supervised[0]"),
                        (9, "models.gemini-3.5-flash.price"), (10, "models.gemini-3.5-flash.colour: unknown setting")):
        assert f"reconciler.yaml:{line}: {where}" in r.err, (line, r.err)
    assert "reconciler.yaml:11: models.Bad Name" in r.err
    assert not any(emulator.stats()["requests"].values())


def test_a_continuation_shares_its_chains_base_model_lifecycle(cli: Cli, emulator):
    """A continuation's request has no baseModel: its lifecycle is its chain's root base model's —
    closed to new tuning, the child is refused too, naming that model."""
    cli.manifest("parent", base="gemini-3.5-flash")
    child = cli.manifest("child", base="gemini-3.5-flash", spec={"baseModel": None, "preTunedModel": {"model": "parent"}})
    child.write_text(child.read_text().replace("  baseModel: null\n", ""))
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    closes = TODAY - datetime.timedelta(days=1)
    write_config(cli.workdir, models={"gemini-3.5-flash": {"tuningClosesDate": closes.isoformat()}})
    r = cli("plan")
    assert r.code == 1 and "child: gemini-3.5-flash is closed to new tuning" in r.err, r.out + r.err
