"""The landing zone: finding drops, ingesting them (read, normalise, content hashes) and rejecting the
ones whose manifest cannot be read.

    landing/drop-0001/...        drops as they arrive (never modified by mmcl)
    raw/drop-0001/               ingested: canonical manifest.jsonl (+ sha256 per media, source_drop,
                                 original line numbers, parse problems kept per row) + drop.json + media
    rejected/drop-0001/          a drop rejected whole: rejection.json (reason) + drop/ (an exact copy)

Ingesting never judges rows (that is validation's job, with the problems found here carried along in
the canonical manifest); it only refuses a drop it cannot read as records at all. Every output folder is
built under a temporary name and renamed into place, so readers see whole drops or nothing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcl.data.manifest import (
    MANIFEST_NAMES,
    MEDIA_FIELDS,
    read_drop,
    record_to_json,
    sha256_file,
    write_json,
    write_jsonl,
)
from mmcl.data.paths import safe_join
from mmcl.errors import DataError


@dataclass
class IngestResult:
    drop: str
    status: str            # ingested | skipped (already ingested) | rejected
    path: Path             # raw/<drop> or rejected/<drop>
    records: int = 0
    reason: str | None = None


def list_drops(paths: list[str | os.PathLike]) -> list[Path]:
    """Drop folders named by `paths`: a folder with a manifest is a drop; any other folder is a landing
    zone whose visible subfolders are drops (a subfolder without a manifest is a drop to reject)."""
    drops: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise DataError(path, "not a folder (expected a drop or a landing zone of drops)")
        if any((path / name).is_file() for name in MANIFEST_NAMES):
            drops.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        drops += children if children else [path]
    return drops


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link when possible (same file system, no extra space), else copy. Several records may name
    the same media file: a destination that is already that file is left alone."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        if dst.samefile(src):
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def publish_dir(tmp: Path, target: Path) -> None:
    """Move a fully written folder into place. Replacing an older one takes two renames, so a reader sees
    the old folder or the new one (or, for an instant, none), never a half-written one."""
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)


def fresh_tmp(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def reject_drop(drop_dir: Path, reason: str, rejected_root: Path, report: dict[str, Any] | None = None) -> Path:
    """Record a whole drop as rejected: an exact copy of it (symlinks kept as links) and the reason."""
    tmp = fresh_tmp(rejected_root, drop_dir.name)
    if drop_dir.is_dir():
        shutil.copytree(drop_dir, tmp / "drop", symlinks=True)
    write_json(tmp / "rejection.json", {"drop": drop_dir.name, "source": str(drop_dir), "reason": reason,
                                        "report": report})
    target = rejected_root / drop_dir.name
    publish_dir(tmp, target)
    return target


def ingest_drop(drop_dir: Path, raw_root: Path, rejected_root: Path) -> IngestResult:
    """Normalise one drop into raw_root/<name> (skipped when already there)."""
    target = raw_root / drop_dir.name
    if target.exists():
        return IngestResult(drop_dir.name, "skipped", target)
    try:
        drop = read_drop(drop_dir)
    except DataError as exc:
        return IngestResult(drop_dir.name, "rejected", reject_drop(drop_dir, str(exc), rejected_root),
                            reason=str(exc))
    tmp = fresh_tmp(raw_root, drop.name)
    records = []
    for row in drop.rows:
        hashes = {}
        for name in MEDIA_FIELDS:
            relative = row.fields.get(name)
            source = _inside(drop.root, relative)
            if source is None:
                continue  # missing or escaping paths are kept as written: validation reports them
            link_or_copy(source, tmp / relative)
            if row.fields.get(f"{name}_sha256") is None:
                hashes[f"{name}_sha256"] = sha256_file(source)
        records.append(record_to_json(row, hashes))
    write_jsonl(tmp / "manifest.jsonl", records)
    write_json(tmp / "drop.json", {**drop.meta, "name": drop.name, "ingested_from": drop.manifest_path.name,
                                   "manifest_sha256": sha256_file(drop.manifest_path), "records": len(records)})
    publish_dir(tmp, target)
    return IngestResult(drop.name, "ingested", target, records=len(records))


def _inside(root: Path, relative: Any) -> Path | None:
    if not isinstance(relative, str) or not relative.strip():
        return None
    try:
        path = safe_join(root, relative)
    except DataError:
        return None
    return path if path.is_file() else None


def ingest_drops(sources: list[str | os.PathLike], raw_root: str | os.PathLike,
                 rejected_root: str | os.PathLike) -> list[IngestResult]:
    """Ingest every drop under `sources` (drops or landing zones), in name order."""
    for area in (raw_root, rejected_root):  # both exist afterwards, even empty: they are pipeline outputs
        Path(area).mkdir(parents=True, exist_ok=True)
    return [ingest_drop(d, Path(raw_root), Path(rejected_root)) for d in list_drops(sources)]
