"""Great Expectations results of one validation run -> one Dagster asset check per expectation.

The suites (mmcl.validate.suites) are the single list of checks: their names are the asset-check names.
Severity, per check, over the drops validated in this run:
  ERROR (blocks everything downstream)   a schema check failed (a drop was rejected whole), a check could
                                         not run, or a blocking check quarantined more than
                                         `max_quarantined_fraction` of the new rows
  WARN  (visible, does not block)        a few rows failed a blocking check (they are quarantined with
                                         their reasons; the good rows go on) or a warning check failed
"""


from collections import defaultdict
from typing import Any

import dagster as dg

from mmcl.validate.suites import BLOCKING, Check, record_checks, schema_checks

ASSET = "validated_drop"


def suite_checks() -> list[Check]:
    return [*schema_checks(), *record_checks()]


def check_specs() -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(c.name, asset=ASSET, blocking=True,
                              description=f"GX ({c.severity}): {c.description}") for c in suite_checks()]


def _examples(reports: list[Any], name: str, limit: int = 5) -> list[dict[str, Any]]:
    found = []
    for report in reports:
        for failure in [*report.failures, *report.warnings]:
            if failure.check == name and len(found) < limit:
                found.append({"drop": report.drop, "row": failure.row, "id": failure.id, "field": failure.field,
                              "reason": failure.reason})
    return found


def check_results(reports: list[Any], max_quarantined_fraction: float) -> list[dg.AssetCheckResult]:
    """One AssetCheckResult per suite check, aggregated over the drops of this run (see module doc)."""
    schema_names = {c.name for c in schema_checks()}
    ran: dict[str, list[Any]] = defaultdict(list)  # check -> its CheckSummary per drop it ran on
    for report in reports:
        for summary in report.checks:
            ran[summary.name].append((report, summary))
    new_rows = sum(r.rows for r in reports)
    results = []
    for check in suite_checks():
        runs = ran.get(check.name, [])
        failing = sum(s.failing_rows for _, s in runs)
        failed_drops = sorted(r.drop for r, s in runs if not s.success)
        errors = [f"{r.drop}: {s.error}" for r, s in runs if s.error]
        fraction = failing / new_rows if new_rows else 0.0
        passed = not failed_drops
        if passed:
            severity = dg.AssetCheckSeverity.WARN
        elif check.name in schema_names or errors or (check.severity == BLOCKING and fraction > max_quarantined_fraction):
            severity = dg.AssetCheckSeverity.ERROR
        else:
            severity = dg.AssetCheckSeverity.WARN
        results.append(dg.AssetCheckResult(
            check_name=check.name, asset_key=ASSET, passed=passed, severity=severity,
            description=check.description,
            metadata={"gx_severity": check.severity, "drops_checked": len(runs), "failing_rows": failing,
                      "new_rows": new_rows, "failing_fraction": round(fraction, 4),
                      "max_quarantined_fraction": max_quarantined_fraction,
                      "failed_drops": dg.MetadataValue.json(failed_drops),
                      "errors": dg.MetadataValue.json(errors),
                      "examples": dg.MetadataValue.json(_examples(reports, check.name))}))
    return results
