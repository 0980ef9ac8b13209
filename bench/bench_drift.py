"""Drift monitoring bench (issue #6): calibration, power on real shifts, speed. CPU only.

    .venv/bin/python bench/bench_drift.py                      # full run (~40 min CPU on 2 cores)
    .venv/bin/python bench/bench_drift.py --sections calibration text --reps-null 20 --reps-power 10

Data (real): all-MiniLM-L6-v2 embeddings of the 40,460 Flickr8k captions and the 10,662 SentEval MR
sentences; EfficientNet-Lite0 (ImageNet) features of the 1000 Flickr8k photos, clean and corrupted as
#5's shifted drops do it. Embeddings are cached in .mmcl_cache/monitor/ (first run encodes them).
Peers measured in the same run: Evidently 0.7.23's own verdicts (classifier bootstrap, classifier
default threshold 0.55, distance bootstrap, MMD bootstrap) on the very same splits.
Writes bench/drift_results.json, bench/drift_results.md (the RESULTS.md section) and bench/figures/*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcl.monitor.detector import DriftSettings, detect_drift  # noqa: E402
from mmcl.monitor.evidently_drift import ClassifierSettings, l2_normalise, prepare  # noqa: E402
from mmcl.monitor.mmd import MmdSettings, mmd_permutation_test  # noqa: E402
from mmcl.monitor.plots import plot_detection_curves  # noqa: E402

BENCH = Path(__file__).resolve().parent
ALPHA = 0.05
BLUR_NOISE_LEVELS = (0.05, 0.1, 0.25, 0.5)
MR_FRACTIONS = (0.05, 0.10, 0.25, 0.50)
SECTIONS = ("calibration", "grouped", "null_extra", "text", "image", "speed")


def load_text():
    from mmcl.monitor.sources import encode_texts, load_flickr_captions, load_mr_sentences

    captions, image_ids = load_flickr_captions()
    cap = encode_texts(captions, name="flickr_captions")  # [40460, 384]
    mr = encode_texts(load_mr_sentences(), name="mr")  # [10662, 384]
    groups: dict[str, list[int]] = {}
    for i, image in enumerate(image_ids):
        groups.setdefault(image, []).append(i)
    return cap, mr, [groups[k] for k in sorted(groups)]


def load_images():
    from mmcl.data.flickr import load_flickr_triples
    from mmcl.monitor.sources import encode_images

    paths = [r.image_path for r in load_flickr_triples()]
    out = {("clean", 0.0): encode_images(paths)}
    for kind in ("blur", "noise"):
        for level in BLUR_NOISE_LEVELS:
            out[(kind, level)] = encode_images(paths, corruption=kind, level=level)
    return out


def evidently_peers(ref: np.ndarray, cur: np.ndarray, seed: int) -> dict:
    """Evidently's built-in verdicts with its defaults, on the same L2-normalised, pooled-PCA data."""
    from evidently.metrics.embeddings import DistanceDriftMethod, MMDDriftMethod

    ref_df, cur_df, _ = prepare(ref, cur, ClassifierSettings(), seed)
    return {
        "evidently_distance_bootstrap": bool(
            DistanceDriftMethod(bootstrap=True)(cur_df.copy(), ref_df.copy())[1]
        ),
        "evidently_mmd_bootstrap": bool(MMDDriftMethod(bootstrap=True)(cur_df.copy(), ref_df.copy())[1]),
    }


