"""The promotion gate as asset checks on the evaluations: one gated metric each, shown where it is measured.

Each check shows its metric's paired decision (challenger vs champion on the same queries / pairs, paired
bootstrap: mmcl.promotion) with the interval, in its description and metadata. They do not block:
`promoted_model` takes the decision for both metrics at once (the same gate, under the registry's lock)
and records a rejection as an outcome, so a rejected challenger never shows as a failed run.
"""


from typing import Any

import dagster as dg

from orchestration.model_records import registry
from orchestration.resources import MmclProfile, MmclWorkspace


def gate_metadata(comparison: Any) -> dict[str, Any]:
    """Metadata of one gated metric's comparison (registry MetricComparison)."""
    paired = comparison.paired or {}
    meta: dict[str, Any] = {"challenger_value": comparison.challenger, "champion_value": comparison.champion,
                            "margin": float(comparison.tolerance), "decision": comparison.reason}
    if paired:
        meta.update({"delta": paired["delta"], "interval_low": paired["low"], "interval_high": paired["high"],
                     "confidence": paired["confidence"], "resampled_units": paired["units"],
                     "resamples": paired["resamples"]})
    return {k: (dg.MetadataValue.float(float(v)) if isinstance(v, float) else
                dg.MetadataValue.text("none" if v is None else str(v))) for k, v in meta.items()}


def _gate_result(evaluation: dict[str, Any], metric: str, workspace: MmclWorkspace,
                 profile: MmclProfile) -> dg.AssetCheckResult:
    gate = registry(workspace).gate(evaluation["model_id"], profile.tolerances(), profile.promotion_confidence)
    mine = [c for c in gate.comparisons if c.metric == metric]
    if not mine:  # no champion yet, or the challenger is the champion
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, description=gate.summary(),
                                   metadata={"challenger": evaluation["model_id"], "champion": str(gate.champion)})
    comparison = mine[0]
    return dg.AssetCheckResult(
        passed=comparison.passed, severity=dg.AssetCheckSeverity.WARN,
        description=f"{metric}: {comparison.reason}",
        metadata={"challenger": evaluation["model_id"], "champion": str(gate.champion), **gate_metadata(comparison)})


@dg.asset_check(asset="sts_eval", blocking=False,
                description="challenger STS avg not worse than the champion's on the same pairs (paired bootstrap at "
                            "the profile's confidence, margin sts_tolerance); promoted_model decides")
def sts_not_worse_than_champion(sts_eval: dict[str, Any], workspace: MmclWorkspace,
                                profile: MmclProfile) -> dg.AssetCheckResult:
    return _gate_result(sts_eval, "sts_avg", workspace, profile)


@dg.asset_check(asset="retrieval_eval", blocking=False,
                description="challenger retrieval RSUM not worse than the champion's on the same queries (paired "
                            "bootstrap over images at the profile's confidence, margin rsum_tolerance); "
                            "promoted_model decides")
def rsum_not_worse_than_champion(retrieval_eval: dict[str, Any], workspace: MmclWorkspace,
                                 profile: MmclProfile) -> dg.AssetCheckResult:
    return _gate_result(retrieval_eval, "retrieval_rsum", workspace, profile)
