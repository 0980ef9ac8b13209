"""Evaluation outputs: the JSON, a Markdown table and a bar chart (PNG, matplotlib Agg) side by side.

    write_report(result, "reports/sts.json", kind="sts")  # -> sts.json, sts.md, sts.png

The STS table carries the papers' numbers from METHODS.md below the measured row, labelled as what
they are: BERT-base encoders trained on Wiki1M + Flickr30k, not the model measured here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mmcl.data.senteval import STS_SETS, TRANSFER_TASKS

STS_HEADERS = {
    "sts12": "STS12",
    "sts13": "STS13",
    "sts14": "STS14",
    "sts15": "STS15",
    "sts16": "STS16",
    "stsb": "STS-B",
    "sickr": "SICK-R",
    "avg": "avg",
}
# Spearman x100, SentEval "all" (STS12-16) and test split (STS-B, SICK-R); METHODS.md, KDMCSE table.
PUBLISHED_STS = {
    "BERT-base first-last avg, untrained": (39.70, 59.38, 49.67, 66.03, 66.19, 53.87, 62.06, 56.70),
    "SimCSE-BERT-base unsup (Wiki1M)": (68.40, 82.41, 74.38, 80.91, 78.56, 76.85, 72.23, 76.25),
    "MCSE-BERT-base": (71.4, 81.8, 74.8, 83.6, 77.5, 79.5, 72.6, 77.3),
    "KDMCSE-BERT-base": (74.4, 83.1, 76.3, 83.7, 78.8, 81.3, 73.0, 78.6),
}
PUBLISHED_NOTE = (
    "Published rows: BERT-base encoders trained on Wiki1M (+ Flickr30k for MCSE/KDMCSE), from the "
    "SimCSE / KDMCSE papers as quoted in METHODS.md: different encoders and training data than the "
    "measured row; they are a reference point, not a like-for-like comparison."
)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def model_label(result: dict[str, Any]) -> str:
    model = result.get("details", {}).get("model", {})
    source = model.get("name") or Path(str(model.get("source", "model"))).name or "model"
    extra = f", pooling {model['pooling']}" if model.get("pooling") else ""
    return f"{source} ({model.get('kind', '?')}{extra})"


def sts_markdown(result: dict[str, Any], label: str | None = None, with_published: bool = True) -> str:
    sets = [s for s in STS_SETS if s in result]
    header = ["model", *(STS_HEADERS[s] for s in sets), "avg"]
    rows = [[f"**{label or model_label(result)}** (measured)", *(result[s] for s in sets), result["avg"]]]
    if with_published and sets == list(STS_SETS):
        rows += [[f"{name} (published)", *values] for name, values in PUBLISHED_STS.items()]
    details = result["details"]
    parts = [f"# STS (Spearman x100, cosine)\n\n{_table(header, rows)}"]
    if with_published and sets == list(STS_SETS):
        parts.append(f"_{PUBLISHED_NOTE}_")
    agg_rows = [
        [
            STS_HEADERS[s],
            d["all"]["spearman"],
            d["mean"]["spearman"],
            d["wmean"]["spearman"],
            d["all"]["pearson"],
            d["n_pairs"],
            d["n_skipped"],
        ]
        for s, d in details["sets"].items()
    ]
    parts.append(
        "## Aggregations\n\n"
        + _table(["set", "all", "mean", "wmean", "pearson (all)", "pairs", "skipped"], agg_rows)
    )
    sub_rows = [
        [STS_HEADERS[s], name, sub["spearman"], sub["pearson"], sub["n_pairs"]]
        for s, d in details["sets"].items()
        for name, sub in d["subsets"].items()
    ]
    parts.append("## Subsets\n\n" + _table(["set", "subset", "spearman", "pearson", "pairs"], sub_rows))
    timing = details["timing"]
    parts.append(
        f"Split {details['split']}, max_pairs {details['max_pairs']}; {timing['n_unique_sentences']} distinct "
        f"sentences encoded in {timing['encode_s']:.1f} s, total {timing['total_s']:.1f} s."
    )
    return "\n\n".join(parts) + "\n"


def transfer_markdown(result: dict[str, Any], label: str | None = None) -> str:
    tasks = [t for t in TRANSFER_TASKS if t in result]
    rows = [[f"**{label or model_label(result)}**", *(result[t] for t in tasks), result["avg"]]]
    text = f"# SentEval transfer (test accuracy x100)\n\n{_table(['model', *tasks, 'avg'], rows)}\n\n"
    cls = result["details"]["classifier"]
    text += (
        f"Logistic regression ({cls['model']}), C grid {cls['c_grid']}, {cls['folds']}-fold CV for MR/CR/SUBJ/MPQA, "
        f"C chosen on {cls['inner_selection']} (SST-2: dev). max_samples {result['details']['max_samples']}."
    )
    if "MRPC" in result and "f1" in result["details"]["tasks"]["MRPC"]:
        text += f" MRPC F1 {result['details']['tasks']['MRPC']['f1']:.2f}."
    return text + "\n"


def retrieval_markdown(result: dict[str, Any], label: str | None = None) -> str:
    directions = sorted({k.split("/")[0] for k in result if "/" in k})
    metrics = ["R@1", "R@5", "R@10", "rsum", "MAP", "MRR", "medR", "meanR", "n_queries"]
    rows = [[d, *(result.get(f"{d}/{m}") for m in metrics)] for d in directions]
    return (
        f"# Retrieval ({label or model_label(result)})\n\n{_table(['direction', *metrics], rows)}\n\n"
        f"RSUM (both directions) {result['rsum']:.2f}. Ties count against the query (pessimistic).\n"
    )


def geometry_markdown(result: dict[str, Any], label: str | None = None) -> str:
    d = result["details"]
    rows = [
        [
            label or model_label(result),
            result["alignment"],
            result["uniformity"],
            d["positive_pairs"],
            d["n_sentences"],
        ]
    ]
    return (
        "# Alignment and uniformity (lower is better)\n\n"
        + _table(["model", "alignment", "uniformity", "positive pairs", "sentences"], rows)
        + f"\n\n{d['data']}: positives are pairs with gold > {d['threshold']}.\n"
    )


def bar_chart(labels: list[str], values: list[float], title: str, ylabel: str, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on CI / servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 1.5), 3.6), dpi=120)
    bars = ax.bar(labels, [0.0 if v is None or math.isnan(v) else v for v in values], color="#4C72B0")
    ax.bar_label(bars, labels=[_fmt(v, 1) for v in values], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _clean(obj: Any) -> Any:
    """NaN -> null (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(
    result: dict[str, Any], output: str | Path, kind: str, label: str | None = None
) -> dict[str, Path]:
    """Write <output>.json, .md and .png (same stem). kind: sts | senteval | retrieval | geometry."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = {"json": out, "md": out.with_suffix(".md"), "png": out.with_suffix(".png")}
    per_item = result.get("per_item")
    result = {k: v for k, v in result.items() if k != "per_item"}
    if per_item:  # per query / pair arrays beside the figures: <stem>.items.npz (mmcl.promotion reads them)
        import numpy as np

        paths["items"] = out.with_suffix(".items.npz")
        np.savez(paths["items"], **per_item)
    paths["json"].write_text(json.dumps(_clean(result), indent=2) + "\n")
    if kind == "sts":
        keys = [s for s in STS_SETS if s in result] + ["avg"]
        md, title, ylabel = sts_markdown(result, label), "STS Spearman x100", "Spearman x100"
    elif kind == "senteval":
        keys = [t for t in TRANSFER_TASKS if t in result] + ["avg"]
        md, title, ylabel = transfer_markdown(result, label), "SentEval transfer accuracy", "accuracy %"
    elif kind == "retrieval":
        keys = [k for k in result if k.endswith(("/R@1", "/R@5", "/R@10"))]
        md, title, ylabel = retrieval_markdown(result, label), "Retrieval recall", "R@K %"
    elif kind == "geometry":
        keys = ["alignment", "uniformity"]
        md, title, ylabel = (
            geometry_markdown(result, label),
            "Alignment / uniformity (lower is better)",
            "value",
        )
    else:
        raise ValueError(f"unknown report kind {kind!r}")
    paths["md"].write_text(md)
    bar_chart([STS_HEADERS.get(k, k) for k in keys], [result[k] for k in keys], title, ylabel, paths["png"])
    return paths
