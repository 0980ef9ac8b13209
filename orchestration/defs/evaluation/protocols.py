"""The three evaluations as `mmcl eval ...` commands, each with the protocol string stored beside its figures.

A protocol names everything that changes the numbers (sets, sizes, folds, split), so the promotion gate
never compares an STS avg over 7 sets with one over 2. When the champion was measured under another
protocol, `evaluate` measures it again under the current one before the gate compares.
"""


import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcl.registry_models import items_file
from orchestration.helpers import read_json
from orchestration.model_records import record_evaluation, registry
from orchestration.resources import MmclCli, MmclProfile, MmclWorkspace


@dataclass(frozen=True)
class Protocol:
    kind: str            # sts | senteval | retrieval: the `mmcl eval` task and the lineage key
    args: list[str]      # `mmcl eval <kind>` arguments after --model/--output
    description: str     # the protocol string
    gated: str | None    # registry metric the promotion gate reads, or None
    headline: str        # result key of the gated / main figure

    def summarise(self, result: dict[str, Any]) -> dict[str, Any]:
        scalars = {k: float(v) for k, v in result.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if self.kind == "retrieval":  # R@K of both directions + rsum; MAP/MRR/ranks stay in the file
            scalars = {k: v for k, v in scalars.items() if "/R@" in k or k == "rsum"}
        return {**scalars, "protocol": self.description}


def protocol(kind: str, profile: MmclProfile) -> Protocol:
    if kind == "sts":
        args = ["--sets", *profile.sts_sets, "--quiet"]
        args += ["--max-pairs", str(profile.sts_max_pairs)] if profile.sts_max_pairs else []
        return Protocol(kind, args, f"sts sets={','.join(profile.sts_sets)} max_pairs={profile.sts_max_pairs} "
                                    "split=test spearman", "sts_avg", "avg")
    if kind == "senteval":
        args = ["--tasks", *profile.senteval_tasks, "--folds", str(profile.senteval_folds), "--quiet"]
        args += ["--max-samples", str(profile.senteval_max_samples)] if profile.senteval_max_samples else []
        return Protocol(kind, args, f"senteval tasks={','.join(profile.senteval_tasks)} "
                                    f"max_samples={profile.senteval_max_samples} folds={profile.senteval_folds}",
                        None, "avg")
    if kind == "retrieval":
        args = ["--pair", profile.retrieval_pair, "--split", "test"]
        args += ["--max-images", str(profile.retrieval_max_images)] if profile.retrieval_max_images else []
        return Protocol(kind, args, f"retrieval pair={profile.retrieval_pair} split=test (shared Flickr8k) "
                                    f"max_images={profile.retrieval_max_images}", "retrieval_rsum", "rsum")
    raise ValueError(f"unknown evaluation {kind!r}")


def _measure(proto: Protocol, model_file: str, out: Path, mmcl: MmclCli, log: Any) -> dict[str, Any]:
    mmcl.run(["eval", proto.kind, "--model", model_file, "--output", str(out), *proto.args], log=log)
    return {**proto.summarise(read_json(out)), "file": str(out)}


def evaluate(kind: str, model_id: str, workspace: MmclWorkspace, profile: MmclProfile, mmcl: MmclCli,
             log: Any) -> dict[str, Any]:
    """Evaluate a registered model (its model.pt in the store), record the result in the registry, lineage and
    card; re-measure the champion first if its figure came from another protocol. Returns the summary."""
    proto, reg = protocol(kind, profile), registry(workspace)
    state = reg.read()
    champion = state["champion"]
    if proto.gated and champion and champion != model_id:
        stored = state["models"][champion]["metrics"].get(proto.gated) or {}
        # the paired gate needs the champion's per-item results under the same protocol
        if stored.get("protocol") != proto.description or items_file(stored.get("source")) is None:
            if log is not None:
                log.info(f"champion {champion} has no {proto.gated} under '{proto.description}': measuring it")
            out = workspace.path("evals", champion, f"{kind}-{hashlib.sha256(proto.description.encode()).hexdigest()[:8]}.json")
            summary = _measure(proto, state["models"][champion]["model_file"], out, mmcl, log)
            reg.record_metric(champion, proto.gated, summary.get(proto.headline), proto.description, str(out))
    entry = reg.entry(model_id)
    summary = _measure(proto, entry["model_file"], workspace.path("evals", model_id, f"{kind}.json"), mmcl, log)
    # a NaN figure (a collapsed model) is stored as None: the gate then refuses it, it cannot show it is not worse
    gated = {proto.gated: summary.get(proto.headline)} if proto.gated else None
    summary["model_card"] = record_evaluation(workspace, model_id, kind, summary, gated)
    return summary
