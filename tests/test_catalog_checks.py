"""The base-model catalog in `validate`: a parameter a known model does not take, an adapter
size it does not offer, an unknown model only warned about — through the CLI."""

from __future__ import annotations

from tests.clihelp import Cli, write


# -- 1. base-model catalog in validate -----------------------------------------------------------
def manifest_text(name: str, base: str, hyper: str) -> str:
    """Lines: 6 baseModel, 10 epochCount, 11 the `hyper` line (when given)."""
    return (
        "apiVersion: reconciler/v1\n"  # 1
        "kind: TunedModel\n"  # 2
        "metadata:\n"  # 3
        f"  name: {name}\n"  # 4
        "spec:\n"  # 5
        f"  baseModel: {base}\n"  # 6
        "  supervisedTuningSpec:\n"  # 7
        f"    trainingDatasetUri: gs://bucket/{name}/train.jsonl\n"  # 8
        "    hyperParameters:\n"  # 9
        "      epochCount: 3\n"  # 10
        + (f"      {hyper}\n" if hyper else "")  # 11
    )


def test_validate_refuses_a_parameter_the_base_model_does_not_take(cli: Cli, emulator):
    # A model added in reconciler.yaml's `models:` that takes no adapterSize.
    (cli.workdir / "reconciler.yaml").write_text(
        (cli.workdir / "reconciler.yaml").read_text()
        + "models:\n  acme-llm-001:\n    hyperParameters: {supervised: [epochCount, learningRateMultiplier]}\n")
    manifests = cli.workdir / "manifests"
    write(manifests / "legacy.yaml", manifest_text("legacy", "acme-llm-001", "adapterSize: ADAPTER_SIZE_FOUR"))
    r = cli("validate")
    assert r.code == 1, r.out + r.err
    assert ("manifests/legacy.yaml:11: spec.supervisedTuningSpec.hyperParameters.adapterSize: "
            "acme-llm-001 does not accept adapterSize") in r.err
    assert "Traceback" not in r.err
    # With the publisher prefix the catalog still knows the model.
    write(manifests / "legacy.yaml", manifest_text("legacy", "publishers/google/models/acme-llm-001",
                                                  "adapterSize: ADAPTER_SIZE_FOUR"))
    r = cli("validate")
    assert r.code == 1 and "legacy.yaml:11:" in r.err and "does not accept adapterSize" in r.err
    # plan refuses the same manifest before any API call.
    assert cli("plan").code == 1 and not any(emulator.stats()["requests"].values())
    # The model itself is fine: without adapterSize the manifest is valid, and known (no warning).
    write(manifests / "legacy.yaml", manifest_text("legacy", "acme-llm-001", "learningRateMultiplier: 1.0"))
    r = cli.ok("validate")
    assert "1 manifest(s) in 1 file(s) are valid." in r.out and "Warning" not in r.err


def test_validate_refuses_an_adapter_size_the_base_model_does_not_offer(cli: Cli):
    write(cli.workdir / "manifests" / "pro.yaml",
          manifest_text("pro", "gemini-3.5-flash", "adapterSize: ADAPTER_SIZE_THIRTY_TWO"))
    r = cli("validate")
    assert r.code == 1
    assert ("manifests/pro.yaml:11: spec.supervisedTuningSpec.hyperParameters.adapterSize: gemini-3.5-flash "
            "accepts ADAPTER_SIZE_ONE, ADAPTER_SIZE_TWO, ADAPTER_SIZE_FOUR, ADAPTER_SIZE_EIGHT, ADAPTER_SIZE_SIXTEEN, "
            "not ADAPTER_SIZE_THIRTY_TWO") in r.err
    # A retired model keeps its documented sizes (gemini-1.5-pro-002: 1 and 4; "higher values fail").
    write(cli.workdir / "manifests" / "pro.yaml",
          manifest_text("pro", "gemini-1.5-pro-002", "adapterSize: ADAPTER_SIZE_EIGHT"))
    r = cli("validate")
    assert r.code == 1 and ("gemini-1.5-pro-002 accepts ADAPTER_SIZE_ONE, ADAPTER_SIZE_FOUR, not "
                            "ADAPTER_SIZE_EIGHT") in r.err


def test_validate_only_warns_about_an_unknown_base_model(cli: Cli):
    write(cli.workdir / "manifests" / "novel.yaml",
          manifest_text("novel", "gemini-9.9-ultra-001", "adapterSize: ADAPTER_SIZE_THIRTY_TWO"))
    r = cli("validate")
    assert r.code == 0, r.out + r.err
    assert ("Warning: manifests/novel.yaml:6: spec.baseModel: 'gemini-9.9-ultra-001' is not in the "
            "reconciler's catalog of tunable models; the API will decide") in r.err
    assert "1 manifest(s) in 1 file(s) are valid." in r.out


