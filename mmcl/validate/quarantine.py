"""Where validated rows go: accepted rows to the accepted area, failing rows to quarantine, unreadable
drops to the rejected area. Nothing is silently dropped: every input row ends up in exactly one place.

    accepted/<drop>/manifest.jsonl + media + drop.json + report.json   rows with no blocking failure
    quarantine/<drop>/quarantine.json                                  summary: every row, its reasons
    quarantine/<drop>/rows/<line>-<id>/record.json + image.* / audio.*  the row as written, its media
    rejected/<drop>/rejection.json + drop/                              see mmcl.data.landing.reject_drop

Media are copied into quarantine only when their path stays inside the drop (an escaping path is recorded,
never followed). Each area is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from mmcl.data.landing import fresh_tmp, link_or_copy, publish_dir, reject_drop
from mmcl.data.manifest import MEDIA_FIELDS, record_to_json, write_json, write_jsonl
from mmcl.validate.report import REJECTED
from mmcl.validate.runner import Validation


def file_label(record_id: Any) -> str:
    """A file-name-safe label for a row folder (ids in quarantine may be anything)."""
    text = re.sub(r"[^A-Za-z0-9_-]", "_", record_id if isinstance(record_id, str) else "no-id")
    return text[:64] or "no-id"


def accept_rows(validation: Validation, accepted_root: Path) -> Path | None:
    """Write the accepted rows of a drop (canonical manifest with the computed hashes) and their media."""
    drop = validation.drop
    if drop is None or validation.report.status == REJECTED:
        return None
    tmp = fresh_tmp(accepted_root, drop.name)
    records = []
    for index in validation.accepted:
        row, computed = drop.rows[index], validation.rows[index]
        extra = {}
        for name in MEDIA_FIELDS:
            if row.fields.get(name) is None:
                continue
            link_or_copy(drop.root / row.fields[name], tmp / row.fields[name])
            extra[f"{name}_sha256"] = computed[f"{name}_sha256"]
        record = record_to_json(row, extra)
        record.pop("_warnings", None)  # warnings live in report.json
        records.append(record)
    write_jsonl(tmp / "manifest.jsonl", records)
    write_json(tmp / "drop.json", {**drop.meta, "name": drop.name, "accepted": len(records)})
    write_json(tmp / "report.json", validation.report.to_dict())
    target = accepted_root / drop.name
    publish_dir(tmp, target)
    return target


def quarantine_rows(validation: Validation, quarantine_root: Path) -> Path | None:
    """Copy every row with a blocking failure (and its media) to quarantine with its reasons."""
    drop, report = validation.drop, validation.report
    if drop is None or report.status == REJECTED or not report.failures:
        return None
    by_row: dict[int, list[dict[str, Any]]] = {}
    for failure in report.failures:
        by_row.setdefault(failure.row, []).append(
            {"field": failure.field, "reason": failure.reason, "check": failure.check})
    tmp = fresh_tmp(quarantine_root, drop.name)
    summary = []
    computed_by_line = {r["row"]: r for r in validation.rows}
    for row in drop.rows:
        if row.row not in by_row:
            continue
        folder = tmp / "rows" / f"{row.row:06d}-{file_label(row.id)}"
        folder.mkdir(parents=True, exist_ok=True)
        media = _copy_media(drop.root, computed_by_line[row.row], folder)
        write_json(folder / "record.json", {"drop": drop.name, "row": row.row, "id": row.id,
                                            "record": record_to_json(row), "failures": by_row[row.row],
                                            "media": media})
        summary.append({"row": row.row, "id": row.id, "folder": str(folder.relative_to(tmp)),
                        "failures": by_row[row.row]})
    write_json(tmp / "quarantine.json", {"drop": drop.name, "source": str(drop.root), "rows": summary,
                                         "report": report.to_dict()})
    target = quarantine_root / drop.name
    publish_dir(tmp, target)
    return target


def _copy_media(root: Path, computed: dict[str, Any], folder: Path) -> dict[str, str | None]:
    """Copy the row's media that sit inside the drop; returns {field: copied file name or None}."""
    copied: dict[str, str | None] = {}
    for name in MEDIA_FIELDS:
        relative = computed[name]
        copied[name] = None
        if relative is None or computed[f"{name}_path_error"]:
            continue
        source = root / relative
        if source.is_file():
            copied[name] = f"{name}{Path(relative).suffix.lower()}"
            shutil.copy2(source, folder / copied[name])
    return copied


def reject(validation: Validation, rejected_root: Path) -> Path:
    report = validation.report
    return reject_drop(Path(report.drop_dir), report.reason or "rejected", rejected_root, report.to_dict())
