"""Datasets as tar shards in the webdataset layout, built drop by drop from accepted rows.

    dataset/
      dataset.json            format, shard size, drops (records, shards), counts per split/modality
      index.jsonl             one line per record: id, split, group, source_drop, shard, caption, hashes
      shards/<drop>-000000.tar   members <id>.json (the record), <id>.txt (caption), <id>.jpg, <id>.mp3

A shard holds at most `shard_size` records of one drop, so adding a drop only adds shards: the shards of
earlier drops are never rewritten, and DVC stores and pushes only the new ones. Tar members carry fixed
metadata (mtime 0, uid/gid 0, mode 0644) and records keep manifest order, so the same accepted rows always
give byte-identical shards and the same DVC md5. Ids contain no dot, so webdataset's "key = name up to the
first dot" grouping recovers each sample. Nothing here stamps time: a timestamp would change the md5.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmcl.data.manifest import (
    MEDIA_FIELDS,
    atomic_write_bytes,
    read_drop,
    record_to_json,
    write_json,
    write_jsonl,
)
from mmcl.errors import DataError

FORMAT = "mmcl-shards/1"
SHARD_SIZE = 256
META_FIELDS = ("id", "split", "group", "caption", "captions", "transcript", "features", "source_drop",
               "image_sha256", "audio_sha256")


def media_extension(relative: str) -> str:
    suffix = Path(relative).suffix.lower().lstrip(".")
    return "jpg" if suffix == "jpeg" else suffix or "bin"


def write_shard(path: Path, samples: list[dict[str, bytes | str]]) -> None:
    """Write samples ({"__key__": key, ext: bytes}) as a deterministic tar, atomically."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for sample in samples:
            key = sample["__key__"]
            for ext in sorted(k for k in sample if k != "__key__"):
                data = sample[ext]
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    atomic_write_bytes(path, buffer.getvalue())


