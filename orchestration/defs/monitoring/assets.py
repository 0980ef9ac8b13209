"""Monitoring assets: the champion's reference embeddings, and the drift of newly arrived data against them.

One caption per image on both sides (the primary caption): an image's five captions are not independent
samples, and the permutation test assumes exchangeable rows.
"""


import random
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.helpers import code_version, read_json, stored_value
from orchestration.resources import MmclCli, MmclProfile, MmclWorkspace

GROUP = "monitoring"
DRIFT_CHECK = "no_embedding_drift"


def _embed(model_file: str, texts: list[str], out: Path) -> tuple[int, int]:
    """Champion text embeddings of `texts` -> out (.npy) and out.txt (the texts, one per line)."""
    import numpy as np

    from mmcl.eval.embedders import load_text_embedder

    emb = load_text_embedder(model_file, show_progress=False).encode(texts)  # [N, D]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.asarray(emb, dtype=np.float32))
    out.with_suffix(".txt").write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
    return int(emb.shape[0]), int(emb.shape[1])


@dg.asset(
    group_name=GROUP, kinds={"pytorch", "numpy"},
    code_version=code_version("mmcl/eval/embedders.py", "orchestration/defs/monitoring/assets.py"),
    description="The champion's text embeddings of a fixed probe set: the primary caption of (up to "
                "probe_max_rows, seeded) images of the dataset version it was trained on. The reference every "
                "later drift check compares new data with.",
)
def reference_embeddings(context: dg.AssetExecutionContext, promoted_model: dict[str, Any],
                         workspace: MmclWorkspace, profile: MmclProfile) -> dg.Output[dict[str, Any]]:
    from mmcl.data.flickr import load_flickr_triples
    from mmcl.lineage import LineageStore, record_key

    md5 = promoted_model["dataset_md5"]
    records = sorted(load_flickr_triples(workspace.path("train_views", record_key(md5))), key=lambda r: r.image_id)
    records = random.Random(0).sample(records, min(profile.probe_max_rows, len(records)))
    out = workspace.path("monitoring", "reference", promoted_model["champion"], "text.npy")
    rows, dim = _embed(promoted_model["model_file"], [r.captions[0] for r in records], out)
    drops = LineageStore(workspace.lineage).read("dataset", md5)["source_drops"]
    value = {"champion": promoted_model["champion"], "model_file": promoted_model["model_file"], "dataset_md5": md5,
             "source_drops": drops, "embeddings": str(out), "rows": rows, "dim": dim}
    return dg.Output(value, data_version=dg.DataVersion(f"{promoted_model['champion']}:{md5}"), metadata={
        "champion": value["champion"], "dataset_md5": md5, "rows": rows, "dim": dim,
        "embeddings": dg.MetadataValue.path(str(out)), "source_drops": dg.MetadataValue.json(drops)})


def _new_captions(workspace: MmclWorkspace, drops: list[str]) -> list[str]:
    """Primary caption of every accepted record of `drops`."""
    from mmcl.data.manifest import read_drop

    texts = []
    for name in drops:
        for row in read_drop(workspace.path("validated", name)).rows:
            caption = row.fields.get("caption") or (row.fields.get("captions") or [None])[0]
            if caption:
                texts.append(caption)
    return texts


def _drift_args(ref: str, cur: str, out: Path, profile: MmclProfile, workspace: MmclWorkspace, name: str) -> list[str]:
    args = ["drift", "--reference", ref, "--current", cur, "--output", str(out), "--seed", "0",
            "--alpha", str(profile.drift_alpha), "--permutations", str(profile.drift_permutations),
            "--workspace", str(workspace.path("monitoring", "evidently")), "--name", name]
    return args + ([] if profile.drift_report else ["--no-report"])


