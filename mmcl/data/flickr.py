"""Flickr8k triples (image, 5 captions, speech of the first caption) and the full caption corpus.

Layout under the data root (see ../shared/data/PROVENANCE.md):
  flickr8k_subset1000_tri/images/<id>.jpg, captions.csv (image,caption), audio_tts/<id>.mp3,
  audio_transcripts.tsv, split_membership.tsv, flickr8k_official_splits/Flickr8k.token.txt
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mmcl.data.paths import dataset_dir, safe_join
from mmcl.errors import DataError

FLICKR_DIR = "flickr8k_subset1000_tri"


@dataclass(frozen=True)
class FlickrRecord:
    image_id: str  # file stem, e.g. "1000268201_693b08cb0e"
    image_path: Path
    captions: tuple[str, ...]
    audio_path: Path | None
    transcript: str | None
    split: str  # official Flickr8k split: train / dev / test / none


def _read_rows(path: Path, delimiter: str, required: list[str]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise DataError(path, "file is missing")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(path, f"missing column(s) {missing}; header is {reader.fieldnames}", row=1)
            rows = []
            for line_no, row in enumerate(reader, start=2):
                for col in required:
                    if row.get(col) in (None, ""):
                        raise DataError(path, "empty value", row=line_no, field=col)
                rows.append((line_no, row))
            return rows
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".jpg") else name


def load_flickr_triples(data_dir: str | Path | None = None) -> list[FlickrRecord]:
    """All image/caption/speech triples, sorted by image id; errors name the file, line and field."""
    root = dataset_dir(FLICKR_DIR, data_dir)
    captions: dict[str, list[str]] = defaultdict(list)
    for _, row in _read_rows(root / "captions.csv", ",", ["image", "caption"]):
        captions[_stem(row["image"])].append(row["caption"].strip())
    splits = {
        _stem(r["image_id"]): r["flickr8k_split"]
        for _, r in _read_rows(root / "split_membership.tsv", "\t", ["image_id", "flickr8k_split"])
    }
    audio: dict[str, tuple[str, str]] = {}
    transcripts = root / "audio_transcripts.tsv"
    if transcripts.exists():
        for _, r in _read_rows(transcripts, "\t", ["image_id", "audio_file", "transcript"]):
            audio[_stem(r["image_id"])] = (r["audio_file"], r["transcript"])
    records = []
    for image_id in sorted(captions):
        image_path = safe_join(root / "images", f"{image_id}.jpg", source=root / "captions.csv")
        audio_rel, transcript = audio.get(image_id, (None, None))
        audio_path = safe_join(root, audio_rel, source=transcripts) if audio_rel else None
        records.append(
            FlickrRecord(
                image_id=image_id,
                image_path=image_path,
                captions=tuple(captions[image_id]),
                audio_path=audio_path,
                transcript=transcript,
                split=splits.get(image_id, "none"),
            )
        )
    return records


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, with a DataError naming the file if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file is missing")
    try:
        with Image.open(path) as img:
            if Image.MAX_IMAGE_PIXELS and img.width * img.height > Image.MAX_IMAGE_PIXELS:
                raise DataError(path, f"image header declares {img.width}x{img.height} pixels, more than the "
                                f"{Image.MAX_IMAGE_PIXELS} allowed: refused as a possible decompression bomb")
            return img.convert("RGB")  # convert() forces a full decode: truncated files fail here
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 (DecompressionBombError, MemoryError, ...: name the file, no traceback)
        raise DataError(path, f"cannot decode image: {type(exc).__name__}: {exc}") from exc


def read_caption_tokens(data_dir: str | Path | None = None) -> list[tuple[str, str]]:
    """(image file name, caption) for every line of Flickr8k.token.txt ("<image>.jpg#k<TAB>caption")."""
    path = dataset_dir(FLICKR_DIR, data_dir) / "flickr8k_official_splits" / "Flickr8k.token.txt"
    if not path.is_file():
        raise DataError(path, "caption corpus file is missing")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise DataError(path, f"expected 2 tab-separated columns, got {len(parts)}", row=line_no)
            rows.append((parts[0].split("#", 1)[0], parts[1]))
    return rows


def load_caption_corpus(data_dir: str | Path | None = None) -> list[str]:
    """The 40,460 official Flickr8k captions (all 8,000 images), as an unlabeled text corpus."""
    return [caption.strip() for _, caption in read_caption_tokens(data_dir)]


def held_out_split(records: list[FlickrRecord], eval_splits: tuple[str, ...] = ("test",)):
    """(train, held_out): held-out images never appear in training (split by image, not caption)."""
    held = [r for r in records if r.split in eval_splits]
    train = [r for r in records if r.split not in eval_splits]
    return train, held
