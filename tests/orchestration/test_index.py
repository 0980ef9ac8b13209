"""champion_index in a real Dagster instance: built downstream of promoted_model for the dataset version, reused
after a rollback (the first champion's index answers again), searchable through mmcl's searcher.

The upstream values (promoted_model, dataset_version) are the JSON documents the project's IO manager stores,
written here for a real dataset folder and real registered model files, so only champion_index is materialised.
"""

import json

import dagster as dg
import pytest

from mmcl.index.search import ChampionSearcher
from mmcl.registry_models import ModelRegistry
from tests.mmcl.index.conftest import N_IMAGES, tiny_model_file, write_subset

MD5 = "00112233445566778899aabbccddeeff.dir"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, workspace, flickr_records):
    data = write_subset([r for r in flickr_records if r.audio_path][:N_IMAGES], tmp_path_factory.mktemp("view"))
    registry = ModelRegistry(workspace / "models")
    for model_id, seed in (("tiny-a", 0), ("tiny-b", 1)):
        registry.register(model_id, tiny_model_file(tmp_path_factory.mktemp(model_id), seed), dataset_md5=MD5)
    io = workspace / "dagster_io"
    io.mkdir(parents=True, exist_ok=True)
    (io / "dataset_version.json").write_text(json.dumps({"md5": MD5, "train_view": str(data), "source_drops": []}))
    return registry, io


def _materialise(defs, instance, registry, io) -> dict:
    champion = registry.champion()
    (io / "promoted_model.json").write_text(json.dumps({
        "champion": champion["id"], "model_file": champion["model_file"], "dataset_md5": MD5}))
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("champion_index")])
    assert result.success
    return result.output_for_node("champion_index")


def test_rollback_serves_the_first_champions_index(defs, instance, workspace, setup):
    registry, io = setup
    registry.promote("tiny-a")
    first = _materialise(defs, instance, registry, io)
    assert (first["model_id"], first["dataset_md5"], first["reused"]) == ("tiny-a", MD5, False)
    assert first["counts"] == {"image": N_IMAGES, "audio": N_IMAGES, "text": 5 * N_IMAGES}
    searcher = ChampionSearcher(workspace / "models", workspace / "indexes")
    before = searcher.search("text", "two dogs play in the snow", k=4)

    registry.promote("tiny-b", force=True, by="test", reason="a second champion with its own index")
    second = _materialise(defs, instance, registry, io)
    assert second["model_id"] == "tiny-b" and not second["reused"] and second["folder"] != first["folder"]
    assert searcher.search("text", "two dogs play in the snow", k=4)["champion"] == "tiny-b"

    registry.rollback()
    again = _materialise(defs, instance, registry, io)
    assert again["reused"] and again["folder"] == first["folder"] and again["model_sha256"] == first["model_sha256"]
    after = searcher.search("text", "two dogs play in the snow", k=4)
    assert after["champion"] == "tiny-a" and after["results"] == before["results"]

    event = instance.get_latest_materialization_event(dg.AssetKey("champion_index"))
    materialization = event.asset_materialization
    assert materialization.tags["dagster/data_version"] == f"tiny-a:{MD5}"
    assert materialization.metadata["reused"].value == "True"
