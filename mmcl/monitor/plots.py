"""PNG figures: drift scores over time (from the check history) and detection-rate curves (bench)."""

from __future__ import annotations

import json
from pathlib import Path

HISTORY_FILE = "drift_history.jsonl"


def append_history(result: dict, path: str | Path) -> list[dict]:
    """Append one check's result to a JSON-lines history file; returns the whole history."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(result) + "\n")
    return read_history(path)


def read_history(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _axes(n_rows: int, height: float = 2.2):
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on CI or servers
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n_rows, 1, figsize=(8, height * n_rows), sharex=True, squeeze=False)
    return plt, fig, axes[:, 0]


def plot_drift_history(history: list[dict], path: str | Path) -> Path:
    """One panel per method (score per check, red where that method flagged drift) + a p-value panel."""
    names = sorted({m for rec in history for m in rec["methods"]})
    plt, fig, axes = _axes(len(names) + 1)
    x = list(range(1, len(history) + 1))
    for ax, name in zip(axes, names, strict=False):
        recs = [rec["methods"].get(name) for rec in history]
        pts = [(i, r["score"], r.get("drift_detected")) for i, r in zip(x, recs, strict=True) if r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:blue", label=name)
        flagged = [p for p in pts if p[2]]
        ax.plot([p[0] for p in flagged], [p[1] for p in flagged], "o", color="tab:red", label="drift")
        score_name = next((r["score_name"] for r in recs if r), name)
        ax.set_ylabel(score_name, fontsize=8)
        ax.legend(loc="upper left", fontsize=7)
    ax = axes[-1]
    for name in names:
        pts = [
            (i, rec["methods"][name]["p_value"])
            for i, rec in zip(x, history, strict=True)
            if rec["methods"].get(name, {}).get("p_value") is not None
        ]
        if pts:
            ax.semilogy([p[0] for p in pts], [max(p[1], 1e-300) for p in pts], "o-", label=f"{name} p")
    alpha = history[-1]["alpha"] if history else 0.05
    k = max(len(history[-1].get("gated_methods", [])), 1) if history else 1
    ax.axhline(alpha, color="tab:red", linestyle="--", linewidth=1, label=f"alpha = {alpha} (per method)")
    if k > 1:
        ax.axhline(
            alpha / k, color="tab:red", linestyle=":", linewidth=1, label=f"alpha / {k} (overall verdict)"
        )
    overall = [i for i, rec in zip(x, history, strict=True) if rec.get("drift_detected")]
    for i in overall:  # shade the checks whose overall verdict was drift
        for a in axes:
            a.axvspan(i - 0.4, i + 0.4, color="tab:red", alpha=0.08, linewidth=0)
    ax.set_ylabel("p-value")
    ax.set_xticks(x, [rec.get("name") or str(i) for i, rec in zip(x, history, strict=True)], fontsize=7)
    ax.set_xlabel("check (oldest first; shaded = overall verdict drift)")
    ax.legend(loc="lower left", fontsize=7)
    fig.suptitle("Embedding drift over time")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_detection_curves(
    curves: dict[str, dict[float, float]], path: str | Path, *, xlabel: str, title: str, alpha: float = 0.05
) -> Path:
    """Detection rate vs shift level, one line per method; the dashed line is alpha (the level at 0)."""
    plt, fig, axes = _axes(1, height=4.0)
    ax = axes[0]
    for name, curve in curves.items():
        levels = sorted(curve)
        ax.plot(levels, [curve[lv] for lv in levels], "o-", label=name)
    ax.axhline(alpha, color="grey", linestyle="--", linewidth=1, label=f"alpha = {alpha}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("detection rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_alignment(result: dict, path: str | Path) -> Path:
    """Paired-similarity densities, reference vs current, one panel per pair (an alignment drift verdict)."""
    pairs = result["pairs"]
    plt, fig, axes = _axes(len(pairs), height=2.6)
    for ax, (name, res) in zip(axes, sorted(pairs.items()), strict=True):
        hist = res["histogram"]
        edges = hist["edges"]
        for side, colour in (("reference", "tab:blue"), ("current", "tab:red" if res["drift_detected"] else "tab:green")):
            ax.stairs(hist[side], edges, label=side, color=colour, fill=side == "reference", alpha=0.5)
        for s in res["suspects"][:10]:  # where the named suspects sit
            ax.axvline(s["similarity"], color="black", linewidth=0.5, alpha=0.6)
        verdict = "DRIFT" if res["drift_detected"] else "ok"
        ax.set_title(f"{name}: {verdict}, p = {res['p_value']:.3g} (threshold {res['threshold']:.3g})", fontsize=9)
        ax.set_ylabel("density", fontsize=8)
        ax.legend(loc="upper left", fontsize=7)
    axes[-1].set_xlabel("champion cosine of each pair (black ticks: top suspects)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
