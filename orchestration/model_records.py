"""Keep a model's registry entry, lineage record and model card in step as the pipeline learns about it."""

from __future__ import annotations

from typing import Any

from orchestration.resources import MmclWorkspace


def registry(workspace: MmclWorkspace):
    from mmcl.registry_models import ModelRegistry

    return ModelRegistry(workspace.models)


def card_path(workspace: MmclWorkspace, model_id: str):
    return workspace.models / model_id / "MODEL_CARD.md"


def write_card(workspace: MmclWorkspace, record: dict[str, Any]) -> str:
    from mmcl.model_card import write_model_card, write_model_lineage

    write_model_lineage(record, workspace.lineage)
    entry = registry(workspace).read()["models"].get(record["model"])
    return str(write_model_card(record, card_path(workspace, record["model"]), entry))


def record_training(workspace: MmclWorkspace, model_id: str, run_dir: str, dataset_md5: str) -> str:
    """Register the run as a challenger and write its lineage + card (the teacher is the one training
    recorded in its metrics.json, if any); returns the card path."""
    from mmcl.lineage import LineageStore
    from mmcl.model_card import model_lineage

    dataset = LineageStore(workspace.lineage).read("dataset", dataset_md5)
    registry(workspace).register(model_id, run_dir, dataset_md5=dataset_md5)
    return write_card(workspace, model_lineage(model_id, run_dir, dataset=dataset))


def record_evaluation(workspace: MmclWorkspace, model_id: str, kind: str, summary: dict[str, Any],
                      gated: dict[str, float] | None = None) -> str:
    """Add an evaluation to the lineage + card, and its gated metrics (name -> value) to the registry."""
    from mmcl.model_card import add_evaluation, read_model_lineage

    reg = registry(workspace)
    for metric, value in (gated or {}).items():
        reg.record_metric(model_id, metric, value, protocol=summary["protocol"], source=summary.get("file"))
    record = add_evaluation(read_model_lineage(model_id, workspace.lineage), kind, summary)
    return write_card(workspace, record)
