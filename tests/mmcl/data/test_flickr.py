import shutil

import numpy as np
import pytest

from mmcl.data.audio import load_audio
from mmcl.data.flickr import load_caption_corpus, load_flickr_triples, load_image
from mmcl.data.paths import data_dir, safe_join
from mmcl.errors import DataError, MissingDataError
from mmcl.train.datamodule import split_records


def test_triples_are_complete(flickr_records):
    assert len(flickr_records) == 1000
    assert all(len(r.captions) == 5 for r in flickr_records)
    assert all(r.audio_path is not None and r.audio_path.is_file() for r in flickr_records)
    splits = {s: sum(r.split == s for r in flickr_records) for s in ("train", "dev", "test", "none")}
    assert splits == {"train": 753, "dev": 113, "test": 125, "none": 9}  # PROVENANCE.md


def test_split_is_by_image(flickr_records):
    train, val, test = split_records(flickr_records, ("test",))
    assert not {r.image_id for r in train} & {r.image_id for r in test}
    assert not {r.image_id for r in train} & {r.image_id for r in val}
    assert len(test) == 125 and len(val) == 113


def test_image_and_audio_decode(flickr_records):
    rec = flickr_records[0]
    img = load_image(rec.image_path)
    assert img.mode == "RGB" and min(img.size) > 32
    wave = load_audio(rec.audio_path, 16000)
    assert wave.dtype == np.float32 and 1.0 < len(wave) / 16000 < 15.0  # a spoken caption
    assert np.abs(wave).max() > 0.01  # not silence


def test_caption_corpus(data_root):
    corpus = load_caption_corpus(data_root)
    assert len(corpus) == 40460 and all(corpus)


def test_corrupt_files_name_the_file(tmp_path):
    bad_jpg = tmp_path / "bad.jpg"
    bad_jpg.write_bytes(b"\xff\xd8\xff\xe0not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg"):
        load_image(bad_jpg)
    bad_mp3 = tmp_path / "bad.mp3"
    bad_mp3.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="bad.mp3"):
        load_audio(bad_mp3)
    with pytest.raises(DataError, match="missing"):
        load_image(tmp_path / "nope.jpg")


def test_malformed_captions_name_file_line_field(tmp_path, data_root):
    src = data_root / "flickr8k_subset1000_tri"
    dst = tmp_path / "flickr8k_subset1000_tri"
    dst.mkdir()
    for name in ("split_membership.tsv", "audio_transcripts.tsv"):
        shutil.copy(src / name, dst / name)
    (dst / "captions.csv").write_text("image,caption\n1000268201_693b08cb0e.jpg,a dog\n1001773457_577c3a7d70.jpg,\n")
    with pytest.raises(DataError, match=r"captions.csv, line 3, field 'caption'"):
        load_flickr_triples(tmp_path)
    (dst / "captions.csv").write_text("img,text\n")
    with pytest.raises(DataError, match="missing column"):
        load_flickr_triples(tmp_path)


def test_paths_cannot_escape_root(tmp_path):
    assert safe_join(tmp_path, "a/b.jpg") == (tmp_path / "a/b.jpg").resolve()
    for bad in ("../etc/passwd", "a/../../x", "/etc/passwd"):
        with pytest.raises(DataError, match="escapes|absolute"):
            safe_join(tmp_path, bad, source="manifest.csv")
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(DataError, match="escapes"):
        safe_join(tmp_path, "link/passwd")


def test_missing_data_dir_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCL_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(MissingDataError, match="MMCL_DATA_DIR") as info:
        data_dir()
    assert "git clone" in str(info.value) and "Flickr8k" in str(info.value)
    with pytest.raises(MissingDataError, match="flickr8k_subset1000_tri"):
        load_flickr_triples(tmp_path)
