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

import hashlib
import io
import json
import os
import re
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmcl.data.manifest import (
    ID_PATTERN,
    MEDIA_FIELDS,
    atomic_write_bytes,
    read_drop,
    record_to_json,
    remove_stale,
    write_json,
    write_jsonl,
)
from mmcl.data.paths import safe_join, symlink_on_path
from mmcl.errors import DataError, UserError
from mmcl.faults import maybe_fault

FORMAT = "mmcl-shards/1"
EXT_PATTERN = re.compile(r"^[a-z0-9]{1,8}$")
SHARD_SIZE = 256
META_FIELDS = ("id", "split", "group", "caption", "captions", "transcript", "features", "source_drop",
               "image_sha256", "audio_sha256")


def media_extension(relative: str) -> str:
    suffix = Path(relative).suffix.lower().lstrip(".")
    suffix = "jpg" if suffix == "jpeg" else suffix
    # the extension becomes a tar member name and, on export, a file name: plain and not ours (json, txt)
    return suffix if EXT_PATTERN.match(suffix) and suffix not in ("json", "txt") else "bin"


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
    """Samples of one shard, grouped by key: {"__key__", "json": dict, "txt": str, "jpg": bytes, ...}.
    A shard that is not a readable tar of such members raises DataError naming the shard and member."""
    current: dict[str, Any] = {}
    member_name = None
    try:
        with tarfile.open(path, mode="r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                member_name = member.name
                key, _, ext = member.name.partition(".")
                if current and current["__key__"] != key:
                    yield current
                    current = {}
                current["__key__"] = key
                data = tar.extractfile(member).read()
                current[ext] = json.loads(data) if ext == "json" else data.decode("utf-8") if ext == "txt" else data
    except (tarfile.TarError, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (member {member_name!r})" if member_name else ""
        raise DataError(path, f"shard cannot be read{where}: {type(exc).__name__}: {exc}") from exc
    if current:
        yield current


def _sample(drop_root: Path, record: dict[str, Any], manifest: Path) -> dict[str, Any]:
    """The tar members of one accepted record. Its media must still have the sha256 validation computed
    (the accepted manifest's *_sha256): what is versioned is byte for byte what was validated."""
    meta = {name: record[name] for name in META_FIELDS if record.get(name) is not None}
    sample: dict[str, Any] = {"__key__": record["id"]}
    for name in MEDIA_FIELDS:
        if record.get(name):
            ext = media_extension(record[name])
            if ext in sample:
                raise DataError(manifest, f"two media of the record would both be stored as .{ext}",
                                row=record.get("_row"), field=name)
            path = safe_join(drop_root, record[name], source=manifest)
            if symlink_on_path(drop_root, record[name]) is not None or not path.is_file():
                raise DataError(manifest, f"{name} file {record[name]!r} is missing or not a regular file in "
                                "the accepted area (re-run validation for this drop)", row=record.get("_row"), field=name)
            data = path.read_bytes()
            digest, validated = hashlib.sha256(data).hexdigest(), record.get(f"{name}_sha256")
            if digest != validated:
                raise DataError(manifest, f"{name} file {record[name]!r} changed after validation: validated sha256 "
                                f"{str(validated)[:12]}..., the file now has {digest[:12]}...; nothing was versioned: "
                                "re-run validation for this drop", row=record.get("_row"), field=name)
            sample[ext] = data
            meta[f"{name}_ext"] = ext
    if record.get("caption"):
        sample["txt"] = record["caption"].encode("utf-8")
    sample["json"] = json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return sample


def read_dataset_info(dataset_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc}): restore the dataset with `dvc checkout` of its .dvc "
                        "file") from exc
    if not isinstance(info, dict) or not isinstance(info.get("drops", []), list):
        raise DataError(path, "not a dataset description (expected an object with a list of drops)")
    return info


