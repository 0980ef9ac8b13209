"""Hostile inputs made here, through the real ingest -> GX validation -> versioning path (issue #12).

Every hostile row is asserted with the exact reason a user reads (check, field, line), and the good rows of
the same drops are versioned. Classes: 1 decoders (bombs, truncated, text as image, empty files, forged
audio headers), 9 symbolic links, paths that escape, ids that are paths, bad UTF-8, huge captions,
duplicate ids; 2 media that change after validation; 5 shard metadata that would escape an export and
safety checks that cannot be lowered; 6 unreadable lineage records and bad --workers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mmcl.cli import main
from mmcl.data.landing import ingest_drops
from mmcl.data.manifest import sha256_file
from mmcl.data.shards import build_dataset, export_flickr_layout, iter_shard, read_index, write_shard
from mmcl.data.versioning import version_dataset
from mmcl.errors import DataError, UserError
from mmcl.lineage import LineageStore
from mmcl.validate.gate import Areas, run_gate
from mmcl.validate.runner import validate_drop

BOMB = ("image does not decode: DecompressionBombError: Image size (3600000000 pixels) exceeds limit of "
        "178956970 pixels, could be decompression bomb DOS attack.")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, fh):
    """Six drops of at most six rows, each with good rows beside the hostile ones, landed, ingested,
    validated and versioned (no DVC: the kill suite covers DVC)."""
    root = tmp_path_factory.mktemp("hostile")
    landing, outside = root / "landing", root / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(fh.png_bytes(7))
    good = {}

    def drop(name, hostile_rows, hostile_files, n_good=1, **kwargs):
        rows, files = fh.good_rows(f"{name}-ok", n_good, seed=len(good) + 1)
        good[name] = [r["id"] for r in rows]
        return fh.write_drop(landing, name, hostile_rows + rows, {**hostile_files, **files}, **kwargs)

    png32 = fh.png_bytes(3, size=32)
    jpeg = fh.jpeg_bytes(4, size=32)
    drop("img1", [{"id": "bomb", "split": "train", "image": "i/bomb.png"},
                  {"id": "bomb-warn", "split": "train", "image": "i/bomb2.png"},
                  {"id": "cut-png", "split": "train", "image": "i/cut.png"}],
         {"i/bomb.png": fh.png_header_only(60000, 60000), "i/bomb2.png": fh.png_header_only(12000, 12000),
          "i/cut.png": png32[: len(png32) // 2]}, n_good=2)
    drop("img2", [{"id": "cut-jpg", "split": "train", "image": "i/cut.jpg"},
                  {"id": "text-jpg", "split": "train", "image": "i/text.jpg"},
                  {"id": "empty-png", "split": "train", "image": "i/empty.png"}],
         {"i/cut.jpg": jpeg[: len(jpeg) // 2], "i/text.jpg": b"hello, I am not a JPEG\n", "i/empty.png": b""}, n_good=2)
    wav = fh.wav_bytes(5)
    forged = bytearray(wav)
    forged[40:44] = (0x7FFFFFFF).to_bytes(4, "little")  # data chunk size: 2 GiB in a 3 kB file
    drop("audio", [{"id": "text-wav", "split": "train", "audio": "a/text.wav"},
                   {"id": "empty-mp3", "split": "train", "audio": "a/empty.mp3"},
                   {"id": "cut-wav", "split": "train", "audio": "a/cut.wav"},
                   {"id": "forged-wav", "split": "train", "audio": "a/forged.wav"}],
         {"a/text.wav": b"not audio at all", "a/empty.mp3": b"", "a/cut.wav": wav[: len(wav) // 2],
          "a/forged.wav": bytes(forged)}, n_good=2)
    paths = drop("paths", [{"id": "link-out", "split": "train", "image": "i/out.png"},
                           {"id": "link-in", "split": "train", "image": "i/in.png"},
                           {"id": "link-dead", "split": "train", "image": "i/dead.png"},
                           {"id": "dotdot", "split": "train", "image": "../../outside/secret.png"},
                           {"id": "absolute", "split": "train", "image": str(outside / "secret.png")}], {})
    (paths / "i").mkdir(exist_ok=True)
    os.symlink(outside / "secret.png", paths / "i/out.png")
    os.symlink(paths / "images/paths-ok-0.png", paths / "i/in.png")  # stays inside the drop: refused all the same
    os.symlink(paths / "i/nowhere.png", paths / "i/dead.png")
    drop("ids", [{"id": "../evil", "split": "train", "caption": "an id that is a path"},
                 {"id": "/etc/passwd", "split": "train", "caption": "an absolute id"},
                 {"id": "twin", "split": "train", "caption": "the first twin"},
                 {"id": "twin", "split": "train", "caption": "the second twin"},
                 {"id": "garbage", "split": "train"}], {},
         raw_lines={4: b'{"id": "garbage", "split": '})
    drop("text", [{"id": "bad-utf8", "split": "train", "caption": "caf\u00e9 PLACEHOLDER"},
                  {"id": "huge", "split": "train", "caption": "word " * 20000},
                  {"id": "bad-split", "split": "../train", "caption": "a split that is a path"}], {},
         raw_lines={0: json.dumps({"id": "bad-utf8", "split": "train", "caption": "caf"}).encode()[:-2] + b'\xff"}'})
    areas = Areas.under(root / "data")
    ingest_drops([landing], root / "data/raw", root / "data/rejected/ingest")
    reports = {r.drop: r for r in run_gate([root / "data/raw"], areas=areas)}
    record = version_dataset(areas.accepted, root / "data/dataset", lineage_dir=root / "lineage", use_dvc=False)
    return {"root": root, "reports": reports, "good": good, "record": record, "outside": outside, "paths": paths}


def reasons(report, record_id):
    return [(f.check, f.field, f.reason) for f in report.failures if f.id == record_id]


def test_decoder_failures_are_the_rows_reasons(hostile):
    img1, img2, audio = (hostile["reports"][n] for n in ("img1", "img2", "audio"))
    assert reasons(img1, "bomb") == [("image_decodes", "image", BOMB)]
    assert reasons(img1, "bomb-warn") == [("image_decodes", "image", "image header declares 12000x12000 pixels, more "
                                           "than the 89478485 allowed: refused as a possible decompression bomb")]
    assert reasons(img1, "cut-png") == [("image_decodes", "image", "image does not decode: OSError: Truncated File Read")]
    assert reasons(img2, "cut-jpg") == [("image_decodes", "image", "image does not decode: OSError: image file is "
                                         "truncated (146 bytes not processed)")]
    assert reasons(img2, "text-jpg") == [("image_decodes", "image", "image does not decode: UnidentifiedImageError: "
                                          "cannot identify image file '" + str(hostile["root"] / "data/raw/img2/i/text.jpg") + "'")]
    assert reasons(img2, "empty-png") == [("image_decodes", "image", "image file is empty: empty.png")]
    assert reasons(audio, "text-wav") == [("audio_decodes", "audio", "audio does not decode: LibsndfileError: Error "
                                           "opening '" + str(hostile["root"] / "data/raw/audio/a/text.wav") +
                                           "': Format not recognised.")]
    assert reasons(audio, "empty-mp3") == [("audio_decodes", "audio", "audio file is empty: empty.mp3")]
    assert reasons(audio, "cut-wav") == [("audio_decodes", "audio", "audio header declares 3200 bytes of samples, the "
                                          "file holds 1578: truncated or a forged header")]
    assert reasons(audio, "forged-wav") == [("audio_decodes", "audio", "audio header declares 2147483647 bytes of "
                                             "samples, the file holds 3200: truncated or a forged header")]
    for report in (img1, img2, audio):
        assert report.status == "quarantined" and all(f.row >= 1 for f in report.failures)
    from mmcl.validate.media import check_image

    raw = hostile["root"] / "data/raw"  # `exists` judges nothing but a bomb's header
    assert check_image(raw / "img1/i/bomb.png", "exists") == BOMB
    assert check_image(raw / "img1/i/bomb2.png", "exists").startswith("image header declares 12000x12000 pixels")
    assert check_image(raw / "img2/i/text.jpg", "exists") is None


def test_the_training_loader_names_the_file_whatever_the_decoder_raises(hostile):
    from mmcl.data.flickr import load_image

    raw = hostile["root"] / "data/raw"
    expected = {
        "img1/i/bomb.png": "cannot decode image: " + BOMB.removeprefix("image does not decode: "),
        "img1/i/bomb2.png": "image header declares 12000x12000 pixels, more than the 89478485 allowed: refused as a "
                            "possible decompression bomb",
        "img1/i/cut.png": "cannot decode image: OSError: image file is truncated",
        "img2/i/text.jpg": f"cannot decode image: UnidentifiedImageError: cannot identify image file '{raw / 'img2/i/text.jpg'}'",
    }
    for relative, reason in expected.items():
        with pytest.raises(DataError) as caught:
            load_image(raw / relative)
        assert str(caught.value) == f"{raw / relative}: {reason}"


def test_symlinks_and_escaping_paths_are_refused_as_such(hostile):
    report, paths, raw = hostile["reports"]["paths"], hostile["paths"], hostile["root"] / "data/raw/paths"
    refused = "refused, put the file itself in the drop"
    assert reasons(report, "link-out") == [("record_parses", "image", "image path 'i/out.png' is a symbolic link "
                                            f"(out.png -> {hostile['outside'] / 'secret.png'}): {refused}")]
    assert reasons(report, "link-in") == [("record_parses", "image", "image path 'i/in.png' is a symbolic link "
                                           f"(in.png -> {paths / 'images/paths-ok-0.png'}): {refused}")]
    assert reasons(report, "link-dead") == [("record_parses", "image", "image path 'i/dead.png' is a symbolic link "
                                             f"(dead.png -> {paths / 'i/nowhere.png'}): {refused}")]
    assert reasons(report, "dotdot") == [("image_path_inside_drop", "image", "image path '../../outside/secret.png': "
                                          f"path '../../outside/secret.png' escapes the dataset root {raw}")]
    secret = str(hostile["outside"] / "secret.png")
    assert reasons(report, "absolute") == [("image_path_inside_drop", "image", f"image path {secret!r}: absolute path "
                                            f"{secret!r} is not allowed (must be inside {raw})")]
    assert not list((raw / "i").glob("*"))  # nothing behind a link was copied in


def test_ids_text_and_records(hostile):
    ids, text = hostile["reports"]["ids"], hostile["reports"]["text"]
    pattern = "^[A-Za-z0-9][A-Za-z0-9_\\-]{0,127}$"
    assert reasons(ids, "../evil") == [("id_format", "id", f"id '../evil' does not match {pattern}")]
    assert reasons(ids, "/etc/passwd") == [("id_format", "id", f"id '/etc/passwd' does not match {pattern}")]
    assert reasons(ids, "twin") == [("id_unique", "id", "duplicate id 'twin': more than one record of the drop has it")] * 2
    garbage = [(f.check, f.field, f.row, f.reason) for f in ids.failures if f.id is None]
    assert ("record_parses", "record", 5, "not valid JSON: Expecting value at column 28") in garbage
    assert reasons(text, "bad-utf8") == [("record_parses", "caption", "text is not valid UTF-8 (byte 0xff at character 3)")]
    assert reasons(text, "bad-split") == [("split_valid", "split", "split '../train' is not one of "
                                           "['train', 'dev', 'test', 'none']")]
    assert reasons(text, "huge") == []  # a long caption is a warning: kept, and said
    assert [(w.check, w.reason) for w in text.warnings if w.id == "huge"] == [
        ("caption_length", "caption is 99999 characters (> 400)")]


def test_the_good_rows_of_every_hostile_drop_are_versioned(hostile):
    index = {e["id"] for e in read_index(hostile["root"] / "data/dataset")}
    expected = {rid for ids in hostile["good"].values() for rid in ids} | {"huge"}
    assert index == expected
    assert {r.drop: r.accepted for r in hostile["reports"].values()} == {
        "img1": 2, "img2": 2, "audio": 2, "paths": 1, "ids": 1, "text": 2}
    assert hostile["record"]["row_counts"]["records"] == len(expected)


def small_versioned(fh, root: Path) -> tuple[Areas, Path]:
    rows, files = fh.good_rows("m", 3, seed=9)
    fh.write_drop(root / "landing", "drop-m", rows, files)
    ingest_drops([root / "landing"], root / "raw", root / "rejected")
    areas = Areas.under(root / "data")
    run_gate([root / "raw"], areas=areas)
    return areas, root / "data/dataset"


def test_stored_media_share_no_inode_and_a_rewrite_after_validation_is_caught(fh, tmp_path):
    areas, dataset = small_versioned(fh, tmp_path)
    landing, raw = tmp_path / "landing/drop-m/images/m-0.png", tmp_path / "raw/drop-m/images/m-0.png"
    accepted = areas.accepted / "drop-m/images/m-0.png"
    assert len({p.stat().st_ino for p in (landing, raw, accepted)}) == 3
    validated = sha256_file(accepted)
    with open(landing, "r+b") as handle:  # rewritten in place in the landing zone: raw and accepted keep theirs
        handle.write(b"\x00" * 16)
    assert sha256_file(raw) == sha256_file(accepted) == validated
    build_dataset(areas.accepted, dataset)
    before = fh.snapshot(dataset)
    with open(areas.accepted / "drop-m/images/m-1.png", "r+b") as handle:  # a second drop, then a tampered file
        handle.write(b"\x00" * 16)
    shutil.copytree(areas.accepted / "drop-m", areas.accepted / "drop-n")
    manifest = areas.accepted / "drop-n/manifest.jsonl"
    manifest.write_text(manifest.read_text().replace("m-", "n-"))
    for path in (areas.accepted / "drop-n/images").iterdir():
        path.rename(path.with_name(path.name.replace("m-", "n-")))
    for path in (areas.accepted / "drop-n/audio").iterdir():
        path.rename(path.with_name(path.name.replace("m-", "n-")))
    with pytest.raises(DataError) as caught:
        build_dataset(areas.accepted, dataset)
    assert str(caught.value).startswith(f"{manifest}, line 2, field 'image': image file 'images/n-1.png' changed after "
                                        "validation: validated sha256 ")
    assert fh.snapshot(dataset) == before and not fh.stray_temporaries(tmp_path)  # nothing of drop-n versioned


def test_a_file_rewritten_between_validation_and_routing_is_quarantined(fh, tmp_path):
    from mmcl.validate.quarantine import route_rows

    rows, files = fh.good_rows("r", 3, seed=11)
    drop = fh.write_drop(tmp_path / "landing", "drop-r", rows, files)
    validation = validate_drop(drop)
    (drop / "images/r-1.png").write_bytes(fh.png_bytes(1234))
    areas = Areas.under(tmp_path / "data")
    route_rows(validation, areas.accepted, areas.quarantine)
    assert fh.manifest_ids(areas.accepted / "drop-r/manifest.jsonl") == ["r-0", "r-2"]
    assert not (areas.accepted / "drop-r/images/r-1.png").exists()
    (row,) = json.loads((areas.quarantine / "drop-r/quarantine.json").read_text())["rows"]
    assert row["id"] == "r-1" and row["failures"][0]["check"] == "image_hash_matches"
    assert row["failures"][0]["reason"].startswith("image changed after validation: validated sha256 ")


@pytest.mark.parametrize("tamper, words", [
    ({"id": "../../../escaped"}, "id '../../../escaped' in its .json does not match"),
    ({"audio_ext": "/../../../escaped"}, "audio_ext '/../../../escaped' is not a plain extension"),
])
def test_export_refuses_shard_metadata_that_would_escape_out(fh, tmp_path, tamper, words):
    areas, dataset = small_versioned(fh, tmp_path)
    build_dataset(areas.accepted, dataset)
    shard = dataset / "shards/drop-m-000000.tar"
    samples = list(iter_shard(shard))
    samples[0]["json"] = {**samples[0]["json"], **tamper}  # a tampered remote: the shard as pulled
    write_shard(shard, [{k: json.dumps(v).encode() if k == "json" else v.encode() if k == "txt" else v
                         for k, v in s.items()} for s in samples])
    out = tmp_path / "export" / "deep" / "out"
    with pytest.raises(UserError, match=words):
        export_flickr_layout(dataset, out)
    assert not list(tmp_path.rglob("escaped*")) and not (out / "flickr8k_subset1000_tri").exists()
    assert not fh.stray_temporaries(tmp_path)


@pytest.mark.parametrize("check", ["image_path_inside_drop", "id_format"])
def test_safety_checks_cannot_be_lowered(tmp_path, capsys, check):
    (tmp_path / "drop-s").mkdir()
    (tmp_path / "drop-s/manifest.jsonl").write_text('{"id": "a", "split": "train", "caption": "x"}\n')
    assert main(["validate", str(tmp_path / "drop-s"), "--output", str(tmp_path / "r.json"),
                 "--severity", f"{check}=warning"]) == 2
    assert f"check {check!r} is blocking and cannot be made a warning" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("workers", ["-1", "0"])
def test_validate_workers_must_be_positive(tmp_path, capsys, workers):
    assert main(["validate", str(tmp_path), "--output", str(tmp_path / "r.json"), "--workers", workers]) == 2
    assert (f"mmcl validate: error: workers must be an integer >= 1 (threads decoding media), got {workers}"
            in capsys.readouterr().err)


def test_unreadable_lineage_records_are_named_and_the_rest_still_listed(hostile, tmp_path, capsys):
    store = tmp_path / "lineage"
    shutil.copytree(hostile["root"] / "lineage", store)
    good = hostile["record"]["md5"]
    LineageStore(store).write("dataset", "0" * 32 + ".dir", {"md5": "0" * 32 + ".dir"})
    truncated, garbage = store / "datasets/1111.json", store / "datasets/2222.json"
    truncated.write_text('{"kind": "dataset", "key": "1111.dir", "md5": "11')
    garbage.write_text("[]")
    assert main(["lineage", "list", "dataset", "--store", str(store)]) == 0
    out, err = capsys.readouterr()
    assert out.split() == ["0" * 32 + ".dir", good]
    assert f"{truncated}: lineage record not valid JSON (Unterminated string starting at: line 1 column 47 (char 46))" in err
    assert f"{garbage}: not a lineage record (expected a JSON object with a \"key\")" in err
    assert main(["lineage", "dataset", "1111", "--store", str(store)]) == 2
    assert f"restore it from git (`git checkout -- {truncated}`)" in capsys.readouterr().err


def test_data_version_rerun_rewrites_a_truncated_record_of_its_version(fh, tmp_path):
    areas, dataset = small_versioned(fh, tmp_path)
    first = version_dataset(areas.accepted, dataset, lineage_dir=tmp_path / "lineage", use_dvc=False)
    path = Path(first["lineage_file"])
    whole = path.read_text()
    path.write_text(whole[: len(whole) // 2])
    again = version_dataset(areas.accepted, dataset, lineage_dir=tmp_path / "lineage", use_dvc=False)
    assert json.loads(path.read_text()) == json.loads(whole) and again["md5"] == first["md5"]


def test_a_symlinked_drop_or_manifest_is_rejected_as_a_symlink(fh, tmp_path):
    rows, files = fh.good_rows("s", 1, seed=31)
    real = fh.write_drop(tmp_path / "elsewhere", "drop-real", rows, files)
    landing = tmp_path / "landing"
    landing.mkdir()
    os.symlink(real, landing / "drop-link")
    manifest_link = landing / "drop-manifest-link"
    manifest_link.mkdir()
    os.symlink(real / "manifest.jsonl", manifest_link / "manifest.jsonl")
    results = {r.drop: r for r in ingest_drops([landing], tmp_path / "raw", tmp_path / "rejected")}
    assert {name: r.status for name, r in results.items()} == {"drop-link": "rejected", "drop-manifest-link": "rejected"}
    assert results["drop-link"].reason == (f"{landing / 'drop-link'}: the drop folder is a symbolic link (-> {real}): "
                                           "refused, put the drop itself in the landing zone")
    assert results["drop-manifest-link"].reason == (
        f"{manifest_link / 'manifest.jsonl'}: the manifest is a symbolic link (-> {real / 'manifest.jsonl'}): refused, "
        "put the file itself in the drop")
    assert (tmp_path / "rejected/drop-link/drop").is_symlink()  # the link is kept, what it points at is not copied
    assert not any((tmp_path / "raw").iterdir())
