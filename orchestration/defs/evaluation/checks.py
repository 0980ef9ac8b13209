"""The promotion gate: blocking checks on the evaluations, one gated metric each."""


from typing import Any

import dagster as dg

from orchestration.model_records import registry
from orchestration.resources import MmclProfile, MmclWorkspace


def _gate_result(evaluation: dict[str, Any], metric: str, tolerance: float, workspace: MmclWorkspace):
    gate = registry(workspace).gate(evaluation["model_id"], {metric: tolerance}, metrics=(metric,))
    comparison = gate.comparisons[0].__dict__ if gate.comparisons else None
    return dg.AssetCheckResult(passed=gate.passed, severity=dg.AssetCheckSeverity.ERROR, description=gate.summary(),
                               metadata={"challenger": evaluation["model_id"], "champion": str(gate.champion),
                                         "tolerance": tolerance,
                                         "comparison": dg.MetadataValue.json(comparison or {"note": gate.summary()})})


@dg.asset_check(asset="sts_eval", blocking=True,
                description="challenger STS avg >= champion STS avg - sts_tolerance (same protocol); blocks promotion")
def sts_not_worse_than_champion(sts_eval: dict[str, Any], workspace: MmclWorkspace,
                                profile: MmclProfile) -> dg.AssetCheckResult:
    return _gate_result(sts_eval, "sts_avg", profile.sts_tolerance, workspace)


@dg.asset_check(asset="retrieval_eval", blocking=True,
                description="challenger retrieval RSUM >= champion RSUM - rsum_tolerance (same protocol); blocks "
                            "promotion")
def rsum_not_worse_than_champion(retrieval_eval: dict[str, Any], workspace: MmclWorkspace,
                                 profile: MmclProfile) -> dg.AssetCheckResult:
    return _gate_result(retrieval_eval, "retrieval_rsum", profile.rsum_tolerance, workspace)