@dg.asset(
    group_name=GROUP, kinds={"evidently", "numpy"}, deps=["reference_embeddings"],
    code_version=code_version("mmcl/monitor", "orchestration/defs/monitoring/assets.py"),
    check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset="embedding_drift",
                                   description="the new data's champion embeddings are not drifted from the reference "
                                               "(Evidently classifier + MMD permutation test, Bonferroni); a failure "
                                               "starts retrain_job (drift_retrain_sensor)")],
    description="`mmcl drift` between the reference embeddings and the champion's embeddings of the data that "
                "arrived since the champion's dataset version (drops in the latest version, not in the champion's): "
                "verdict JSON, Evidently report + snapshot in monitoring/evidently (`evidently ui`), drift history PNG.",
)
def embedding_drift(context: dg.AssetExecutionContext, dataset_version: dict[str, Any], workspace: MmclWorkspace,
                    profile: MmclProfile, mmcl: MmclCli):
    reference = stored_value(workspace, "reference_embeddings")
    new_drops = [d for d in dataset_version["source_drops"] if d not in (reference or {}).get("source_drops", [])]
    texts = _new_captions(workspace, new_drops) if reference else []
    status = "no_reference" if not reference else "no_new_data" if not new_drops else \
        "too_few_rows" if len(texts) < 20 else "checked"
    value: dict[str, Any] = {"status": status, "new_drops": new_drops, "rows": len(texts), "drift_detected": False,
                             "champion": (reference or {}).get("champion"), "dataset_md5": dataset_version["md5"]}
    methods: dict[str, dict[str, Any]] = {}
    verdict: dict[str, Any] = {}
    if status == "checked":
        folder = workspace.path("monitoring", "checks", context.run_id[:8])
        _embed(reference["model_file"], texts, folder / "current.npy")
        mmcl.run(_drift_args(reference["embeddings"], str(folder / "current.npy"), folder / "drift.json", profile,
                             workspace, f"{','.join(new_drops)} vs {reference['champion']}"), log=context.log)
        verdict = read_json(folder / "drift.json")
        methods = method_verdicts(verdict)
        value.update(drift_detected=bool(verdict["drift_detected"]), verdict=str(folder / "drift.json"),
                     report=(verdict.get("report") or {}).get("html"), plot=verdict.get("plot"), methods=methods)
    summary = drift_summary(status, verdict, methods, len(texts), new_drops)
    context.log.info(f"drift: {summary}")
    meta: dict[str, Any] = {"status": status, "drift_detected": str(value["drift_detected"]), "rows": len(texts),
                            "new_drops": dg.MetadataValue.json(new_drops), "summary": summary}
    for name, m in methods.items():
        meta.update({f"{name}_score": float(m["score"]), f"{name}_verdict": m["verdict"]})
        if m["p_value"] is not None:
            meta[f"{name}_p_value"] = float(m["p_value"])
            meta[f"{name}_threshold"] = float(m["threshold"])
    if methods:
        meta["methods"] = dg.MetadataValue.md(methods_markdown(verdict, methods))
    if value.get("plot") and Path(value["plot"]).is_file():  # the history plot, on the page itself
        meta["drift_history"] = dg.MetadataValue.md(png_markdown(Path(value["plot"]), "drift history"))
    if value.get("report"):
        meta["evidently_report"] = dg.MetadataValue.path(value["report"])
        meta["evidently_ui"] = dg.MetadataValue.text(
            f"evidently ui --workspace {workspace.path('monitoring', 'evidently')}  (then http://127.0.0.1:8000)")
    if "verdict" in value:
        meta["verdict_file"] = dg.MetadataValue.path(value["verdict"])
    yield dg.Output(value, metadata=meta)
    yield dg.AssetCheckResult(check_name=DRIFT_CHECK, passed=not value["drift_detected"],
                              severity=dg.AssetCheckSeverity.WARN, description=summary,
                              metadata={k: meta[k] for k in meta if k != "drift_history"})


def method_verdicts(verdict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method: score, p-value, the threshold it is held to, and its verdict in the gated decision."""
    gated = verdict.get("gated_methods", [])
    alpha = float(verdict["alpha"])
    threshold = alpha / max(len(gated), 1)
    out = {}
    for name, r in verdict["methods"].items():
        p = r.get("p_value")
        is_gated = name in gated
        limit = threshold if is_gated else alpha
        drifted = p is not None and p < limit
        out[name] = {"score": r.get("score"), "score_name": r.get("score_name", "score"), "p_value": p,
                     "threshold": limit, "gated": is_gated,
                     "verdict": ("drift" if drifted else "no drift") if p is not None else "reported only",
                     "evidently_drift_detected": r.get("evidently_drift_detected")}
    return out


def drift_summary(status: str, verdict: dict[str, Any], methods: dict[str, dict[str, Any]], rows: int,
                  drops: list[str]) -> str:
    if status != "checked":
        reasons = {"no_reference": "no champion yet: nothing to compare with",
                   "no_new_data": "no data arrived since the champion's dataset version",
                   "too_few_rows": f"only {rows} new rows (at least 20 are needed for a test)"}
        return f"not checked: {reasons.get(status, status)}"
    head = "DRIFT" if verdict["drift_detected"] else "no drift"
    parts = [f"{n}: {m['score_name']} {m['score']:.3g}, p {m['p_value']:.3g} vs {m['threshold']:.3g} -> {m['verdict']}"
             for n, m in methods.items() if m["p_value"] is not None]
    text = f"{head} on {rows} new rows of {', '.join(drops)} ({verdict['decision_rule']}): {'; '.join(parts)}"
    classifier = methods.get("classifier") or {}
    evidently = classifier.get("evidently_drift_detected")
    if evidently is not None and evidently != (classifier.get("verdict") == "drift"):
        text += (f". Evidently's own verdict differs ({'drift' if evidently else 'no drift'}): it compares the AUC "
                 "with the 95th percentile of AUCs of random scores, without a p-value or a correction for the "
                 "other methods; the gated verdict holds each method's calibrated p-value to alpha / k")
    return text


def methods_markdown(verdict: dict[str, Any], methods: dict[str, dict[str, Any]]) -> str:
    rows = ["| method | score | p-value | threshold | verdict | gated | Evidently's verdict |",
            "|---|---|---|---|---|---|---|"]
    for name, m in methods.items():
        p = "–" if m["p_value"] is None else f"{m['p_value']:.4f}"
        t = "–" if m["p_value"] is None else f"{m['threshold']:.4f}"
        ev = "–" if m["evidently_drift_detected"] is None else ("drift" if m["evidently_drift_detected"] else "no drift")
        rows.append(f"| {name} | {m['score_name']} {m['score']:.4f} | {p} | {t} | {m['verdict']} | "
                    f"{'yes' if m['gated'] else 'no'} | {ev} |")
    return "\n".join(rows) + f"\n\nDecision: {verdict['decision_rule']}."


def png_markdown(path: Path, alt: str) -> str:
    """A PNG inline in a Markdown metadata value (the UI cannot open local files)."""
    import base64

    return f"![{alt}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"
