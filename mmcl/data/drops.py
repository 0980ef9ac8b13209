"""Drop simulator: the landing zone fed from the Flickr8k triples, plus shifted drops for drift work.

Clean drops cut the 1000 Flickr8k triples (image, 5 captions, speech of the first caption) into drops
that arrive one after another: the triples are shuffled once with `seed`, and drop k (1-based) holds
triples [(k-1)*per_drop, k*per_drop). The same seed always gives drop k the same records, so drops can be
written later (`start=`) as if they had just landed.

Shifted drops take triples at random and (a) replace the captions of a `caption_fraction` of them by
SentEval MR movie-review sentences, (b) corrupt images by Gaussian blur (radius 8*level px) or additive
Gaussian noise (sigma 100*level on 0-255). Their ids get the drop name as suffix so they never collide
with the clean records; which ids were shifted is written to drop.json (never into the records, so the
shift label cannot leak into training).

Each drop is built in a hidden temporary folder and renamed into place, so a watcher of the landing zone
never sees half a drop.

    python -m mmcl data simulate-drops --out data/landing --n-drops 4
    python -m mmcl data simulate-drops --out data/landing --shifted --name shift-0001 \\
        --records 100 --caption-fraction 0.5 --corruption blur --level 0.5
"""

from __future__ import annotations

import math
import os
import random
import shutil
from pathlib import Path
from typing import Any

from mmcl.data.flickr import FLICKR_DIR, FlickrRecord, load_flickr_triples
from mmcl.data.manifest import DROP_NAME_PATTERN, remove_stale, sha256_file, tmp_name, write_json, write_jsonl
from mmcl.errors import UserError

CORRUPTIONS = ("blur", "noise")


def read_mr_sentences(root: str | os.PathLike | None = None) -> list[str]:
    """SentEval MR movie-review sentences (rt-polarity.pos then .neg), whitespace-normalised as SentEval."""
    from mmcl.data.senteval import load_transfer_task

    return list(load_transfer_task("MR", root).splits["all"].sentences)


def simulate_drops(out_dir: str | os.PathLike, *, n_drops: int = 4, per_drop: int | None = None, seed: int = 0,
                   start: int = 1, prefix: str = "drop", root: str | os.PathLike | None = None) -> list[Path]:
    """Write clean drops `start..n_drops` (1-based) into out_dir; returns their folders."""
    triples = load_flickr_triples(root)
    random.Random(seed).shuffle(triples)
    per_drop = per_drop or math.ceil(len(triples) / n_drops)
    if n_drops < 1 or per_drop < 1 or not 1 <= start <= n_drops:
        raise UserError(f"need n_drops >= 1, per_drop >= 1 and 1 <= start <= n_drops (got {n_drops}, {per_drop}, {start})")
    if n_drops * per_drop > len(triples):
        raise UserError(f"{n_drops} drops x {per_drop} records need {n_drops * per_drop} triples; only {len(triples)} exist")
    written = []
    for index in range(start, n_drops + 1):
        chunk = triples[(index - 1) * per_drop: index * per_drop]
        name = f"{prefix}-{index:04d}"
        records = [_clean_record(t) for t in chunk]
        meta = {"name": name, "kind": "clean", "source": FLICKR_DIR, "seed": seed, "index": index,
                "per_drop": per_drop}
        written.append(write_drop(Path(out_dir) / name, records, meta))
    return written


