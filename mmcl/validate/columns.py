"""The table Great Expectations judges: one row per manifest record, the manifest's fields plus computed
columns (path safety, media decoding, content hashes, leakage, near-duplicates). A computed `*_error`
column holds None when the record is fine and the reason otherwise, so the expectation is simply "values
are null" and the report quotes the reason.

`Reference` is what is already accepted (the versioned dataset, plus earlier drops of the same run): ids
must not repeat across drops, and a content hash must not sit in train on one side and dev/test on the
other (the eval-split record, or the newcomer, is the one flagged).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mmcl.data.manifest import MEDIA_FIELDS, Drop, ManifestRow, sha256_file
from mmcl.data.paths import safe_join, symlink_on_path, symlink_reason
from mmcl.errors import DataError, UserError
from mmcl.validate.media import check_audio, check_image

EVAL_SPLITS = ("dev", "test")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHECKERS = {"image": check_image, "audio": check_audio}


def normalise_caption(text: str) -> str:
    """Lower-case, NFKC, letters and digits only, single spaces: "A dog , runs." == "a dog runs"."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


@dataclass
class Reference:
    """Accepted records the checks compare against (ids, content hashes by split side, captions)."""

    ids: dict[str, str] = field(default_factory=dict)                       # id -> source drop
    train_hashes: dict[str, tuple[str, str]] = field(default_factory=dict)  # sha256 -> (id, drop)
    eval_hashes: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # sha256 -> (id, drop, split)
    captions: dict[str, str] = field(default_factory=dict)                  # normalised caption -> id

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        """Add accepted records (dicts with id, split, source_drop, caption, *_sha256)."""
        for record in records:
            rid, drop, split = record["id"], record.get("source_drop", "?"), record.get("split")
            self.ids.setdefault(rid, drop)
            for name in MEDIA_FIELDS:
                digest = record.get(f"{name}_sha256")
                if digest and split == "train":
                    self.train_hashes.setdefault(digest, (rid, drop))
                elif digest and split in EVAL_SPLITS:
                    self.eval_hashes.setdefault(digest, (rid, drop, split))
            if record.get("caption"):
                self.captions.setdefault(normalise_caption(record["caption"]), rid)


