"""Media checks per mode on real Flickr8k files and damaged copies of them."""

from __future__ import annotations

import pytest

from mmcl.validate.media import check_audio, check_image


@pytest.fixture
def real(flickr_records):
    return next(r for r in flickr_records if r.audio_path is not None)


def test_real_files_pass_every_mode(real):
    for mode in ("full", "header", "exists"):
        assert check_image(real.image_path, mode) is None
        assert check_audio(real.audio_path, mode) is None


def test_truncated_jpeg_fails_full_decoding_only(real, tmp_path):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(real.image_path.read_bytes()[:2000])
    assert "truncated" in check_image(cut, "full")
    assert check_image(cut, "header") is None  # the header is intact: why `full` is the default


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all" * 10)
    assert "cannot identify image file" in check_image(junk, "header")
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    assert check_audio(empty, "exists") == "file is empty: empty.mp3"
    assert check_image(tmp_path / "nope.jpg", "full") == "file not found: nope.jpg"
    assert "does not decode" in check_audio(junk, "header")


def test_mp3_cut_mid_frame_is_truncated(real, tmp_path):
    data = real.audio_path.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2 + 101])  # 101 bytes into a frame
    assert "audio is truncated: decoded" in check_audio(cut, "full")
    assert check_audio(cut, "header") is None
