"""The champion's index: built from real model files over a real dataset, bound to (model, dataset version),
followed through promotion and rollback, stale indexes refused, `mmcl search` end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mmcl.cli import main
from mmcl.index.search import ChampionSearcher
from mmcl.index.store import (
    Index,
    StaleIndex,
    build_index,
    index_dir,
    open_champion_index,
    set_current_dataset,
)
from mmcl.registry_models import ModelRegistry
from tests.mmcl.index.conftest import MD5_1

MD5_2 = "fedcba9876543210fedcba9876543210.dir"


@pytest.fixture
def registry(tmp_path, run_dirs):
    reg = ModelRegistry(tmp_path / "models")
    for model_id, run in run_dirs.items():
        reg.register(model_id, run, dataset_md5=MD5_1)
    return reg


def _build(reg, model_id, data, root, md5=MD5_1, built=None):
    """build_index, or (md5 MD5_1 and `built` given) a copy of the session's prebuilt index (the same files)."""
    if built is None or md5 != MD5_1:
        return build_index(model_id, reg.entry(model_id)["model_file"], data, md5, root)
    shutil.copytree(built[model_id], index_dir(root, model_id, md5))
    set_current_dataset(root, md5)
    return Index.load(index_dir(root, model_id, md5)).meta


def test_build_records_model_and_dataset_and_search_is_exact(registry, small_data, tmp_path):
    meta = _build(registry, "tiny-a", small_data, tmp_path / "idx")
    assert meta["model_id"] == "tiny-a" and meta["dataset_md5"] == MD5_1 and not meta["reused"]
    assert meta["counts"] == {"image": 12, "audio": 12, "text": 60}
    index = Index.load(meta["folder"])
    for m, emb in index.embeddings.items():
        assert emb.dtype == np.float32 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4), m
    q = index.embeddings["image"][3]
    hits = index.search(q, k=5)
    assert hits["image"][0]["row"] == 3 and hits["image"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    brute = np.argsort(-(index.embeddings["text"] @ q), kind="stable")[:5]
    assert [h["row"] for h in hits["text"]] == list(brute)
    assert [h["rank"] for h in hits["text"]] == [1, 2, 3, 4, 5]
    assert _build(registry, "tiny-a", small_data, tmp_path / "idx")["reused"]  # same model + data: no rebuild


def test_rollback_serves_the_first_models_index(registry, small_data, tmp_path, built):
    root = tmp_path / "idx"
    registry.promote("tiny-a")
    _build(registry, "tiny-a", small_data, root, built=built)
    searcher = ChampionSearcher(registry.root, root)
    first = searcher.search("text", "a dog runs on the beach", k=5)
    assert first["champion"] == "tiny-a"

    registry.promote("tiny-b", force=True, by="test", reason="a second champion with its own index")
    with pytest.raises(StaleIndex, match="no index for the champion tiny-b"):
        searcher.search("text", "a dog runs on the beach", k=5)
    _build(registry, "tiny-b", small_data, root, built=built)
    second = searcher.search("text", "a dog runs on the beach", k=5)
    assert second["champion"] == "tiny-b" and second["results"] != first["results"]

    assert registry.rollback() == ("tiny-b", "tiny-a")
    back = searcher.search("text", "a dog runs on the beach", k=5)
    assert back["champion"] == "tiny-a" and back["results"] == first["results"]
    assert ChampionSearcher(registry.root, root).search("text", "a dog runs on the beach", k=5)["results"] == \
        first["results"]  # a fresh process sees the same


def test_stale_indexes_are_refused_with_the_reason(registry, small_data, tmp_path, built, run_dirs):
    root = tmp_path / "idx"
    with pytest.raises(StaleIndex, match="no champion"):
        open_champion_index(registry.root, root)
    registry.promote("tiny-a")
    _build(registry, "tiny-a", small_data, root, built=built)
    with pytest.raises(StaleIndex, match=f"current dataset version is {MD5_2}"):
        open_champion_index(registry.root, root, dataset_md5=MD5_2)
    _build(registry, "tiny-b", small_data, root, md5=MD5_2)  # a newer dataset version, indexed by another model
    with pytest.raises(StaleIndex, match=f"tiny-a was indexed on dataset version\\(s\\) {MD5_1}.*current .* {MD5_2}"):
        open_champion_index(registry.root, root)
    assert open_champion_index(registry.root, root, dataset_md5=MD5_1)[0].meta["model_id"] == "tiny-a"
    # the champion's model file replaced in place (same id, other weights): its index no longer matches
    model_file = registry.entry("tiny-a")["model_file"]
    shutil.copyfile(run_dirs["tiny-b"] / "model.pt", model_file + ".new")
    shutil.move(model_file + ".new", model_file)
    with pytest.raises(StaleIndex, match="built from a model file with sha256"):
        open_champion_index(registry.root, root, dataset_md5=MD5_1)


def test_a_damaged_or_escaping_index_is_refused(registry, small_data, tmp_path, built):
    meta = _build(registry, "tiny-a", small_data, tmp_path / "idx", built=built)
    folder = index_dir(tmp_path / "idx", "tiny-a", MD5_1)
    items = json.loads((folder / "items.json").read_text())
    items["image"][0]["path"] = "/etc/passwd"
    (folder / "items.json").write_text(json.dumps(items))
    with pytest.raises(Exception, match="escapes the dataset root"):
        Index.load(folder).media_path("image", 0)
    np.save(folder / "text.npy", np.zeros((3, meta["dim"]), np.float32))
    with pytest.raises(StaleIndex, match="does not match 60 items"):
        Index.load(folder)
    with pytest.raises(Exception, match="cannot name an index folder"):
        index_dir(tmp_path / "idx", "../escape", MD5_1)


def test_query_errors_are_clear(registry, small_data, tmp_path, built):
    registry.promote("tiny-a")
    _build(registry, "tiny-a", small_data, tmp_path / "idx", built=built)
    searcher = ChampionSearcher(registry.root, tmp_path / "idx")
    with pytest.raises(Exception, match="text query is empty"):
        searcher.search("text", "   ")
    with pytest.raises(Exception, match="unknown query modality 'video'"):
        searcher.search("video", "x")
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a picture")
    with pytest.raises(Exception, match="notes.jpg: cannot decode image"):
        searcher.search("image", not_an_image)
    with pytest.raises(Exception, match="cannot decode audio"):
        searcher.search("audio", b"garbage bytes", upload_name="clip.mp3")


def test_search_cli_prints_ranked_items_with_scores_and_paths(registry, small_data, tmp_path, capsys, flickr_records):
    registry.promote("tiny-a")
    root = tmp_path / "idx"
    assert main(["index", "build", "--store", str(registry.root), "--root", str(root), "--data-dir", str(small_data),
                 "--dataset-md5", MD5_1, "--threads", "1"]) == 0
    capsys.readouterr()
    image = next(small_data.rglob("*.jpg"))
    assert main(["search", "--store", str(registry.root), "--root", str(root), "--image", str(image), "--k", "3",
                 "--in", "image", "text"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.startswith("    1") or line.startswith("  ")]
    assert "champion tiny-a" in out and "image:" in out and "text:" in out
    top_image = next(fields for fields in lines if fields[0] == "1")
    assert top_image[2] == image.stem and top_image[3] == str(image) and float(top_image[1]) == pytest.approx(1, abs=1e-3)
    assert main(["search", "--store", str(registry.root), "--root", str(root), "--text", "a dog", "--k", "2",
                 "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert set(reply["results"]) == {"image", "audio", "text"} and all(len(v) == 2 for v in reply["results"].values())
    assert main(["search", "--store", str(registry.root), "--root", str(root), "--text", " "]) == 2
    assert "text query is empty" in capsys.readouterr().err