def one_check(ref, cur, seed: int, peers: bool = False, groups=None) -> dict:
    """Verdicts of every method on one pair (our gates + Evidently's own flags)."""
    ref_groups, cur_groups = groups or (None, None)
    res = detect_drift(
        ref, cur, settings=DriftSettings(seed=seed), reference_groups=ref_groups, current_groups=cur_groups
    )
    m = res["methods"]
    row = {
        "mmd": m["mmd"]["p_value"] < ALPHA,
        "classifier": m["classifier"]["p_value"] < ALPHA,
        "overall (Bonferroni)": res["drift_detected"],
        "evidently_classifier_bootstrap": m["classifier"]["evidently_drift_detected"],
        "evidently_classifier_default_0.55": m["classifier"]["score"] > 0.55,
        "centroid_distance": m["centroid"]["score"],
        "mmd_p": m["mmd"]["p_value"],
        "classifier_p": m["classifier"]["p_value"],
    }
    if peers:
        row.update(evidently_peers(ref, cur, seed))
    return row


def rates(rows: list[dict]) -> dict:
    out = {}
    for key in rows[0]:
        vals = [r[key] for r in rows]
        if isinstance(vals[0], bool | np.bool_):
            out[key] = float(np.mean(vals))
        elif key == "centroid_distance":
            out[key] = float(np.mean(vals))
    return out


