"""Evaluation assets (`mmcl eval sts|senteval|retrieval`) and promoted_model (champion/challenger registry)."""


import enum
from typing import Any

import dagster as dg
from pydantic import Field

from orchestration.defs.evaluation.protocols import evaluate
from orchestration.helpers import code_version, scalar_metadata
from orchestration.model_records import card_path, registry, write_card
from orchestration.resources import MmclCli, MmclProfile, MmclWorkspace

GROUP = "evaluation"
PromotionAction = enum.Enum("PromotionAction", {a: a for a in ("gate", "force", "rollback")}, type=str)


def _eval_output(kind: str, trained_model: dict[str, Any], summary: dict[str, Any]) -> dg.Output[dict[str, Any]]:
    figures = {k: v for k, v in summary.items() if isinstance(v, float)}
    return dg.Output({"model_id": trained_model["model_id"], "kind": kind, **summary},
                     metadata={**scalar_metadata(figures), "model_id": trained_model["model_id"],
                               "protocol": summary["protocol"], "report": dg.MetadataValue.path(summary["file"])})


@dg.asset(
    group_name=GROUP, kinds={"python"}, code_version=code_version("mmcl/eval/sts.py", "mmcl/eval/embedders.py"),
    description="`mmcl eval sts` on the challenger's text tower: Spearman x100 of cosine similarity on the profile's "
                "STS sets and their avg (the gated figure); JSON + Markdown + PNG in `evals/<model>/`.",
)
def sts_eval(context: dg.AssetExecutionContext, trained_model: dict[str, Any], workspace: MmclWorkspace,
             profile: MmclProfile, mmcl: MmclCli) -> dg.Output[dict[str, Any]]:
    return _eval_output("sts", trained_model, evaluate("sts", trained_model["model_id"], workspace, profile, mmcl,
                                                       context.log))


@dg.asset(
    group_name=GROUP, kinds={"scikit-learn"}, code_version=code_version("mmcl/eval/senteval.py", "mmcl/eval/embedders.py"),
    description="`mmcl eval senteval`: logistic-regression transfer accuracy on the profile's SentEval tasks (in "
                "the model card; not gated).",
)
def senteval_eval(context: dg.AssetExecutionContext, trained_model: dict[str, Any], workspace: MmclWorkspace,
                  profile: MmclProfile, mmcl: MmclCli) -> dg.Output[dict[str, Any]]:
    return _eval_output("senteval", trained_model, evaluate("senteval", trained_model["model_id"], workspace, profile,
                                                            mmcl, context.log))


@dg.asset(
    group_name=GROUP, kinds={"pytorch"}, code_version=code_version("mmcl/eval/retrieval.py", "mmcl/train/evaluate.py"),
    description="`mmcl eval retrieval`: Flickr8k test-split retrieval between two towers (shared data, never trained "
                "on, the same for every model), R@1/5/10 both directions and RSUM (the gated figure).",
)
def retrieval_eval(context: dg.AssetExecutionContext, trained_model: dict[str, Any], workspace: MmclWorkspace,
                   profile: MmclProfile, mmcl: MmclCli) -> dg.Output[dict[str, Any]]:
    return _eval_output("retrieval", trained_model, evaluate("retrieval", trained_model["model_id"], workspace,
                                                             profile, mmcl, context.log))


class PromotionConfig(dg.Config):
    """How promoted_model picks the champion. `gate` (the default, what retrain_job does): the challenger just
    trained, if the paired gate does not show it worse. `force` / `rollback` (champion_job in the Launchpad):
    a person overrides the gate; who and why are recorded in the registry events and the model's lineage."""

    action: PromotionAction = Field(default=PromotionAction.gate, description="gate | force | rollback")
    model_id: str | None = Field(default=None, description="force: the registered model to make champion")
    requested_by: str = Field(default="", description="force / rollback: who asks (recorded in lineage)")
    reason: str = Field(default="", description="force / rollback: why (recorded in lineage)")


def _decision_table(gate: Any) -> str:
    rows = ["| metric | challenger | champion | delta | interval | decision |", "|---|---|---|---|---|---|"]
    for c in gate.comparisons:
        p = c.paired or {}
        interval = f"[{p['low']:+.2f}, {p['high']:+.2f}] ({100 * (2 * p['confidence'] - 1):.4g}%)" if p else "–"
        delta = f"{p['delta']:+.2f}" if p else "–"
        rows.append(f"| {c.metric} | {c.challenger} | {c.champion} | {delta} | {interval} | "
                    f"{'pass' if c.passed else 'REJECT'}: {c.reason} |")
    return "\n".join(rows)


def _record_override(workspace: MmclWorkspace, model_id: str, event: dict[str, Any]) -> None:
    """A forced promotion or rollback in the model's lineage record (and card), beside its evaluations."""
    from mmcl.model_card import read_model_lineage

    record = read_model_lineage(model_id, workspace.lineage)
    write_card(workspace, {**record, "overrides": [*record.get("overrides", []), event]})