def simulate_shifted_drop(out_dir: str | os.PathLike, name: str, *, records: int = 100, caption_fraction: float = 0.5,
                          corruption: str | None = "blur", level: float = 0.5, seed: int = 0,
                          root: str | os.PathLike | None = None) -> Path:
    """Write one shifted drop: MR sentences for a fraction of captions, every image corrupted at `level`."""
    if not 0.0 <= caption_fraction <= 1.0 or not 0.0 <= level <= 1.0:
        raise UserError(f"caption_fraction and level must lie in [0, 1] (got {caption_fraction}, {level})")
    if corruption not in (None, *CORRUPTIONS):
        raise UserError(f"corruption must be one of {CORRUPTIONS} or none (got {corruption!r})")
    rng = random.Random(seed)
    pool = load_flickr_triples(root)
    if not 1 <= records <= len(pool):
        raise UserError(f"records must lie in [1, {len(pool)}] (got {records})")
    triples = rng.sample(pool, records)
    sentences = read_mr_sentences(root)
    replaced = set(rng.sample(range(records), round(caption_fraction * records)))
    out: list[dict[str, Any]] = []
    for i, triple in enumerate(triples):
        record = _clean_record(triple)
        record["id"] = f"{triple.image_id}-{name}"
        if i in replaced:
            record["captions"] = rng.sample(sentences, len(triple.captions))
            record["caption"] = record["captions"][0]
        if corruption and level > 0:
            record["_image_transform"] = (corruption, level, seed * 1_000_003 + i)
        out.append(record)
    meta = {"name": name, "kind": "shifted", "source": FLICKR_DIR, "seed": seed, "caption_fraction": caption_fraction,
            "corruption": corruption, "level": level,
            "replaced_caption_ids": sorted(out[i]["id"] for i in replaced)}
    return write_drop(Path(out_dir) / name, out, meta)


def _clean_record(triple: FlickrRecord) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": triple.image_id, "group": triple.image_id, "split": triple.split,
        "caption": triple.captions[0], "captions": list(triple.captions),
        "image": f"images/{triple.image_id}.jpg", "_image_src": triple.image_path,
    }
    if triple.audio_path is not None:
        record["audio"] = f"audio/{triple.image_id}.mp3"
        record["_audio_src"] = triple.audio_path
        record["transcript"] = triple.transcript
    return record


def write_drop(drop_dir: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Copy media, hash them, write manifest.jsonl + drop.json; the folder appears atomically."""
    if not DROP_NAME_PATTERN.match(drop_dir.name):
        raise UserError(f"drop name {drop_dir.name!r} must match {DROP_NAME_PATTERN.pattern}")
    if drop_dir.exists():
        raise UserError(f"drop {drop_dir} already exists; the landing zone never overwrites a drop")
    drop_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(drop_dir.parent)
    tmp = drop_dir.with_name(tmp_name(drop_dir.name))
    try:
        _fill_drop(tmp, drop_dir.name, records, meta)
        os.replace(tmp, drop_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return drop_dir


def _fill_drop(tmp: Path, name: str, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    manifest = []
    for record in records:
        record = dict(record)
        image_src, audio_src = record.pop("_image_src", None), record.pop("_audio_src", None)
        transform = record.pop("_image_transform", None)
        if image_src is not None:
            _place_image(image_src, tmp / record["image"], transform)
            record["image_sha256"] = sha256_file(tmp / record["image"])
            record["features"] = _image_features(tmp / record["image"], record.get("caption"))
        if audio_src is not None:
            (tmp / record["audio"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(audio_src, tmp / record["audio"])
            record["audio_sha256"] = sha256_file(tmp / record["audio"])
        record["source_drop"] = name
        manifest.append(record)
    write_jsonl(tmp / "manifest.jsonl", manifest)
    write_json(tmp / "drop.json", {**meta, "records": len(manifest)})


def _place_image(src: Path, dst: Path, transform: tuple[str, float, int] | None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if transform is None:
        shutil.copyfile(src, dst)
        return
    from PIL import Image

    kind, level, seed = transform
    with Image.open(src) as image:
        corrupted = corrupt_image(image.convert("RGB"), kind, level, seed)
    corrupted.save(dst, format="JPEG", quality=90)


def corrupt_image(image: Any, kind: str, level: float, seed: int = 0) -> Any:
    """Blur (radius 8*level px) or add Gaussian noise (sigma 100*level) to a PIL RGB image."""
    from PIL import ImageFilter

    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(radius=8.0 * level))
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32)  # [H, W, 3]
    noise = np.random.default_rng(seed).normal(0.0, 100.0 * level, size=pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def _image_features(path: Path, caption: str | None) -> dict[str, float]:
    """Small tabular features per record: image size and caption length (header read only)."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    return {"image_width": float(width), "image_height": float(height),
            "caption_words": float(len(caption.split())) if caption else 0.0}