def text_pair(cap, mr, groups, n, fraction, rng, clustered=False, with_ids=False):
    """Reference and current from disjoint images; current has `fraction` MR sentences.
    with_ids: also return the image index of each row (clustered null only)."""
    order = rng.permutation(len(groups))
    n_mr = int(round(fraction * n))
    if clustered:  # a drop of n/5 images with all five captions each
        k = n // 5
        ref_idx = [i for g in order[:k] for i in groups[g]]
        cur_idx = [i for g in order[k : 2 * k] for i in groups[g]][: n - n_mr]
    else:  # one caption per image: independent rows
        ref_idx = [groups[g][rng.integers(len(groups[g]))] for g in order[:n]]
        cur_idx = [groups[g][rng.integers(len(groups[g]))] for g in order[n : 2 * n - n_mr]]
    cur = cap[cur_idx]
    if with_ids:
        image_of = {i: g for g in order[: 2 * (n // 5)] for i in groups[g]}
        return cap[ref_idx], cur, ([image_of[i] for i in ref_idx], [image_of[i] for i in cur_idx])
    if n_mr:
        cur = np.vstack([cur, mr[rng.choice(len(mr), n_mr, replace=False)]])
    return cap[ref_idx], cur


def run_calibration(cap, mr, groups, reps, n) -> dict:
    out = {}
    for variant, clustered, peers in (
        ("one caption per image", False, True),
        ("5 captions per image", True, False),
    ):
        rng = np.random.default_rng(1)
        rows = [
            one_check(*text_pair(cap, mr, groups, n, 0.0, rng, clustered), seed=i, peers=peers)
            for i in tqdm(range(reps), desc=f"null: {variant}")
        ]
        out[variant] = {
            "reps": reps,
            "n_per_side": n,
            "false_alarm_rate": rates(rows),
            "mmd_p": [r["mmd_p"] for r in rows],
            "classifier_p": [r["classifier_p"] for r in rows],
        }
    return out


def run_grouped_calibration(cap, mr, groups, reps, n) -> dict:
    """The clustered null again, rows averaged per image before testing (`--reference-groups`)."""
    rng = np.random.default_rng(1)  # the same splits as the clustered variant of run_calibration
    rows = []
    for i in tqdm(range(reps), desc="null: 5 captions per image, grouped"):
        ref, cur, ids = text_pair(cap, mr, groups, n, 0.0, rng, clustered=True, with_ids=True)
        rows.append(one_check(ref, cur, seed=i, groups=ids))
    return {
        "reps": reps,
        "n_per_side": n // 5,
        "rows_per_side": n,
        "false_alarm_rate": rates(rows),
        "mmd_p": [r["mmd_p"] for r in rows],
        "classifier_p": [r["classifier_p"] for r in rows],
    }


def run_text_power(cap, mr, groups, reps, n, null_rates) -> dict:
    curves = {0.0: null_rates}
    for fraction in MR_FRACTIONS:
        rng = np.random.default_rng(2)
        rows = [
            one_check(*text_pair(cap, mr, groups, n, fraction, rng), seed=i)
            for i in tqdm(range(reps), desc=f"text shift {fraction:.0%}")
        ]
        curves[fraction] = rates(rows)
    return curves


def run_image_power(images, reps, n) -> dict:
    curves: dict[str, dict] = {"blur": {}, "noise": {}}
    clean = images[("clean", 0.0)]
    for kind in ("blur", "noise"):
        for level in (0.0, *BLUR_NOISE_LEVELS):
            shifted = clean if level == 0 else images[(kind, level)]
            rng = np.random.default_rng(3)
            rows = []
            for i in tqdm(range(reps), desc=f"image {kind} {level}"):
                order = rng.permutation(len(clean))  # disjoint photos: reference clean, current corrupted
                rows.append(one_check(clean[order[:n]], shifted[order[n : 2 * n]], seed=i))
            curves[kind][level] = rates(rows)
    return curves


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run_speed(cap) -> dict:
    """10,000 x 384 vs 10,000 x 384 (real captions) and growth with n; wall and CPU seconds."""
    from evidently.metrics.embeddings import MMDDriftMethod

    rng = np.random.default_rng(4)
    idx = rng.permutation(len(cap))
    ref, cur = cap[idx[:10_000]].astype(np.float64), cap[idx[10_000:20_000]].astype(np.float64)
    detect_drift(ref[:100], cur[:100])  # warm imports so they are not timed
    out = {"full_check_10k": {}}
    for method in ("mmd", "classifier", "centroid"):
        _, wall, cpu = _timed(lambda m=method: detect_drift(ref, cur, methods=(m,)))
        out["full_check_10k"][method] = {"wall_s": wall, "cpu_s": cpu}
    _, wall, cpu = _timed(lambda: detect_drift(ref, cur))
    out["full_check_10k"]["all three (default)"] = {"wall_s": wall, "cpu_s": cpu}
    out["mmd_vs_n"], out["classifier_vs_n"], out["evidently_mmd_vs_n"] = {}, {}, {}
    for n in (250, 500, 1000, 2000, 4000):
        s = MmdSettings(max_samples=n)
        _, wall, cpu = _timed(
            lambda s=s: mmd_permutation_test(l2_normalise(ref), l2_normalise(cur), settings=s)
        )
        out["mmd_vs_n"][n] = {"wall_s": wall, "cpu_s": cpu, "kernel_mb": (2 * n) ** 2 * 8 / 2**20}
    for n in (500, 1000, 2000, 5000, 10_000):
        settings = DriftSettings(classifier=ClassifierSettings(max_samples=n))
        _, wall, cpu = _timed(
            lambda st=settings: detect_drift(ref, cur, methods=("classifier",), settings=st)
        )
        out["classifier_vs_n"][n] = {"wall_s": wall, "cpu_s": cpu}
    for n in (500, 1000, 2000, 4000):  # peer: Evidently's MMD (one kernel on all rows, 100 bootstraps)
        ref_df, cur_df, _ = prepare(ref[:n], cur[:n], ClassifierSettings(max_samples=n), 0)
        _, wall, cpu = _timed(lambda r=ref_df, c=cur_df: MMDDriftMethod(bootstrap=True)(c.copy(), r.copy()))
        out["evidently_mmd_vs_n"][n] = {"wall_s": wall, "cpu_s": cpu}
    from mmcl.monitor.evidently_drift import run_report

    _, wall, cpu = _timed(
        lambda: run_report(l2_normalise(ref), l2_normalise(cur), settings=ClassifierSettings(), seed=0)
    )
    out["evidently_report_2x1000"] = {"wall_s": wall, "cpu_s": cpu}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps-null", type=int, default=100)
    parser.add_argument("--reps-power", type=int, default=40)
    parser.add_argument("--n", type=int, default=1000, help="text rows per side")
    parser.add_argument("--n-image", type=int, default=500, help="photos per side (1000 in all)")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--out", default=str(BENCH / "drift_results.json"))
    args = parser.parse_args()
    out = Path(args.out)
    # sections merge into the existing file, so a long run can be split (and a crash keeps earlier ones)
    results = json.loads(out.read_text()) if out.is_file() else {}
    cap, mr, groups = load_text()
    for section in args.sections:
        start = time.perf_counter()
        if section == "calibration":
            results[section] = run_calibration(cap, mr, groups, args.reps_null, args.n)
        elif section == "grouped":
            grouped = run_grouped_calibration(cap, mr, groups, args.reps_null, args.n)
            results["calibration"]["5 captions per image, averaged per image"] = grouped
        elif section == "null_extra":  # more independent-row null splits (new seed), gates only
            rng = np.random.default_rng(11)
            rows = [
                one_check(*text_pair(cap, mr, groups, args.n, 0.0, rng), seed=10_000 + i)
                for i in tqdm(range(args.reps_null), desc="null extra: one caption per image")
            ]
            results["null_extra"] = {
                "reps": args.reps_null,
                "n_per_side": args.n,
                "false_alarm_rate": rates(rows),
                "mmd_p": [r["mmd_p"] for r in rows],
                "classifier_p": [r["classifier_p"] for r in rows],
            }
        elif section == "text":
            null = results["calibration"]["one caption per image"]["false_alarm_rate"]
            results["text_power"] = run_text_power(cap, mr, groups, args.reps_power, args.n, null)
        elif section == "image":
            results["image_power"] = run_image_power(load_images(), args.reps_power, args.n_image)
        elif section == "speed":
            results["speed"] = run_speed(cap)
        results.setdefault("runs", {})[section] = {
            "command": "python " + " ".join(sys.argv),
            "args": vars(args),
            "wall_s": time.perf_counter() - start,
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs (shared), no GPU",
        }
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    make_figures(results)
    print(f"wrote {out}")


def make_figures(results: dict) -> None:
    methods = ("mmd", "classifier", "overall (Bonferroni)", "evidently_classifier_bootstrap")
    figures = BENCH / "figures"
    if "text_power" in results:
        n = results["runs"]["text"]["args"]["n"]
        curves = {m: {float(f) * 100: r[m] for f, r in results["text_power"].items()} for m in methods}
        plot_detection_curves(
            curves,
            figures / "drift_power_text.png",
            xlabel="% MR movie-review sentences in current",
            title=f"Detection rate, Flickr8k captions -> SentEval MR (n = {n} per side)",
        )
    for kind, curve in results.get("image_power", {}).items():
        n = results["runs"]["image"]["args"]["n_image"]
        curves = {m: {float(lv): r[m] for lv, r in curve.items()} for m in methods}
        plot_detection_curves(
            curves,
            figures / f"drift_power_image_{kind}.png",
            xlabel=f"{kind} level (mmcl.data.drops.corrupt_image)",
            title=f"Detection rate, Flickr8k photos -> {kind} (n = {n} per side)",
        )
    if "calibration" in results:
        plot_null_pvalues(results["calibration"], figures / "drift_null_pvalues.png")


def plot_null_pvalues(calibration: dict, path: Path) -> None:
    """Sorted null p-values against uniform quantiles: on the diagonal = calibrated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(calibration), figsize=(5 * len(calibration), 4), squeeze=False)
    for ax, (variant, res) in zip(axes[0], calibration.items(), strict=True):
        for key in ("mmd_p", "classifier_p"):
            p = np.sort(res[key])
            ax.plot((np.arange(len(p)) + 1) / (len(p) + 1), p, ".", label=key.replace("_p", ""))
        ax.plot([0, 1], [0, 1], color="grey", linewidth=1)
        ax.set_title(f"null p-values: {variant} ({res['reps']} splits)", fontsize=9)
        ax.set_xlabel("uniform quantile")
        ax.set_ylabel("p-value")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