@dg.asset(
    group_name=GROUP, kinds={"json"}, code_version=code_version("mmcl/registry_models.py", "mmcl/promotion.py",
                                                                "mmcl/model_card.py"),
    output_required=False,
    description="The champion. In retrain_job the challenger is promoted in the registry (models/registry.json) "
                "unless the paired gate shows it worse than the champion on the same queries and pairs "
                "(mmcl.promotion). A rejection is an outcome, not a failure: the run succeeds, the registry records "
                "the model as rejected with the reasons, the run is tagged mmcl/promotion=rejected, and this asset "
                "(and the reference embeddings after it) keep the current champion. champion_job forces a "
                "promotion or a rollback by hand, recording who and why.",
)
def promoted_model(context: dg.AssetExecutionContext, config: PromotionConfig, trained_model: dict[str, Any],
                   sts_eval: dict[str, Any], senteval_eval: dict[str, Any], retrieval_eval: dict[str, Any],
                   workspace: MmclWorkspace, profile: MmclProfile):
    from mmcl.errors import UserError
    from mmcl.model_card import read_model_lineage
    from mmcl.registry_models import PromotionRefused

    reg = registry(workspace)
    who = {"requested_by": config.requested_by, "reason": config.reason, "run": context.run_id}
    if config.action != PromotionAction.gate and not (config.requested_by.strip() and config.reason.strip()):
        raise dg.Failure(f"{config.action.value}: say who asks and why (requested_by, reason): both are recorded",
                         allow_retries=False)
    try:
        if config.action == PromotionAction.rollback:
            retired, model_id = reg.rollback(by=config.requested_by, reason=config.reason)
            gate, previous = None, retired
            _record_override(workspace, model_id, {"action": "rollback", "from": retired, **who})
        else:
            model_id = config.model_id if config.action == PromotionAction.force else trained_model["model_id"]
            if not model_id:
                raise UserError("force: name the model to promote (model_id)")
            force = config.action == PromotionAction.force
            # the gate again, under the registry's lock: another run may have promoted since the checks ran
            gate = reg.promote(model_id, profile.tolerances(), force=force, confidence=profile.promotion_confidence,
                               by=config.requested_by if force else f"dagster run {context.run_id}",
                               reason=config.reason if force else "the paired gate")
            previous = gate.champion
            if force:
                _record_override(workspace, model_id, {"action": "force", "previous": previous,
                                                       "gate_passed": gate.passed, **who})
    except PromotionRefused as exc:
        table = _decision_table(exc.gate)
        context.instance.add_run_tags(context.run_id, {"mmcl/promotion": "rejected",
                                                       "mmcl/rejected_model": exc.gate.challenger})
        context.log.warning(f"challenger {exc.gate.challenger} rejected; champion stays {exc.gate.champion}: "
                            f"{exc.gate.summary()}")
        yield dg.AssetObservation(asset_key=context.asset_key, metadata={
            "decision": "rejected", "challenger": exc.gate.challenger, "champion": str(exc.gate.champion),
            "reasons": dg.MetadataValue.md(table), "gate": dg.MetadataValue.json(exc.gate.to_dict())})
        return  # no output: the champion's value (and everything downstream) stays as it was
    except UserError as exc:
        raise dg.Failure(f"{config.action.value}: {exc}", allow_retries=False) from None
    write_card(workspace, read_model_lineage(model_id, workspace.lineage))  # card shows the champion status
    entry = reg.entry(model_id)
    context.instance.add_run_tags(context.run_id, {"mmcl/promotion": "promoted" if config.action ==
                                                   PromotionAction.gate else config.action.value})
    value = {"champion": model_id, "previous": previous, "model_file": entry["model_file"],
             "run_dir": entry["run_dir"], "dataset_md5": entry.get("dataset_md5") or trained_model["dataset_md5"],
             "gate": gate.to_dict() if gate else None, "action": config.action.value}
    summary = gate.summary() if gate else f"rolled back from {previous}"
    context.log.info(f"champion: {model_id} (was {previous}): {summary}")
    yield dg.Output(value, data_version=dg.DataVersion(model_id), metadata={
        "champion": model_id, "previous_champion": str(previous), "action": config.action.value,
        "decision": dg.MetadataValue.md(_decision_table(gate) if gate and gate.comparisons else summary),
        # the champion's own figures (a forced or restored model is not the challenger just evaluated)
        **scalar_metadata({m: (r or {}).get("value") for m, r in entry.get("metrics", {}).items()}),
        "model_card": dg.MetadataValue.md(card_path(workspace, model_id).read_text(encoding="utf-8")),
        "model_card_file": dg.MetadataValue.path(str(card_path(workspace, model_id))),
        "registry": dg.MetadataValue.path(str(reg.file))})
