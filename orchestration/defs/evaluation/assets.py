"""Evaluation assets (`mmcl eval sts|senteval|retrieval`) and promoted_model (champion/challenger registry)."""


from typing import Any

import dagster as dg

from orchestration.defs.evaluation.protocols import evaluate
from orchestration.helpers import code_version, scalar_metadata
from orchestration.model_records import card_path, registry, write_card
from orchestration.resources import MmclCli, MmclProfile, MmclWorkspace

GROUP = "evaluation"


def _eval_output(kind: str, trained_model: dict[str, Any], summary: dict[str, Any]) -> dg.Output[dict[str, Any]]:
    figures = {k: v for k, v in summary.items() if isinstance(v, float)}
    return dg.Output({"model_id": trained_model["model_id"], "kind": kind, **summary},
                     metadata={**scalar_metadata(figures), "model_id": trained_model["model_id"],
                               "protocol": summary["protocol"], "report": dg.MetadataValue.path(summary["file"])})


@dg.asset(
    group_name=GROUP, kinds={"python"}, code_version=code_version("mmcl/eval/sts.py", "mmcl/eval/embedders.py"),
    description="`mmcl eval sts` on the challenger's text tower: Spearman x100 of cosine similarity on the profile's "
                "STS sets and their avg (the gated figure); JSON + Markdown + PNG in evals/<model>/.",
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


@dg.asset(
    group_name=GROUP, kinds={"json"}, code_version=code_version("mmcl/registry_models.py", "mmcl/model_card.py"),
    description="The champion: the challenger is promoted in the registry (models/registry.json) when the blocking "
                "gate checks on sts_eval and retrieval_eval passed; `mmcl models rollback` restores the previous "
                "champion. A worse challenger never gets here: the gate fails and this step does not run.",
)
def promoted_model(context: dg.AssetExecutionContext, trained_model: dict[str, Any], sts_eval: dict[str, Any],
                   senteval_eval: dict[str, Any], retrieval_eval: dict[str, Any], workspace: MmclWorkspace,
                   profile: MmclProfile) -> dg.Output[dict[str, Any]]:
    from mmcl.model_card import read_model_lineage
    from mmcl.registry_models import PromotionRefused

    reg, model_id = registry(workspace), trained_model["model_id"]
    try:  # the gate again, under the registry's lock: another run may have promoted since the checks ran
        gate = reg.promote(model_id, profile.tolerances(), reason=f"dagster run {context.run_id}")
    except PromotionRefused as exc:
        raise dg.Failure(str(exc), metadata={"gate": dg.MetadataValue.json(exc.gate.to_dict())}) from exc
    write_card(workspace, read_model_lineage(model_id, workspace.lineage))  # card shows the champion status
    entry = reg.entry(model_id)
    value = {"champion": model_id, "previous": gate.champion, "model_file": entry["model_file"],
             "run_dir": trained_model["run_dir"], "dataset_md5": trained_model["dataset_md5"], "gate": gate.to_dict()}
    context.log.info(f"champion: {model_id} (was {gate.champion}): {gate.summary()}")
    return dg.Output(value, data_version=dg.DataVersion(model_id), metadata={
        "champion": model_id, "previous_champion": str(gate.champion), "gate": gate.summary(),
        **scalar_metadata({"sts_avg": sts_eval.get("avg"), "retrieval_rsum": retrieval_eval.get("rsum"),
                           "senteval_avg": senteval_eval.get("avg")}),
        "model_card": dg.MetadataValue.path(str(card_path(workspace, model_id))),
        "registry": dg.MetadataValue.path(str(reg.file))})