def iter_shard(path: Path) -> Iterator[dict[str, Any]]:
    """Samples of one shard, grouped by key: {"__key__", "json": dict, "txt": str, "jpg": bytes, ...}."""
    current: dict[str, Any] = {}
    with tarfile.open(path, mode="r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            data = tar.extractfile(member).read()
            current[ext] = json.loads(data) if ext == "json" else data.decode("utf-8") if ext == "txt" else data
    if current:
        yield current


def _sample(drop_root: Path, record: dict[str, Any]) -> dict[str, Any]:
    meta = {name: record[name] for name in META_FIELDS if record.get(name) is not None}
    sample: dict[str, Any] = {"__key__": record["id"]}
    for name in MEDIA_FIELDS:
        if record.get(name):
            ext = media_extension(record[name])
            sample[ext] = (drop_root / record[name]).read_bytes()
            meta[f"{name}_ext"] = ext
    if record.get("caption"):
        sample["txt"] = record["caption"].encode("utf-8")
    sample["json"] = json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return sample


def read_dataset_info(dataset_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(dataset_dir) / "dataset.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_index(dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(dataset_dir) / "index.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_dataset(accepted_root: str | os.PathLike, dataset_dir: str | os.PathLike,
                  shard_size: int = SHARD_SIZE) -> dict[str, Any]:
    """Add every accepted drop not yet in the dataset (name order) as new shards; returns dataset.json."""
    accepted, dataset = Path(accepted_root), Path(dataset_dir)
    info = read_dataset_info(dataset) or {"format": FORMAT, "shard_size": shard_size, "drops": []}
    if info.get("format") != FORMAT:
        raise DataError(dataset / "dataset.json", f"unknown dataset format {info.get('format')!r} (expected {FORMAT})")
    index = read_index(dataset)
    known_ids = {entry["id"] for entry in index}
    done = {d["name"] for d in info["drops"]}
    pending = sorted(p for p in accepted.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in done) \
        if accepted.is_dir() else []
    for drop_dir in pending:
        entries, shards = _add_drop(drop_dir, dataset, shard_size, known_ids)
        index += entries
        info["drops"].append({"name": drop_dir.name, "records": len(entries), "shards": shards})
    info.update(_counts(index))
    write_jsonl(dataset / "index.jsonl", index)
    write_json(dataset / "dataset.json", info)  # written last: the dataset's commit point
    return info


def _add_drop(drop_dir: Path, dataset: Path, shard_size: int, known_ids: set[str]) -> tuple[list[dict], list[str]]:
    drop = read_drop(drop_dir)
    records = []
    for row in drop.rows:
        if row.errors:
            raise DataError(drop.manifest_path, f"accepted row has errors: {row.errors}", row=row.row)
        if row.fields["id"] in known_ids:
            raise DataError(drop.manifest_path, f"id {row.fields['id']!r} is already in the dataset "
                            "(validate drops against the dataset before versioning)", row=row.row, field="id")
        known_ids.add(row.fields["id"])
        records.append(record_to_json(row))
    entries, shards = [], []
    for start in range(0, len(records), shard_size):
        chunk = records[start:start + shard_size]
        shard = f"shards/{drop.name}-{start // shard_size:06d}.tar"
        write_shard(dataset / shard, [_sample(drop.root, r) for r in chunk])
        shards.append(shard)
        entries += [_index_entry(r, shard) for r in chunk]
    return entries, shards


def _index_entry(record: dict[str, Any], shard: str) -> dict[str, Any]:
    entry = {name: record.get(name) for name in ("id", "split", "group", "source_drop", "caption",
                                                  "image_sha256", "audio_sha256")}
    entry["modalities"] = [m for m in ("caption", "image", "audio") if record.get(m)]
    entry["shard"] = shard
    return entry


def _counts(index: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "records": len(index),
        "splits": dict(sorted(Counter(e["split"] for e in index).items())),
        "modalities": dict(sorted(Counter(m for e in index for m in e["modalities"]).items())),
        "shards": len({e["shard"] for e in index}),
    }


def iter_samples(dataset_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Every sample of a dataset version, shard by shard in index order."""
    info = read_dataset_info(dataset_dir)
    if info is None:
        raise DataError(Path(dataset_dir) / "dataset.json", "not a dataset folder (no dataset.json)")
    for drop in info["drops"]:
        for shard in drop["shards"]:
            yield from iter_shard(Path(dataset_dir) / shard)


def export_flickr_layout(dataset_dir: str | os.PathLike, out_root: str | os.PathLike) -> dict[str, int]:
    """Lay a dataset version out as <out_root>/flickr8k_subset1000_tri (captions.csv, images/, audio_tts/,
    split_membership.tsv, audio_transcripts.tsv), so `load_flickr_triples(out_root)` — and `mmcl train
    --set data.data_dir=<out_root>` — read exactly this version. Records without a JPEG image or a
    caption have no place in that layout and are counted as skipped."""
    import csv

    from mmcl.data.landing import fresh_tmp, publish_dir

    target = Path(out_root) / "flickr8k_subset1000_tri"
    folder = fresh_tmp(Path(out_root), target.name)  # replaced whole: no file of an older export survives
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "audio_tts").mkdir(parents=True, exist_ok=True)
    captions, splits, audio, skipped = [], [], [], 0
    for sample in iter_samples(dataset_dir):
        meta = sample["json"]
        texts = meta.get("captions") or ([meta["caption"]] if meta.get("caption") else [])
        if meta.get("image_ext") != "jpg" or not texts:
            skipped += 1
            continue
        image_name = f"{meta['id']}.jpg"
        atomic_write_bytes(folder / "images" / image_name, sample["jpg"])
        captions += [(image_name, text) for text in texts]
        splits.append((image_name, meta["split"]))
        if meta.get("audio_ext"):
            relative = f"audio_tts/{meta['id']}.{meta['audio_ext']}"
            atomic_write_bytes(folder / relative, sample[meta["audio_ext"]])
            audio.append((image_name, relative, meta.get("transcript") or texts[0]))
    for name, header, rows, delimiter in (("captions.csv", ("image", "caption"), captions, ","),
                                          ("split_membership.tsv", ("image_id", "flickr8k_split"), splits, "\t"),
                                          ("audio_transcripts.tsv", ("image_id", "audio_file", "transcript"), audio, "\t")):
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        atomic_write_bytes(folder / name, buffer.getvalue().encode("utf-8"))
    publish_dir(folder, target)
    return {"images": len(splits), "captions": len(captions), "audio": len(audio), "skipped": skipped}