def read_index(dataset_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The index entries of the committed dataset: those whose shard dataset.json lists. dataset.json is
    the commit point; entries a killed run wrote for a drop it never committed are not part of it."""
    path = Path(dataset_dir) / "index.jsonl"
    info = read_dataset_info(dataset_dir)
    if not path.is_file() or info is None:
        return []
    committed = {shard for drop in info.get("drops", []) for shard in drop.get("shards", [])}
    entries = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"not valid JSON ({exc.msg}): rerun `mmcl data version`, which rewrites "
                            "the index from dataset.json's drops", row=line_no) from exc
        if entry.get("shard") in committed:
            entries.append(entry)
    return entries


def build_dataset(accepted_root: str | os.PathLike, dataset_dir: str | os.PathLike,
                  shard_size: int = SHARD_SIZE) -> dict[str, Any]:
    """Add every accepted drop not yet in the dataset (name order) as new shards; returns dataset.json.

    Shards are written first (new file names only), then index.jsonl, then dataset.json: the commit point.
    A kill anywhere leaves dataset.json naming the previous drops, whose shards were not touched; the
    next run ignores index entries and removes shard files of drops dataset.json does not name, and
    writes them again."""
    accepted, dataset = Path(accepted_root), Path(dataset_dir)
    info = read_dataset_info(dataset) or {"format": FORMAT, "shard_size": shard_size, "drops": []}
    if info.get("format") != FORMAT:
        raise DataError(dataset / "dataset.json", f"unknown dataset format {info.get('format')!r} (expected {FORMAT})")
    index = read_index(dataset)
    _remove_uncommitted(dataset, info)
    known_ids = {entry["id"] for entry in index}
    done = {d["name"] for d in info["drops"]}
    pending = sorted(p for p in accepted.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in done) \
        if accepted.is_dir() else []
    for drop_dir in pending:
        entries, shards = _add_drop(drop_dir, dataset, shard_size, known_ids)
        index += entries
        info["drops"].append({"name": drop_dir.name, "records": len(entries), "shards": shards})
    info.update(_counts(index))
    maybe_fault("shards.after_shards")
    write_jsonl(dataset / "index.jsonl", index)
    maybe_fault("shards.after_index")
    write_json(dataset / "dataset.json", info)  # written last: the dataset's commit point
    return info


def _remove_uncommitted(dataset: Path, info: dict[str, Any]) -> None:
    """Shards no committed drop names, and temporary files, are leftovers of a killed run."""
    committed = {shard for drop in info["drops"] for shard in drop["shards"]}
    remove_stale(dataset)
    folder = dataset / "shards"
    if folder.is_dir():
        remove_stale(folder)
        for path in folder.iterdir():
            if path.is_file() and f"shards/{path.name}" not in committed:
                path.unlink()


def _add_drop(drop_dir: Path, dataset: Path, shard_size: int, known_ids: set[str]) -> tuple[list[dict], list[str]]:
    drop = read_drop(drop_dir)
    records = []
    for row in drop.rows:
        if row.errors:
            raise DataError(drop.manifest_path, f"accepted row has errors: {row.errors}", row=row.row)
        if not isinstance(row.fields.get("id"), str) or not re.match(ID_PATTERN, row.fields["id"]):
            raise DataError(drop.manifest_path, f"id {row.fields.get('id')!r} does not match {ID_PATTERN}",
                            row=row.row, field="id")
        if row.fields["id"] in known_ids:
            raise DataError(drop.manifest_path, f"id {row.fields['id']!r} is already in the dataset "
                            "(validate drops against the dataset before versioning)", row=row.row, field="id")
        known_ids.add(row.fields["id"])
        records.append(record_to_json(row))
    entries, shards = [], []
    for start in range(0, len(records), shard_size):
        chunk = records[start:start + shard_size]
        shard = f"shards/{drop.name}-{start // shard_size:06d}.tar"
        write_shard(dataset / shard, [_sample(drop.root, r, drop.manifest_path) for r in chunk])
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


def _export_meta(dataset_dir: str | os.PathLike, sample: dict[str, Any]) -> dict[str, Any]:
    """A shard sample's JSON, with what becomes a file name checked: shards may come from a remote, and
    an id or extension holding `../` must not write outside the export folder."""
    meta, key = sample.get("json"), sample.get("__key__")
    if not isinstance(meta, dict):
        raise UserError(f"{dataset_dir}: sample {key!r}: its .json member is missing or not an object")
    rid = meta.get("id")
    if not isinstance(rid, str) or not re.match(ID_PATTERN, rid) or rid != key:
        raise UserError(f"{dataset_dir}: sample {key!r}: id {rid!r} in its .json does not match {ID_PATTERN} or the member "
                        "key: refused (a tampered shard?); nothing of this export was published")
    for name in ("image_ext", "audio_ext"):
        ext = meta.get(name)
        if ext is not None and (not isinstance(ext, str) or not EXT_PATTERN.match(ext) or ext not in sample):
            raise UserError(f"{dataset_dir}: sample {key!r}: {name} {ext!r} is not a plain extension of one of its members: "
                            "refused (a tampered shard?); nothing of this export was published")
    if meta.get("image_ext") == "jpg" and not isinstance(meta.get("split"), str):
        raise UserError(f"{dataset_dir}: sample {key!r}: split {meta.get('split')!r} is not a string")
    return meta


def export_flickr_layout(dataset_dir: str | os.PathLike, out_root: str | os.PathLike) -> dict[str, int]:
    """Lay a dataset version out as <out_root>/flickr8k_subset1000_tri (captions.csv, images/, audio_tts/,
    split_membership.tsv, audio_transcripts.tsv), so `load_flickr_triples(out_root)` — and `mmcl train
    --set data.data_dir=<out_root>` — read exactly this version. Records without a JPEG image or a
    caption have no place in that layout and are counted as skipped."""
    from mmcl.data.landing import publish_dir, staged

    target = Path(out_root) / "flickr8k_subset1000_tri"
    with staged(Path(out_root), target.name) as folder:  # replaced whole: no file of an older export survives
        counts = _export_into(dataset_dir, folder)
        publish_dir(folder, target)
    return counts


def _export_into(dataset_dir: str | os.PathLike, folder: Path) -> dict[str, int]:
    import csv

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "audio_tts").mkdir(parents=True, exist_ok=True)
    captions, splits, audio, skipped = [], [], [], 0
    for sample in iter_samples(dataset_dir):
        meta = _export_meta(dataset_dir, sample)
        texts = meta.get("captions") or ([meta["caption"]] if meta.get("caption") else [])
        if meta.get("image_ext") != "jpg" or not texts:
            skipped += 1
            continue
        image_name = f"{meta['id']}.jpg"
        atomic_write_bytes(safe_join(folder, f"images/{image_name}"), sample["jpg"])
        captions += [(image_name, text) for text in texts]
        splits.append((image_name, meta["split"]))
        if meta.get("audio_ext"):
            relative = f"audio_tts/{meta['id']}.{meta['audio_ext']}"
            atomic_write_bytes(safe_join(folder, relative), sample[meta["audio_ext"]])
            audio.append((image_name, relative, meta.get("transcript") or texts[0]))
    for name, header, rows, delimiter in (("captions.csv", ("image", "caption"), captions, ","),
                                          ("split_membership.tsv", ("image_id", "flickr8k_split"), splits, "\t"),
                                          ("audio_transcripts.tsv", ("image_id", "audio_file", "transcript"), audio, "\t")):
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        atomic_write_bytes(folder / name, buffer.getvalue().encode("utf-8"))
    return {"images": len(splits), "captions": len(captions), "audio": len(audio), "skipped": skipped}
