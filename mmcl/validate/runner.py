"""Run the suites on a drop with Great Expectations 1.x and turn GX's results into a DropReport.

GX runs in an ephemeral context (nothing on disk, no YAML), with a pandas datasource whose dataframe is
passed per run. GX takes ~2.5 s to import, so it is imported here, lazily, the first time a drop is
validated; the context and validation definitions are built once per process and reused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcl.data.manifest import Drop, read_drop
from mmcl.errors import DataError
from mmcl.validate.columns import Reference, compute_table
from mmcl.validate.media import MEDIA_CHECK_MODES
from mmcl.validate.report import PASSED, QUARANTINED, REJECTED, CheckSummary, DropReport, Failure
from mmcl.validate.suites import (
    BLOCKING,
    MAX_CAPTION_CHARS,
    Check,
    build_suite,
    record_checks,
    schema_checks,
    with_severities,
)

_RUNNERS: dict[tuple, GxRunner] = {}


@dataclass
class Validation:
    """A validated drop: the report, the parsed drop (None if unreadable) and which rows were accepted."""

    report: DropReport
    drop: Drop | None
    rows: list[dict[str, Any]]  # computed columns per record, manifest order
    accepted: list[int]         # indexes into drop.rows / rows


class GxRunner:
    """An ephemeral GX context holding the two suites as validation definitions over pandas dataframes."""

    def __init__(self, max_caption_chars: int = MAX_CAPTION_CHARS, severities: dict[str, str] | None = None):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx_version = gx.__version__
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = self.context.data_sources.add_pandas("mmcl_drops")
        self.checks = {"drop_schema": schema_checks(),
                       "drop_records": with_severities(record_checks(max_caption_chars), severities)}
        self.definitions = {}
        for name, checks in self.checks.items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
            suite = self.context.suites.add(build_suite(gx, name, checks))
            self.definitions[name] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite))

    def run(self, suite: str, frame: Any) -> list[tuple[Check, bool, list[int], str | None]]:
        """[(check, success, failing row indexes, error)] in the suite's check order."""
        result = self.definitions[suite].run(batch_parameters={"dataframe": frame},
                                             result_format={"result_format": "COMPLETE"})
        by_name = {}
        for item in result.results:
            indexes = [int(i) for i in (item.result or {}).get("unexpected_index_list") or []]
            by_name[item.expectation_config.meta["check"]] = (bool(item.success), indexes,
                                                              _exception_message(item.exception_info),
                                                              item.expectation_config.type)
        self.last_types = {name: value[3] for name, value in by_name.items()}
        return [(c, *by_name[c.name][:3]) for c in self.checks[suite]]


def _exception_message(info: dict[str, Any] | None) -> str | None:
    """GX reports a raised exception either flat or keyed by metric id; None when nothing raised."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info["raised_exception"] else None
    raised = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    return raised[0].get("exception_message") if raised else None


def gx_runner(max_caption_chars: int = MAX_CAPTION_CHARS, severities: dict[str, str] | None = None) -> GxRunner:
    """The process's runner for these suite settings (built once: GX contexts are not free)."""
    key = (max_caption_chars, tuple(sorted((severities or {}).items())))
    if key not in _RUNNERS:
        _RUNNERS[key] = GxRunner(max_caption_chars, severities)
    return _RUNNERS[key]


def validate_drop(drop_dir: str | os.PathLike, reference: Reference | None = None, *, media_check: str = "full",
                  workers: int | None = None, max_caption_chars: int = MAX_CAPTION_CHARS,
                  severities: dict[str, str] | None = None) -> Validation:
    """Validate one drop folder against the suites (and the reference of already accepted records).
    `severities` overrides check severities by name, e.g. {"caption_not_near_duplicate": "blocking"}."""
    if media_check not in MEDIA_CHECK_MODES:
        raise ValueError(f"media_check must be one of {MEDIA_CHECK_MODES}, got {media_check!r}")
    start, root = time.perf_counter(), Path(drop_dir)
    report = DropReport(drop=root.name, drop_dir=str(root), manifest=None, status=PASSED, media_check=media_check)
    try:
        drop = read_drop(root)
    except DataError as exc:
        return _rejected(report, str(exc), None, start)
    report.manifest, report.rows = str(drop.manifest_path), len(drop.rows)
    runner = gx_runner(max_caption_chars, severities)
    import pandas as pd

    schema = runner.run("drop_schema", pd.DataFrame([r.fields for r in drop.rows]))
    report.checks += _summaries(runner, schema)
    failed = [c for c, ok, _, err in schema if not ok or err]
    if failed:
        reasons = "; ".join(c.reason({}) if callable(c.reason) else c.name for c in failed)
        return _rejected(report, f"{drop.manifest_path}: {reasons}", drop, start)
    frame, rows = compute_table(drop, reference, media_check=media_check, workers=workers)
    outcomes = runner.run("drop_records", frame)
    report.checks += _summaries(runner, outcomes)
    broken = [f"{c.name}: {err}" for c, _, _, err in outcomes if err]
    if broken:  # a check that cannot run must not pass a drop
        return _rejected(report, f"check(s) could not run: {'; '.join(broken)}", drop, start)
    accepted = _route(report, outcomes, rows)
    report.elapsed_s = round(time.perf_counter() - start, 3)
    return Validation(report, drop, rows, accepted)


def _route(report: DropReport, outcomes: list[tuple[Check, bool, list[int], str | None]],
           rows: list[dict[str, Any]]) -> list[int]:
    """Fill the report's failures / warnings and counts; returns the indexes of the accepted rows."""
    blocked: set[int] = set()
    for check, ok, indexes, _ in outcomes:
        if ok:
            continue
        target = report.failures if check.severity == BLOCKING else report.warnings
        for index in indexes:
            target += _failures(check, rows[index])
        if check.severity == BLOCKING:
            blocked.update(indexes)
    report.failures.sort(key=lambda f: (f.row or 0, f.check))
    report.warnings.sort(key=lambda f: (f.row or 0, f.check))
    accepted = [i for i in range(len(rows)) if i not in blocked]
    report.accepted, report.quarantined = len(accepted), len(blocked)
    report.warned = len({f.row for f in report.warnings} - {rows[i]["row"] for i in blocked})
    report.status = QUARANTINED if blocked else PASSED
    return accepted


def _rejected(report: DropReport, reason: str, drop: Drop | None, start: float) -> Validation:
    report.status, report.reason = REJECTED, reason  # its rows go, whole, to the rejected area
    report.elapsed_s = round(time.perf_counter() - start, 3)
    return Validation(report, drop, [], [])


def _summaries(runner: GxRunner, outcomes: list[tuple[Check, bool, list[int], str | None]]) -> list[CheckSummary]:
    return [CheckSummary(name=c.name, severity=c.severity, description=c.description,
                         expectation=runner.last_types.get(c.name, ""), success=ok and not err,
                         failing_rows=len(idx), error=err) for c, ok, idx, err in outcomes]


def _failures(check: Check, row: dict[str, Any]) -> list[Failure]:
    """One Failure per (field, reason); parse errors and unknown fields carry their own field names."""
    def make(field: str | None, reason: str) -> Failure:
        return Failure(row=int(row["row"]), id=row["id"], field=field, reason=reason, check=check.name,
                       severity=check.severity)

    if check.reason in ("parse_error", "field_warning"):
        return [make(f, r) for f, r in json.loads(row[check.reason])]
    reason = check.reason(row) if callable(check.reason) else row[check.reason]
    return [make(row[check.field_column] if check.field_column else check.field, reason)]
