"""The validation report: per drop, every check's verdict and every failing row with field and reason.

JSON shape (`mmcl validate ... --output report.json`):
{
  "summary": {"drops": 2, "rejected": 0, "rows": 60, "accepted": 57, "quarantined": 3, "warned": 4,
              "blocking_failed": true},
  "drops": [{
    "drop": "drop-0002", "drop_dir": "...", "manifest": "...", "status": "passed|quarantined|rejected",
    "reason": null | "why the whole drop was rejected",
    "rows": 30, "accepted": 27, "quarantined": 3, "warned": 2, "media_check": "full",
    "checks": [{"name": "image_decodes", "severity": "blocking", "success": false, "failing_rows": 1,
                "expectation": "expect_column_values_to_be_null", "description": "..."}],
    "failures": [{"row": 4, "id": "x", "field": "image", "check": "image_decodes", "severity": "blocking",
                  "reason": "image does not decode: cannot identify image file ..."}],
    "warnings": [...same shape, severity "warning"...]
  }]
}
`row` is the 1-based line of the record in the drop's manifest (the CSV header is line 1).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from mmcl.data.manifest import write_json

PASSED, QUARANTINED, REJECTED = "passed", "quarantined", "rejected"


@dataclass
class Failure:
    row: int | None
    id: str | None
    field: str | None
    reason: str
    check: str
    severity: str


@dataclass
class CheckSummary:
    name: str
    severity: str
    description: str
    expectation: str
    success: bool
    failing_rows: int
    error: str | None = None  # GX raised while evaluating: the check could not run


@dataclass
class DropReport:
    drop: str
    drop_dir: str
    manifest: str | None
    status: str
    reason: str | None = None
    rows: int = 0
    accepted: int = 0
    quarantined: int = 0
    warned: int = 0
    media_check: str = "full"
    elapsed_s: float = 0.0
    checks: list[CheckSummary] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[Failure] = field(default_factory=list)

    @property
    def blocking_failed(self) -> bool:
        return self.status != PASSED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line per drop plus one per failure, for the terminal."""
        head = f"{self.drop}: {self.status}"
        if self.status == REJECTED:
            return f"{head}: {self.reason}"
        lines = [f"{head} ({self.accepted}/{self.rows} rows accepted, {self.quarantined} quarantined, "
                 f"{self.warned} with warnings)"]
        lines += [f"  row {f.row} id={f.id!r} {f.field or ''} [{f.check}, {f.severity}]: {f.reason}"
                  for f in self.failures]
        return "\n".join(lines)


def summarise(reports: list[DropReport]) -> dict[str, Any]:
    return {
        "drops": len(reports),
        "rejected": sum(r.status == REJECTED for r in reports),
        "rows": sum(r.rows for r in reports),
        "accepted": sum(r.accepted for r in reports),
        "quarantined": sum(r.quarantined for r in reports),
        "warned": sum(r.warned for r in reports),
        "blocking_failed": any(r.blocking_failed for r in reports),
    }


def write_report(path: str | os.PathLike, reports: list[DropReport]) -> dict[str, Any]:
    """Write the report JSON atomically; returns the written object."""
    document = {"summary": summarise(reports), "drops": [r.to_dict() for r in reports]}
    write_json(path, document)
    return document