def compute_table(drop: Drop, reference: Reference | None = None, *, media_check: str = "full",
                  workers: int | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """(DataFrame, the same rows as dicts): index 0..n-1 in manifest order, the columns the suites read."""
    import pandas as pd

    reference = reference or Reference()
    rows = [_base_columns(r) for r in drop.rows]
    _media_columns(drop, rows, media_check, workers)
    _cross_record_columns(rows, reference)
    return pd.DataFrame(rows, columns=list(rows[0].keys()) if rows else None), rows


def _base_columns(row: ManifestRow) -> dict[str, Any]:
    f = row.fields
    caption = f.get("caption")
    captions = f.get("captions") or []
    present = [m for m in ("caption", "image", "audio") if f.get(m) is not None] + (["captions"] if captions else [])
    return {
        "row": row.row, "id": f.get("id"), "split": f.get("split"), "source_drop": f.get("source_drop"),
        "group": f.get("group"), "caption": caption,
        "caption_clean": caption.strip() if isinstance(caption, str) else None,
        "captions_error": _captions_error(captions),
        "n_modalities": len(present),
        "parse_error": json.dumps(row.errors) if row.errors else None,
        "field_warning": json.dumps(row.warnings) if row.warnings else None,
        "image": f.get("image"), "image_declared_sha256": f.get("image_sha256"),
        "audio": f.get("audio"), "audio_declared_sha256": f.get("audio_sha256"),
    }


def _captions_error(captions: list[str]) -> str | None:
    empty = [i for i, c in enumerate(captions) if not c.strip()]
    return f"caption(s) {empty} of the captions list are empty" if empty else None


def _media_columns(drop: Drop, rows: list[dict[str, Any]], mode: str, workers: int | None) -> None:
    """Path safety, existence/decoding and sha256 of every media file, decoded in a small thread pool."""
    tasks: list[tuple[dict[str, Any], str, Path]] = []
    resolver = _MediaPaths(drop)
    for row, source in zip(rows, drop.rows, strict=True):
        refused = {field for field, _ in source.errors}  # e.g. a symlink refused at ingest: said once, there
        for name in MEDIA_FIELDS:
            row[f"{name}_path_error"] = row[f"{name}_error"] = row[f"{name}_sha256"] = None
            row[f"{name}_hash_error"] = None
            relative = row[name]
            if relative is None or name in refused:
                continue
            try:
                if not relative.strip():
                    raise DataError(drop.manifest_path, "empty path")
                path = resolver.resolve(relative)
            except DataError as exc:
                row[f"{name}_path_error"] = f"{name} path {relative!r}: {exc.reason}"
                continue
            tasks.append((row, name, path))
    workers = check_workers(workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(_progress(pool.map(lambda t: _check_one(t[1], t[2], mode), tasks), len(tasks)))
    for (row, name, _), (error, digest) in zip(tasks, results, strict=True):
        row[f"{name}_error"], row[f"{name}_sha256"] = error, digest
        declared = row[f"{name}_declared_sha256"]
        if declared is not None and not _SHA256.match(declared):
            row[f"{name}_hash_error"] = f"declared {name}_sha256 {declared!r} is not 64 lower-case hex digits"
        elif declared is not None and digest is not None and declared != digest:
            row[f"{name}_hash_error"] = (f"{name} content changed: manifest declares sha256 {declared[:12]}..., "
                                         f"file has {digest[:12]}... (truncated or altered in transit)")


def check_workers(workers: int | None) -> int:
    """The decoding thread count: `workers` (>= 1), or min(4, cpus) when None."""
    if workers is None:
        return min(4, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers must be an integer >= 1 (threads decoding media), got {workers!r}")
    return workers


class _MediaPaths:
    """safe_join for many paths of one drop, fast: a plain relative path ("images/x.jpg": no "..", not
    absolute) whose components below the (already resolved) drop root are not symlinks resolves to
    itself, which lstat shows with one call per file plus one per distinct folder. Anything else goes
    through mmcl.data.paths.safe_join, which resolves it fully (Path.resolve costs ~10 lstat per call)."""

    def __init__(self, drop: Drop):
        self.root, self.manifest = drop.root, drop.manifest_path
        self.plain_dirs: dict[str, bool] = {}  # relative folder -> exists and no symlink on the way

    def resolve(self, relative: str) -> Path:
        parts = PurePosixPath(relative).parts
        if relative.startswith("/") or not parts or ".." in parts or not self._plain_dir(parts[:-1]):
            return self._checked(relative)
        path = self.root.joinpath(*parts)
        if path.is_symlink():
            return self._checked(relative)
        return path

    def _checked(self, relative: str) -> Path:
        """The slow path: refuse symbolic links (even inside the drop), then safe_join."""
        link = symlink_on_path(self.root, relative)
        if link is not None:
            raise DataError(self.manifest, symlink_reason(link))
        return safe_join(self.root, relative, source=self.manifest)

    def _plain_dir(self, parts: tuple[str, ...]) -> bool:
        key = "/".join(parts)
        if key not in self.plain_dirs:
            here = self.root.joinpath(*parts)
            self.plain_dirs[key] = (not parts or (self._plain_dir(parts[:-1]) and not here.is_symlink()))
        return self.plain_dirs[key]


def _check_one(kind: str, path: Path, mode: str) -> tuple[str | None, str | None]:
    try:
        error = _CHECKERS[kind](path, mode)
        digest = sha256_file(path) if path.is_file() and not path.is_symlink() else None
    except Exception as exc:  # noqa: BLE001 (an unreadable file is this row's reason, never a traceback)
        error, digest = f"cannot be read: {type(exc).__name__}: {exc}", None
    return (f"{kind} {error}" if error and not error.startswith(kind) else error), digest


def _progress(iterable: Iterable, total: int) -> Iterable:
    if total < 2000:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc="media checks", unit="file", disable=None)


def _cross_record_columns(rows: list[dict[str, Any]], reference: Reference) -> None:
    """id already versioned, train/eval content leakage, near-duplicate captions."""
    drop_train: dict[str, tuple[str, int]] = {}
    for row in rows:
        if row["split"] == "train":
            for name in MEDIA_FIELDS:
                if row[f"{name}_sha256"]:
                    drop_train.setdefault(row[f"{name}_sha256"], (row["id"], row["row"]))
    seen_captions: dict[str, tuple[str, int]] = {}
    for row in rows:
        known = reference.ids.get(row["id"]) if row["id"] is not None else None
        row["id_conflict"] = f"id {row['id']!r} is already versioned (drop {known})" if known else None
        row["leak_field"], row["leak_error"] = _leak(row, drop_train, reference)
        row["caption_duplicate_of"] = _near_duplicate(row, seen_captions, reference)


def _leak(row: dict[str, Any], drop_train: dict[str, tuple[str, int]],
          reference: Reference) -> tuple[str | None, str | None]:
    """(media field, reason) for the first media whose content crosses the train / dev-test line."""
    for name in MEDIA_FIELDS:
        digest = row[f"{name}_sha256"]
        if not digest:
            continue
        if row["split"] in EVAL_SPLITS:
            if digest in reference.train_hashes:
                rid, drop = reference.train_hashes[digest]
                return name, f"{row['split']} {name} has the same content as versioned train record {rid!r} (drop {drop})"
            if digest in drop_train:
                rid, line = drop_train[digest]
                return name, f"{row['split']} {name} has the same content as train record {rid!r} (row {line}) of this drop"
        elif row["split"] == "train" and digest in reference.eval_hashes:
            rid, drop, split = reference.eval_hashes[digest]
            return name, f"train {name} has the same content as versioned {split} record {rid!r} (drop {drop})"
    return None, None


def _near_duplicate(row: dict[str, Any], seen: dict[str, tuple[str, int]], reference: Reference) -> str | None:
    if not row["caption_clean"]:
        return None
    key = normalise_caption(row["caption_clean"])
    if key in reference.captions:
        return f"caption is a near-duplicate of versioned record {reference.captions[key]!r}"
    if key in seen:
        rid, line = seen[key]
        return f"caption is a near-duplicate of record {rid!r} (row {line})"
    seen[key] = (row["id"], row["row"])
    return None
