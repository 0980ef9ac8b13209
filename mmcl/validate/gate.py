"""The gate between the landing zone and the dataset: validate each drop, then route its rows.

For every drop (name order): validate against what is already accepted (the versioned dataset's index
plus the accepted area plus earlier drops of this run), then
  rejected drop     -> rejected/<drop>/ (copy + reason)
  otherwise         -> failing rows to quarantine/<drop>/, the other rows to accepted/<drop>/
Without areas (plain `mmcl validate DROP --output r.json`) it only reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mmcl.data.landing import list_drops
from mmcl.data.manifest import read_drop, remove_stale
from mmcl.data.shards import read_index
from mmcl.errors import DataError
from mmcl.validate.columns import Reference
from mmcl.validate.quarantine import reject, route_rows
from mmcl.validate.report import REJECTED, DropReport
from mmcl.validate.runner import Validation, validate_drop
from mmcl.validate.suites import MAX_CAPTION_CHARS


@dataclass
class Areas:
    accepted: Path
    quarantine: Path
    rejected: Path

    @classmethod
    def under(cls, root: str | os.PathLike) -> Areas:
        root = Path(root)
        return cls(root / "validated", root / "quarantine", root / "rejected")


def build_reference(dataset_dir: str | os.PathLike | None = None, accepted_root: str | os.PathLike | None = None,
                    exclude: set[str] | frozenset[str] = frozenset()) -> Reference:
    """Reference of accepted records: the dataset index plus accepted drops (except those in `exclude`)."""
    reference = Reference()
    if dataset_dir is not None:
        reference.add(read_index(dataset_dir))
    if accepted_root is not None and Path(accepted_root).is_dir():
        for drop_dir in sorted(Path(accepted_root).iterdir()):
            if drop_dir.is_dir() and not drop_dir.name.startswith(".") and drop_dir.name not in exclude:
                try:
                    drop = read_drop(drop_dir)
                except DataError:
                    continue  # an accepted area is written by us; a broken one is not a reference
                reference.add(r.fields for r in drop.rows)
    return reference


def run_gate(sources: list[str | os.PathLike], *, areas: Areas | None = None,
             dataset_dir: str | os.PathLike | None = None, media_check: str = "full", workers: int | None = None,
             max_caption_chars: int = MAX_CAPTION_CHARS, severities: dict[str, str] | None = None) -> list[DropReport]:
    """Validate every drop under `sources`; with `areas`, route rows to accepted/quarantine/rejected."""
    drops = list_drops(sources)
    for area in (vars(areas).values() if areas else ()):  # every area exists afterwards, even empty
        area.mkdir(parents=True, exist_ok=True)
        remove_stale(area)
    reference = build_reference(dataset_dir, areas.accepted if areas else None, {d.name for d in drops})
    reports = []
    for drop_dir in drops:
        validation = validate_drop(drop_dir, reference, media_check=media_check, workers=workers,
                                   max_caption_chars=max_caption_chars, severities=severities)
        reports.append(validation.report)
        if areas is not None and validation.report.status == REJECTED:
            reject(validation, areas.rejected)
        elif areas is not None:
            route_rows(validation, areas.accepted, areas.quarantine)  # may quarantine rows changed meanwhile
        if validation.report.status != REJECTED:
            reference.add(_accepted_records(validation))
    return reports


def _accepted_records(validation: Validation) -> list[dict]:
    """Accepted rows as reference records (ids, split, computed hashes, caption)."""
    out = []
    for index in validation.accepted:
        computed = validation.rows[index]
        out.append({"id": computed["id"], "split": computed["split"], "source_drop": computed["source_drop"],
                    "caption": computed["caption"], "image_sha256": computed["image_sha256"],
                    "audio_sha256": computed["audio_sha256"]})
    return out

