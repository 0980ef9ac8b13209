"""Alignment drift through Dagster: a drop with 10% shuffled captions fails no_alignment_drift, its shuffled
rows are among the named suspects, and training_data_aligned blocks trained_model until a person overrides.

Real Dagster instance, GX, DVC, registry and a real trained model. The champion is trained here with
configs/tiny.yaml on the versioned data with both towers frozen, 160 px images, 64-d heads, 10 epochs (the
tiny profile's 3-step 64 px model matches captions to images barely above chance) and registered + promoted in the real registry; the promotion asset
itself is not run: its stored value (what JsonIOManager would have written) is put in place, so the test
exercises the alignment assets and gates and not the evaluation / promotion path.
"""

import json
import random
import subprocess
import sys

import dagster as dg
import pytest

pytestmark = pytest.mark.slow

SHUFFLED_SHARE = 0.10
CLEAN_PER_DROP = 75  # two clean drops: ~36 held-out (dev/test) images for the reference
SHUFFLED_RECORDS = 60


def _run(defs, instance, assets: list[str], tags: dict[str, str] | None = None):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(a) for a in assets],
                                  tags=tags or {}, raise_on_error=False)


def _check(result, name: str):
    found = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(found) == 1, f"check {name} evaluated {len(found)} times"
    return found[0]


def _write_shuffled_drop(landing, name: str, seed: int = 7) -> set[str]:
    """A drop of unseen Flickr8k records in which SHUFFLED_SHARE of the caption rows carry another record's
    caption (moved cyclically among the chosen rows); returns the row ids "<record>#<k>" that were moved."""
    from mmcl.data.drops import write_drop
    from mmcl.data.flickr import load_flickr_triples

    triples = load_flickr_triples()
    random.Random(0).shuffle(triples)  # simulate_drops' order: records past the clean drops are unseen
    chosen = triples[2 * CLEAN_PER_DROP: 2 * CLEAN_PER_DROP + SHUFFLED_RECORDS]
    captions = [list(t.captions) for t in chosen]
    slots = [(i, k) for i in range(len(chosen)) for k in range(len(captions[i]))]
    moved = sorted(random.Random(seed).sample(slots, round(SHUFFLED_SHARE * len(slots))))
    sources = moved[-1:] + moved[:-1]  # slot j takes the caption of the slot before it
    texts = [captions[i][k] for i, k in sources]
    for (i, k), text in zip(moved, texts, strict=True):
        captions[i][k] = text
    records = [{"id": t.image_id, "group": t.image_id, "split": t.split, "caption": captions[i][0],
                "captions": captions[i], "image": f"images/{t.image_id}.jpg", "_image_src": t.image_path}
               for i, t in enumerate(chosen)]
    write_drop(landing / name, records, {"name": name, "kind": "shuffled", "shuffled_share": SHUFFLED_SHARE})
    # a caption moved to another slot of its own record is no mismatch
    return {f"{chosen[i].image_id}#{k}" for (i, k), (j, _) in zip(moved, sources, strict=True) if i != j}


def test_alignment_definitions(defs):
    """The gate's pieces are in the code location: blocking checks, the job and the sensor that runs it."""
    from orchestration.defs.monitoring.alignment import alignment_drift, training_data_aligned

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"alignment_reference", "champion_change", "alignment_drift"} <= keys
    specs = {spec.name: spec for d in (alignment_drift, training_data_aligned) for spec in d.check_specs}
    assert specs["no_alignment_drift"].blocking and specs["training_data_aligned"].blocking
    assert specs["training_data_aligned"].asset_key == dg.AssetKey("teacher_scores")
    assert "mmcl/alignment_override" in specs["training_data_aligned"].description
    assert defs.resolve_sensor_def("alignment_drop_sensor").job_name == "alignment_check_job"


@pytest.fixture(scope="module")
def champion(defs, instance, workspace):
    """Two clean drops versioned, a champion trained on them, its alignment reference materialised."""
    from mmcl.data.drops import simulate_drops
    from mmcl.registry_models import ModelRegistry

    simulate_drops(workspace / "landing", n_drops=2, per_drop=CLEAN_PER_DROP)
    result = _run(defs, instance, ["raw_drop", "validated_drop", "dataset_version"])
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    version = json.loads((workspace / "dagster_io" / "dataset_version.json").read_text())
    runs = workspace / "champion_runs"
    subprocess.run([sys.executable, "-m", "mmcl", "train", "--config", "configs/tiny.yaml",
                    "--set", "data.modalities=[text,image]", "--set", f"data.data_dir={version['train_view']}",
                    "--set", "model.encoders.text.freeze=true", "--set", "data.image_size=160",
                    "--set", "model.encoders.image.options.image_size=160", "--set", "model.embed_dim=64",
                    "--set", "train.max_epochs=10", "--set", "data.batch_size=32", "--set", f"runs_dir={runs}"],
                   check=True, capture_output=True, timeout=600)
    (run_dir,) = [p for p in runs.iterdir() if (p / "model.pt").is_file()]
    reg = ModelRegistry(workspace / "models")
    entry = reg.register("champion-a", run_dir, dataset_md5=version["md5"])
    reg.promote("champion-a", force=True, by="test", reason="a champion for the alignment gate")
    promoted = {"champion": "champion-a", "previous": None, "model_file": entry["model_file"],
                "run_dir": str(run_dir), "dataset_md5": version["md5"]}
    (workspace / "dagster_io" / "promoted_model.json").write_text(json.dumps(promoted))
    result = _run(defs, instance, ["alignment_reference", "champion_change"])
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return promoted


def test_shuffled_drop_fails_names_rows_and_blocks_training(defs, instance, workspace, champion):
    shuffled = _write_shuffled_drop(workspace / "landing", "drop-shuffled")
    result = _run(defs, instance, ["raw_drop", "validated_drop", "dataset_version", "alignment_drift"])
    check = _check(result, "no_alignment_drift")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    value = json.loads((workspace / "dagster_io" / "alignment_drift.json").read_text())
    assert value["drifted"] == ["drop-shuffled"]
    verdict = json.loads((workspace / "monitoring" / "alignment" / "checks" / "champion-a" / "drop-shuffled"
                          / "result.json").read_text())
    suspects = verdict["pairs"]["image-text"]["suspects"]  # top 20 rows, worst first
    precision = sum(s["row_id"] in shuffled for s in suspects) / len(suspects)
    base_rate = len(shuffled) / (SHUFFLED_RECORDS * 5)  # precision of a random ranking
    print(f"precision of the top {len(suspects)} suspects: {precision:.2f} ({len(shuffled)} rows shuffled, "
          f"random ranking {base_rate:.2f})")
    # the tiny champion is weak (held-out text->image R@5 ~45% of 60 images): the bar is "far above random"
    assert precision >= 3 * base_rate
    assert {"drop", "row_id", "caption", "image"} <= set(suspects[0])
    metadata = check.metadata
    assert "top_suspects" in metadata and "drop-shuffled/image-text/p_value" in metadata
    assert "drop-shuffled/plot" in metadata

    blocked = _run(defs, instance, ["teacher_scores", "trained_model"])
    gate = _check(blocked, "training_data_aligned")
    assert not gate.passed and gate.metadata["blocked"].value == ["drop-shuffled"]
    assert not any(e.asset_key == dg.AssetKey("trained_model") for e in blocked.get_asset_materialization_events())

    overridden = _run(defs, instance, ["teacher_scores"], tags={"mmcl/alignment_override": "drop-shuffled"})
    gate = _check(overridden, "training_data_aligned")
    assert gate.passed and gate.metadata["overridden"].value == ["drop-shuffled"]
