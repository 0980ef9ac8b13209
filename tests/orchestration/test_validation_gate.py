"""The GX gate as blocking asset checks, on drops with corrupt images: a few bad rows are quarantined and
the rest versioned (WARN); a mostly bad drop stops the pipeline before a new dataset version (ERROR)."""

import json
from pathlib import Path

import dagster as dg
import pytest

from tests.orchestration.conftest import land_clean_drops


def corrupt_images(drop: Path, count: int) -> list[str]:
    """Overwrite the first `count` images of a landed drop with bytes that are not an image."""
    rows = [json.loads(line) for line in (drop / "manifest.jsonl").read_text().splitlines() if line.strip()]
    for row in rows[:count]:
        (drop / row["image"]).write_bytes(f"not a JPEG: {row['id']}".encode())  # distinct: no false leak
    return [row["id"] for row in rows[:count]]


def _run(defs, instance):
    return defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, raise_on_error=False)


def _image_check(result) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "image_decodes")


@pytest.fixture(scope="module")
def first_version(defs, instance, workspace):
    land_clean_drops(workspace, 1, 1)
    bad = corrupt_images(workspace / "landing" / "drop-0001", 2)  # 2 of 24 rows: under the 20% limit
    result = _run(defs, instance)
    return result, bad


def test_few_bad_rows_are_quarantined_and_the_rest_versioned(first_version, workspace):
    result, bad = first_version
    assert result.success
    check = _image_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["failing_rows"].value == 2
    quarantine = json.loads((workspace / "quarantine" / "drop-0001" / "quarantine.json").read_text())
    assert sorted(r["id"] for r in quarantine["rows"]) == sorted(bad)
    dataset = json.loads((workspace / "dataset" / "dataset.json").read_text())
    assert dataset["records"] == 22
    passed = {e.check_name for e in result.get_asset_check_evaluations() if e.passed}
    assert {"dvc_tracked_and_pushed", "enough_train_records", "id_unique", "no_train_eval_leak"} <= passed


def test_mostly_bad_drop_blocks_the_new_version(first_version, defs, instance, workspace):
    from mmcl.data.versioning import read_dvc_md5

    before = read_dvc_md5(workspace / "dataset.dvc")
    land_clean_drops(workspace, 2, 2)
    corrupt_images(workspace / "landing" / "drop-0002", 12)  # half the drop
    result = _run(defs, instance)
    assert not result.success
    check = _image_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["failing_fraction"].value == 0.5
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "validated_drop" in materialised and "dataset_version" not in materialised
    assert read_dvc_md5(workspace / "dataset.dvc") == before  # nothing already versioned changed
    # the bad rows are in quarantine with their reason, never silently dropped
    quarantine = json.loads((workspace / "quarantine" / "drop-0002" / "quarantine.json").read_text())
    assert len(quarantine["rows"]) == 12
    assert any(f["check"] == "image_decodes" for f in quarantine["rows"][0]["failures"])
