"""Does a media file exist and decode? One function per modality, returning a reason or None.

Modes trade thoroughness for speed (bench/bench_data.py measures each):
  full    image: PIL verify() then a full load(); audio: decode every sample and compare the count with
          the header's (a file cut mid-frame decodes fewer samples than its header promises)
  header  image: PIL identifies the format and size; audio: libsndfile opens it and reports samples > 0
  exists  a non-empty regular file (and, for an image, a header that does not declare a bomb's pixel count)
A file cut exactly on an MP3 frame boundary decodes cleanly; the declared sha256 in the manifest is what
catches it (checked in mmcl.validate.columns). Whatever a decoder raises (PIL's DecompressionBombError,
a libsndfile error, a MemoryError on a hostile header, ...) becomes the reason: one file never stops a
drop. An image whose header declares more than PIL's MAX_IMAGE_PIXELS is refused before decoding, in
every mode: `exists` reads that much of an image's header and judges nothing else (a file PIL cannot
identify passes there; the training loader, mmcl.data.flickr.load_image, refuses it naming the file).
"""

from __future__ import annotations

import re
from pathlib import Path

MEDIA_CHECK_MODES = ("full", "header", "exists")
_DATA_SIZE_MISMATCH = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)  # libsndfile's log


def _exists(path: Path) -> str | None:
    if path.is_symlink():
        return f"file is a symbolic link, refused: {path.name}"
    if path.exists() and not path.is_file():
        return f"not a regular file: {path.name}"
    if not path.is_file():
        return f"file not found: {path.name}"
    if path.stat().st_size == 0:
        return f"file is empty: {path.name}"
    return None


def check_image(path: Path, mode: str = "full") -> str | None:
    """None when the image is usable, else why not."""
    problem = _exists(path)
    if problem:
        return problem
    from PIL import Image

    try:
        with Image.open(path) as image:
            if Image.MAX_IMAGE_PIXELS and image.width * image.height > Image.MAX_IMAGE_PIXELS:
                return (f"image header declares {image.width}x{image.height} pixels, more than the "
                        f"{Image.MAX_IMAGE_PIXELS} allowed: refused as a possible decompression bomb")
            if mode == "exists":
                return None
            if image.width < 1 or image.height < 1:
                return f"image has no pixels ({image.width}x{image.height})"
            if mode == "header":
                return None
            image.verify()
        with Image.open(path) as image:  # verify() leaves the image unusable: reopen to decode the pixels
            image.load()
    except Image.DecompressionBombError as exc:  # refused in every mode, `exists` included
        return f"image does not decode: {_describe(exc)}"
    except Exception as exc:  # noqa: BLE001 (any decoder failure is this row's reason, never a traceback)
        return None if mode == "exists" else f"image does not decode: {_describe(exc)}"
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        declared = _DATA_SIZE_MISMATCH.search(info.extra_info or "")
        if declared:  # libsndfile plays what is there; a header that promises more (or absurdly more) is a lie
            return (f"audio header declares {declared.group(1)} bytes of samples, the file holds {declared.group(2)}: "
                    "truncated or a forged header")
        if mode == "header":
            return None
        decoded = len(soundfile.read(str(path), dtype="float32", always_2d=True)[0])
    except Exception as exc:  # noqa: BLE001 (any decoder failure is this row's reason, never a traceback)
        return f"audio does not decode: {_describe(exc)}"
    if decoded == 0:
        return "audio decodes to no samples"
    if decoded < info.frames:
        return f"audio is truncated: decoded {decoded} of {info.frames} samples"
    return None
