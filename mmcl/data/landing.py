"""The landing zone: finding drops, ingesting them (read, normalise, content hashes) and rejecting the
ones whose manifest cannot be read.

    landing/drop-0001/...        drops as they arrive (never modified by mmcl)
    raw/drop-0001/               ingested: canonical manifest.jsonl (+ sha256 per media, source_drop,
                                 original line numbers, parse problems kept per row) + drop.json + media
    rejected/drop-0001/          a drop rejected whole: rejection.json (reason) + drop/ (an exact copy)

Ingesting never judges rows (that is validation's job, with the problems found here carried along in
the canonical manifest); it only refuses a drop it cannot read as records at all. Every output folder is
built under a temporary name and renamed into place, so readers see whole drops or nothing; media are
copied (never hard-linked), so nothing mmcl stores shares an inode with the landing zone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcl.data.manifest import (
    MANIFEST_NAMES,
    MEDIA_FIELDS,
    ManifestRow,
    copy_file,
    read_drop,
    record_to_json,
    remove_stale,
    sha256_file,
    tmp_name,
    write_json,
    write_jsonl,
)
from mmcl.data.paths import safe_join, symlink_on_path, symlink_reason
from mmcl.errors import DataError
from mmcl.faults import maybe_fault


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


def publish_dir(tmp: Path, target: Path) -> None:
    """Move a fully written folder into place. Replacing an older one takes two renames, so a reader sees
    the old folder or the new one (or, for an instant, none), never a half-written one; a kill between
    the two leaves `.old-<name>-...`, which remove_stale puts back."""
    if target.exists():
        old = target.with_name(tmp_name(target.name, "old"))
        os.replace(target, old)
        maybe_fault("landing.between_renames")
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)


@contextmanager
def staged(parent: Path, name: str) -> Iterator[Path]:
    """An empty hidden folder in `parent` to build `name` in, removed again when building it fails (a full
    disk leaves nothing half-written). Leftovers of killed runs in `parent` are removed first."""
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent)
    tmp = parent / tmp_name(name)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def reject_drop(drop_dir: Path, reason: str, rejected_root: Path, report: dict[str, Any] | None = None) -> Path:
    """Record a whole drop as rejected: an exact copy of it (symlinks kept as links) and the reason."""
    target = rejected_root / drop_dir.name
    with staged(rejected_root, drop_dir.name) as tmp:
        if drop_dir.is_symlink():  # the link, not what it points at: that is not the drop's to give
            os.symlink(os.readlink(drop_dir), tmp / "drop")
        elif drop_dir.is_dir():
            shutil.copytree(drop_dir, tmp / "drop", symlinks=True)
        write_json(tmp / "rejection.json", {"drop": drop_dir.name, "source": str(drop_dir), "reason": reason,
                                            "report": report})
        publish_dir(tmp, target)
    return target


def ingest_drop(drop_dir: Path, raw_root: Path, rejected_root: Path) -> IngestResult:
    """Normalise one drop into raw_root/<name> (skipped when already there). Media are copied, never
    hard-linked, and hashed as copied: a file rewritten in the landing zone later does not change raw/."""
    target = raw_root / drop_dir.name
    if target.exists():
        return IngestResult(drop_dir.name, "skipped", target)
    try:
        drop = read_drop(drop_dir)
    except DataError as exc:
        return IngestResult(drop_dir.name, "rejected", reject_drop(drop_dir, str(exc), rejected_root),
                            reason=str(exc))
    with staged(raw_root, drop.name) as tmp:
        records = []
        for row in drop.rows:
            hashes = {}
            for name in MEDIA_FIELDS:
                relative = row.fields.get(name)
                source = _inside(drop.root, relative, row, name)
                if source is None:
                    continue  # missing or escaping paths are kept as written: validation reports them
                digest = copy_file(source, tmp / relative)
                if row.fields.get(f"{name}_sha256") is None:
                    hashes[f"{name}_sha256"] = digest
            records.append(record_to_json(row, hashes))
        maybe_fault("landing.after_media")
        write_jsonl(tmp / "manifest.jsonl", records)
        write_json(tmp / "drop.json", {**drop.meta, "name": drop.name, "ingested_from": drop.manifest_path.name,
                                       "manifest_sha256": sha256_file(drop.manifest_path), "records": len(records)})
        maybe_fault("landing.before_publish")
        publish_dir(tmp, target)
    return IngestResult(drop.name, "ingested", target, records=len(records))


def _inside(root: Path, relative: Any, row: ManifestRow, name: str) -> Path | None:
    """The media file a row names, or None. A path through a symbolic link is refused here, with the
    reason kept on the row: the raw copy has no link left for validation to recognise."""
    if not isinstance(relative, str) or not relative.strip():
        return None
    link = symlink_on_path(root, relative)
    if link is not None:
        row.errors.append((name, f"{name} path {relative!r} {symlink_reason(link)}"))
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
        remove_stale(area)
    return [ingest_drop(d, Path(raw_root), Path(rejected_root)) for d in list_drops(sources)]
