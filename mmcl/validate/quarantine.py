"""Where validated rows go: accepted rows to the accepted area, failing rows to quarantine, unreadable
drops to the rejected area. Nothing is silently dropped: every input row ends up in exactly one place.

    accepted/<drop>/manifest.jsonl + media + drop.json + report.json   rows with no blocking failure
                                                                       (media copied and re-hashed)
    quarantine/<drop>/quarantine.json                                  summary: every row, its reasons
    quarantine/<drop>/rows/<line>-<id>/record.json + image.* / audio.*  the row as written, its media
    rejected/<drop>/rejection.json + drop/                              see mmcl.data.landing.reject_drop

Media are copied into quarantine only when their path stays inside the drop (an escaping path is recorded,
never followed). Each area is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mmcl.data.landing import publish_dir, reject_drop, staged
from mmcl.data.manifest import MEDIA_FIELDS, copy_file, record_to_json, write_json, write_jsonl
from mmcl.faults import maybe_fault
from mmcl.validate.report import QUARANTINED, REJECTED, Failure
from mmcl.validate.runner import Validation
from mmcl.validate.suites import BLOCKING


def file_label(record_id: Any) -> str:
    """A file-name-safe label for a row folder (ids in quarantine may be anything)."""
    text = re.sub(r"[^A-Za-z0-9_-]", "_", record_id if isinstance(record_id, str) else "no-id")
    return text[:64] or "no-id"


def route_rows(validation: Validation, accepted_root: Path, quarantine_root: Path) -> Path | None:
    """Write the accepted rows (canonical manifest, computed hashes, media) and the quarantined ones.
    Accepted media are copied and re-hashed: a row whose file no longer has the hash that was validated
    goes to quarantine instead. accepted/<drop> is published last: it is what marks the drop as done."""
    drop = validation.drop
    if drop is None or validation.report.status == REJECTED:
        return None
    target = accepted_root / drop.name
    with staged(accepted_root, drop.name) as tmp:
        records = _copy_accepted(validation, tmp)
        write_jsonl(tmp / "manifest.jsonl", records)
        write_json(tmp / "drop.json", {**drop.meta, "name": drop.name, "accepted": len(records)})
        write_json(tmp / "report.json", validation.report.to_dict())
        quarantine_rows(validation, quarantine_root)
        maybe_fault("quarantine.before_accept")
        publish_dir(tmp, target)
    return target


def _copy_accepted(validation: Validation, tmp: Path) -> list[dict[str, Any]]:
    drop, records, changed = validation.drop, [], []
    for index in validation.accepted:
        row, computed = drop.rows[index], validation.rows[index]
        extra, problems = {}, []
        for name in MEDIA_FIELDS:
            if row.fields.get(name) is None:
                continue
            digest = copy_file(drop.root / row.fields[name], tmp / row.fields[name])
            validated = computed[f"{name}_sha256"]
            if digest != validated:
                problems.append((name, f"{name} changed after validation: validated sha256 {validated[:12]}..., "
                                       f"the file now has {digest[:12]}... (rewritten while the drop was routed)"))
            extra[f"{name}_sha256"] = validated
        if problems:
            changed.append((index, problems))
            continue
        record = record_to_json(row, extra)
        record.pop("_warnings", None)  # warnings live in report.json
        records.append(record)
    if changed:
        _move_to_quarantine(validation, changed)
        kept = {r[name] for r in records for name in MEDIA_FIELDS if r.get(name)}
        for index, _ in changed:  # their copies must not sit in the accepted area
            for name in MEDIA_FIELDS:
                relative = drop.rows[index].fields.get(name)
                if relative and relative not in kept:
                    (tmp / relative).unlink(missing_ok=True)
    return records


def _move_to_quarantine(validation: Validation, changed: list[tuple[int, list[tuple[str, str]]]]) -> None:
    report = validation.report
    for index, problems in changed:
        row = validation.rows[index]
        report.failures += [Failure(row=int(row["row"]), id=row["id"], field=name, reason=reason,
                                    check=f"{name}_hash_matches", severity=BLOCKING) for name, reason in problems]
    moved = {index for index, _ in changed}
    validation.accepted = [i for i in validation.accepted if i not in moved]
    report.failures.sort(key=lambda f: (f.row or 0, f.check))
    report.accepted, report.quarantined = len(validation.accepted), report.quarantined + len(moved)
    report.status = QUARANTINED


def quarantine_rows(validation: Validation, quarantine_root: Path) -> Path | None:
    """Copy every row with a blocking failure (and its media) to quarantine with its reasons."""
    drop, report = validation.drop, validation.report
    if drop is None or report.status == REJECTED or not report.failures:
        return None
    by_row: dict[int, list[dict[str, Any]]] = {}
    for failure in report.failures:
        by_row.setdefault(failure.row, []).append(
            {"field": failure.field, "reason": failure.reason, "check": failure.check})
    target = quarantine_root / drop.name
    with staged(quarantine_root, drop.name) as tmp:
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
        if source.is_file() and not source.is_symlink():
            copied[name] = f"{name}{_suffix(relative)}"
            copy_file(source, folder / copied[name])
    return copied


def _suffix(relative: str) -> str:
    """The file's extension if it is a plain one, else none: a quarantine file name is ours, not the drop's."""
    suffix = Path(relative).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def reject(validation: Validation, rejected_root: Path) -> Path:
    report = validation.report
    return reject_drop(Path(report.drop_dir), report.reason or "rejected", rejected_root, report.to_dict())
