"""Computed columns on a real image and audio: path safety (also through symlinks), leakage, duplicates."""

from __future__ import annotations

import json
import os
import shutil

from mmcl.data.manifest import read_drop, sha256_file
from mmcl.validate.columns import Reference, compute_table, normalise_caption


def make_drop(tmp_path, flickr_records, records):
    drop = tmp_path / "drop-c"
    (drop / "images").mkdir(parents=True)
    real = next(r for r in flickr_records if r.audio_path is not None)
    shutil.copy(real.image_path, drop / "images" / "a.jpg")
    shutil.copy(real.audio_path, drop / "a.mp3")
    (drop / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return drop


def test_paths_escaping_through_dotdot_absolute_or_symlinks_are_refused(tmp_path, flickr_records):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"not yours")
    rows = [{"id": f"r{i}", "split": "train", "image": path} for i, path in enumerate(
        ["images/a.jpg", "./images/../images/a.jpg", "../outside/secret.jpg", str(outside / "secret.jpg"),
         "images/link.jpg", "linked/secret.jpg", "images/missing.jpg", " "])]
    drop = make_drop(tmp_path, flickr_records, rows)
    os.symlink(outside / "secret.jpg", drop / "images" / "link.jpg")
    os.symlink(outside, drop / "linked")
    _, table = compute_table(read_drop(drop), media_check="full")
    errors = [(r["image_path_error"], r["image_error"]) for r in table]
    assert errors[0] == (None, None) and errors[1] == (None, None)
    assert "escapes the dataset root" in errors[2][0]
    assert "absolute path" in errors[3][0]
    # a symlink is named as one (issue #12, class 9), even one that would stay inside the drop
    assert errors[4][0] == f"image path 'images/link.jpg': is a symbolic link (link.jpg -> {outside / 'secret.jpg'}): " \
        "refused, put the file itself in the drop"
    assert errors[5][0].startswith("image path 'linked/secret.jpg': is a symbolic link (linked -> ")
    assert errors[6] == (None, "image file not found: missing.jpg")
    assert "empty path" in errors[7][0]
    assert table[0]["image_sha256"] == sha256_file(drop / "images" / "a.jpg")
    assert all(r["image_sha256"] is None for r in table[2:6])  # never read outside the drop


def test_leakage_and_near_duplicates_within_the_drop_and_against_the_reference(tmp_path, flickr_records):
    rows = [
        {"id": "t1", "split": "train", "image": "images/a.jpg", "caption": "A dog runs ."},
        {"id": "e1", "split": "test", "image": "images/a.jpg", "caption": "a DOG, runs!"},
        {"id": "e2", "split": "dev", "audio": "a.mp3", "caption": "Something else"},
        {"id": "n1", "split": "none", "image": "images/a.jpg", "caption": "Unrelated"},
    ]
    drop = make_drop(tmp_path, flickr_records, rows)
    reference = Reference()
    reference.add([{"id": "old", "split": "train", "source_drop": "drop-0001", "caption": "something ELSE",
                    "audio_sha256": sha256_file(drop / "a.mp3")}])
    _, table = compute_table(read_drop(drop), reference, media_check="exists")
    by_id = {r["id"]: r for r in table}
    assert by_id["t1"]["leak_error"] is None and by_id["n1"]["leak_error"] is None
    assert by_id["e1"]["leak_field"] == "image" and "train record 't1' (row 1) of this drop" in by_id["e1"]["leak_error"]
    assert by_id["e2"]["leak_field"] == "audio" and "versioned train record 'old'" in by_id["e2"]["leak_error"]
    assert by_id["e1"]["caption_duplicate_of"] == "caption is a near-duplicate of record 't1' (row 1)"
    assert "versioned record 'old'" in by_id["e2"]["caption_duplicate_of"]
    assert normalise_caption("A  dog,runs .") == "a dog runs"
