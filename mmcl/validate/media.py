"""Does a media file exist and decode? One function per modality, returning a reason or None.

Modes trade thoroughness for speed (bench/bench_data.py measures each):
  full    image: PIL verify() then a full load(); audio: decode every sample and compare the count with
          the header's (a file cut mid-frame decodes fewer samples than its header promises)
  header  image: PIL identifies the format and size; audio: libsndfile opens it and reports samples > 0
  exists  a non-empty regular file
A file cut exactly on an MP3 frame boundary decodes cleanly; the declared sha256 in the manifest is what
catches it (checked in mmcl.validate.columns).
"""

from __future__ import annotations

from pathlib import Path

MEDIA_CHECK_MODES = ("full", "header", "exists")


def _exists(path: Path) -> str | None:
    if not path.is_file():
        return f"file not found: {path.name}"
    if path.stat().st_size == 0:
        return f"file is empty: {path.name}"
    return None


def check_image(path: Path, mode: str = "full") -> str | None:
    """None when the image is usable, else why not."""
    problem = _exists(path)
    if problem or mode == "exists":
        return problem
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width < 1 or image.height < 1:
                return f"image has no pixels ({image.width}x{image.height})"
            if mode == "header":
                return None
            image.verify()
        with Image.open(path) as image:  # verify() leaves the image unusable: reopen to decode the pixels
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"image does not decode: {exc}"
    return None


def check_audio(path: Path, mode: str = "full") -> str | None:
    """None when the audio is usable, else why not."""
    problem = _exists(path)
    if problem or mode == "exists":
        return problem
    import soundfile

    try:
        info = soundfile.info(str(path))
        if info.frames <= 0:
            return "audio has no samples"
        if mode == "header":
            return None
        decoded = len(soundfile.read(str(path), dtype="float32", always_2d=True)[0])
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        return f"audio does not decode: {exc}"
    if decoded == 0:
        return "audio decodes to no samples"
    if decoded < info.frames:
        return f"audio is truncated: decoded {decoded} of {info.frames} samples"
    return None
