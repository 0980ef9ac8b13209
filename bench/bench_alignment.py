"""Alignment drift bench (issue #17): power vs shuffled pairs beside the marginal tests; model change. CPU only.

    .venv/bin/python bench/bench_alignment.py                 # everything (~5-10 min on 2 cores, cached features)
    .venv/bin/python bench/bench_alignment.py --sections power --reps 10

Model (real, CLIP-style): the pretrained towers the demo uses, frozen — all-MiniLM-L6-v2 sentence embeddings
(384-d) of the 5000 Flickr8k-subset captions and ImageNet EfficientNet-Lite0 features (1280-d) of its 1000
photos (cached by mmcl.monitor.sources) — with linear projection heads to 256-d trained by the project's
CLIP objective (mmcl.objectives, learnable temperature) on the 753 Flickr8k `train` images (one random
caption of each image per epoch). Unlike configs/demo.yaml the text tower is not fine-tuned (so that
training a model takes seconds and 20+ models fit in the bench). Drops are drawn from the 247 images the
heads never saw (dev + test + none): per repetition a reference of 120 images and a drop of 120 other
images, five captions each (600 rows a side).

Shuffled pairs: a share q of the drop's caption rows get the caption of another row of the drop (a cyclic
shift among the chosen rows, so the multiset of captions and the set of images are exactly unchanged:
marginally, nothing moved). Alignment: mmcl.monitor.alignment (grouped by image). Marginal peers on the same
drops: mmcl.monitor.detector's MMD permutation test and Evidently classifier test on the champion's caption
embeddings grouped by image (the drift check's own input), each at alpha.
Writes bench/results/alignment_results.json and bench/figures/alignment_*.png.
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcl.data.flickr import load_flickr_triples  # noqa: E402
from mmcl.monitor.alignment import AlignmentSettings, PairedRows, alignment_drift  # noqa: E402
from mmcl.monitor.detector import DriftSettings, detect_drift  # noqa: E402
from mmcl.monitor.mmd import MmdSettings  # noqa: E402
from mmcl.monitor.model_change import compare_models  # noqa: E402
from mmcl.monitor.plots import plot_alignment, plot_detection_curves  # noqa: E402
from mmcl.monitor.sources import encode_images, encode_texts  # noqa: E402
from mmcl.objectives import build_objective  # noqa: E402

BENCH = Path(__file__).resolve().parent
ALPHA = 0.05
LEVELS = (0.0, 0.02, 0.05, 0.10, 0.25)
N_IMAGES = 120  # per side and repetition
SECTIONS = ("power", "null", "model_change", "promotions")


class Features:
    """Cached frozen-tower features of the Flickr8k subset, and which images the heads may train on."""

    def __init__(self) -> None:
        records = load_flickr_triples()
        self.image_ids = np.array([r.image_id for r in records])
        self.captions = [c for r in records for c in r.captions]
        self.caption_image = np.repeat(np.arange(len(records)), 5)  # image index of each caption row
        self.text = encode_texts(self.captions, name="flickr_all", show_progress=False)  # [5000, 384]
        self.image = encode_images([r.image_path for r in records], show_progress=False)  # [1000, 1280]
        split = np.array([r.split for r in records])
        self.train = np.flatnonzero(split == "train")  # 753 images
        self.held_out = np.flatnonzero(split != "train")  # 247 images


def train_heads(f: Features, *, seed: int, objective: str = "clip", shuffled_share: float = 0.0,
                epochs: int = 15, dim: int = 256) -> dict[str, np.ndarray]:
    """Linear heads on the frozen features; returns {"text": [5000, dim], "image": [1000, dim]} unit rows.

    shuffled_share > 0 trains on drifted data: that share of the training images get another image's captions.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    text_head = torch.nn.Linear(f.text.shape[1], dim)
    image_head = torch.nn.Linear(f.image.shape[1], dim)
    logit_scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    options = {"tilting": {"loss": "joint", "tilt": "neg_sq_l2"}}.get(objective, {})
    loss_fn = build_objective(objective, **options)
    params = [*text_head.parameters(), *image_head.parameters(), logit_scale]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    text_x, image_x = torch.from_numpy(f.text), torch.from_numpy(f.image)
    caption_of = f.train.copy()  # whose captions each training image gets
    wrong = rng.choice(len(f.train), size=round(shuffled_share * len(f.train)), replace=False)
    caption_of[wrong] = np.roll(f.train[wrong], 1)
    for _ in range(epochs):
        order = rng.permutation(len(f.train))
        for start in range(0, len(order), 128):
            idx = order[start:start + 128]
            cap_rows = caption_of[idx] * 5 + rng.integers(0, 5, len(idx))
            emb = {"text": torch.nn.functional.normalize(text_head(text_x[cap_rows]), dim=-1),
                   "image": torch.nn.functional.normalize(image_head(image_x[f.train[idx]]), dim=-1)}
            terms = loss_fn(emb, logit_scale=logit_scale.exp().clamp(max=100))
            loss = sum(v for k, v in terms.items() if k.endswith("_loss"))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return {"text": torch.nn.functional.normalize(text_head(text_x), dim=-1).numpy(),
                "image": torch.nn.functional.normalize(image_head(image_x), dim=-1).numpy()}


def held_out_r1(f: Features, emb: dict[str, np.ndarray]) -> float:
    """Text->image R@1 (%) over the 247 held-out images (a sanity figure for the model's strength)."""
    rows = np.flatnonzero(np.isin(f.caption_image, f.held_out))
    sim = emb["text"][rows] @ emb["image"][f.held_out].T  # [1235, 247]
    return float(100 * (f.held_out[sim.argmax(1)] == f.caption_image[rows]).mean())


def draw_drop(f: Features, rng: np.random.Generator, images: np.ndarray, share: float):
    """(caption rows [R], image index per row [R], shuffled row mask [R]) for a drop of `images`."""
    rows = (images[:, None] * 5 + np.arange(5)).ravel()  # the images' own captions
    image_of = np.repeat(images, 5)
    chosen = np.sort(rng.choice(len(rows), size=round(share * len(rows)), replace=False))
    captions = rows.copy()
    if len(chosen) > 1:
        captions[chosen] = rows[np.roll(chosen, 1)]  # every chosen row gets another chosen row's caption
    shuffled = f.caption_image[captions] != image_of  # a caption moved to a row of the same image is no harm
    return captions, image_of, shuffled


def paired(emb: dict[str, np.ndarray], f: Features, captions: np.ndarray, image_of: np.ndarray) -> PairedRows:
    return PairedRows(a=emb["text"][captions], b=emb["image"][image_of], groups=f.image_ids[image_of])


def marginal(emb_ref, emb_cur, f, ref, cur, settings: DriftSettings, methods=("mmd", "classifier")) -> dict:
    """The embedding drift test on the champion's caption embeddings, grouped by image."""
    (ref_caps, ref_img), (cur_caps, cur_img) = ref, cur
    return detect_drift(emb_ref["text"][ref_caps], emb_cur["text"][cur_caps], methods=methods,
                        settings=settings, reference_groups=f.image_ids[ref_img],
                        current_groups=f.image_ids[cur_img])


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def power(f: Features, champion, reps: int, classifier_reps: int, drift_settings: DriftSettings) -> dict:
    out: dict = {}
    for level in LEVELS:
        counts = {"alignment": 0, "mmd": 0, "classifier": 0}
        precisions, seconds = [], []
        for rep in range(reps):
            rng = np.random.default_rng(1000 * rep + int(level * 1000))
            images = rng.permutation(f.held_out)
            ref_img, cur_img = images[:N_IMAGES], images[N_IMAGES:2 * N_IMAGES]
            ref = draw_drop(f, rng, ref_img, 0.0)
            cur = draw_drop(f, rng, cur_img, level)
            start = time.perf_counter()
            res = alignment_drift({"text-image": paired(champion, f, *ref[:2])},
                                  {"text-image": paired(champion, f, *cur[:2])},
                                  settings=AlignmentSettings(alpha=ALPHA, top_k=50, seed=rep))
            seconds.append(time.perf_counter() - start)
            counts["alignment"] += res["drift_detected"]
            if rep == 0 and level == 0.10:  # what a person sees for a 10%-shuffled drop
                plot_alignment(res, BENCH / "figures" / "alignment_example_10pct.png")
            n_bad = int(cur[2].sum())
            if n_bad:  # precision of the top-n_bad suspects (n_bad = number of truly shuffled rows, <= 50)
                top = [s["row"] for s in res["pairs"]["text-image"]["suspects"][:min(n_bad, 50)]]
                precisions.append(float(cur[2][top].mean()))
            # the classifier test costs ~100x the others: it runs on the first `classifier_reps` drops only
            methods = ("mmd", "classifier") if rep < classifier_reps else ("mmd",)
            drift = marginal(champion, champion, f, ref[:2], cur[:2],
                             DriftSettings(**{**drift_settings.__dict__, "seed": rep}), methods)
            for m in methods:
                counts[m] += drift["methods"][m]["drift_detected"]
        n = {"alignment": reps, "mmd": reps, "classifier": min(reps, classifier_reps)}
        out[str(level)] = {
            "reps": n,
            "rates": {k: v / n[k] for k, v in counts.items()},
            "intervals": {k: wilson(v, n[k]) for k, v in counts.items()},
            "suspect_precision_mean": float(np.mean(precisions)) if precisions else None,
            "alignment_seconds_median": float(np.median(seconds)),
        }
        print(f"level {level:.2f}: {out[str(level)]['rates']} precision {out[str(level)]['suspect_precision_mean']}",
              flush=True)
    return out


def null_calibration(f: Features, champion, reps: int) -> dict:
    """False-alarm rate of the alignment test alone on `reps` more same-distribution splits (new seeds)."""
    alarms, p_values = 0, []
    for rep in range(reps):
        rng = np.random.default_rng(900_000 + rep)
        images = rng.permutation(f.held_out)
        ref, cur = draw_drop(f, rng, images[:N_IMAGES], 0.0), draw_drop(f, rng, images[N_IMAGES:2 * N_IMAGES], 0.0)
        res = alignment_drift({"text-image": paired(champion, f, *ref[:2])},
                              {"text-image": paired(champion, f, *cur[:2])},
                              settings=AlignmentSettings(alpha=ALPHA, seed=rep))
        alarms += res["drift_detected"]
        p_values.append(res["pairs"]["text-image"]["p_value"])
    p = np.array(p_values)
    return {"reps": reps, "false_alarm_rate": alarms / reps, "interval": wilson(alarms, reps),
            "p_below": {str(a): float((p < a).mean()) for a in (0.01, 0.05, 0.1, 0.5)}}


def probe_cka(f: Features, a: dict, b: dict) -> dict:
    """compare_models per modality on the held-out probe rows (their captions; their images)."""
    rows = np.flatnonzero(np.isin(f.caption_image, f.held_out))
    return {"text": compare_models(a["text"][rows], b["text"][rows]),
            "image": compare_models(a["image"][f.held_out], b["image"][f.held_out])}


def model_change(f: Features, champion) -> dict:
    def summary(c):
        return {m: {k: round(c[m][k], 4) for k in ("linear_cka", "cka_shuffled_baseline", "procrustes_similarity",
                                                   "raw_cosine_mean")} for m in c}

    seeds = [train_heads(f, seed=s) for s in (1, 2, 3)]
    tilting = train_heads(f, seed=0, objective="tilting")
    drifted = train_heads(f, seed=0, shuffled_share=0.25)
    pairs = {
        "clip seed 0 vs clip seed 1": probe_cka(f, champion, seeds[0]),
        "clip seed 0 vs clip seed 2": probe_cka(f, champion, seeds[1]),
        "clip seed 0 vs clip seed 3": probe_cka(f, champion, seeds[2]),
        "clip seed 0 vs tilting (joint, -L2 tilt) seed 0": probe_cka(f, champion, tilting),
        "clip seed 0 vs clip seed 0 retrained on 25%-shuffled pairs": probe_cka(f, champion, drifted),
    }
    r1 = {"clip seed 0": held_out_r1(f, champion), "clip seed 1": held_out_r1(f, seeds[0]),
          "tilting seed 0": held_out_r1(f, tilting), "clip on 25%-shuffled": held_out_r1(f, drifted)}
    return {"pairs": {k: summary(v) for k, v in pairs.items()}, "held_out_text_to_image_r1": r1}


def promotions(f: Features, n: int, drops_per: int, drift_settings: DriftSettings) -> dict:
    """n promotions champion(seed i-1) -> champion(seed i); per promotion `drops_per` clean drops checked
    against (a) the stale reference (old model's embeddings) and (b) the re-based one (new model's), by the
    alignment test and the marginal MMD test (the classifier is left out here for time)."""
    models = [train_heads(f, seed=100 + i) for i in range(n + 1)]
    counts = {f"{side}_{test}": 0 for side in ("stale", "rebased") for test in ("embedding", "alignment")}
    cka = []
    checks = 0
    for i in range(1, n + 1):
        old, new = models[i - 1], models[i]
        cka.append(probe_cka(f, old, new)["text"]["linear_cka"])
        for d in range(drops_per):
            rng = np.random.default_rng(50_000 + 100 * i + d)
            images = rng.permutation(f.held_out)
            ref, cur = draw_drop(f, rng, images[:N_IMAGES], 0.0), draw_drop(f, rng, images[N_IMAGES:2 * N_IMAGES], 0.0)
            settings = DriftSettings(**{**drift_settings.__dict__, "seed": checks})
            for side, ref_model in (("stale", old), ("rebased", new)):
                counts[f"{side}_embedding"] += marginal(ref_model, new, f, ref[:2], cur[:2], settings, ("mmd",))["drift_detected"]
                counts[f"{side}_alignment"] += alignment_drift(
                    {"text-image": paired(ref_model, f, *ref[:2])}, {"text-image": paired(new, f, *cur[:2])},
                    settings=AlignmentSettings(alpha=ALPHA, seed=checks))["drift_detected"]
            checks += 1
    return {"promotions": n, "checks": checks, "alarms": counts,
            "intervals": {k: wilson(v, checks) for k, v in counts.items()},
            "cka_old_new_text": {"min": float(np.min(cka)), "max": float(np.max(cka))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--null-reps", type=int, default=400, help="extra same-distribution splits (alignment only)")
    parser.add_argument("--promotions", type=int, default=10)
    parser.add_argument("--drops-per-promotion", type=int, default=4)
    parser.add_argument("--classifier-reps", type=int, default=10, help="drops per level also given the classifier")
    parser.add_argument("--permutations", type=int, default=300, help="MMD permutations of the marginal peer")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny matmuls: one thread is faster than two fighting a shared machine
    start = time.time()
    f = Features()
    champion = train_heads(f, seed=0)
    drift_settings = DriftSettings(alpha=ALPHA, mmd=MmdSettings(n_permutations=args.permutations))
    out_path = BENCH / "results" / "alignment_results.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_start": os.getloadavg()}
    results["champion_held_out_text_to_image_r1"] = held_out_r1(f, champion)
    if "power" in args.sections:
        results["power"] = power(f, champion, args.reps, args.classifier_reps, drift_settings)
        curves = {"alignment (paired, grouped)": {}, "marginal MMD (captions)": {}, "marginal classifier (captions)": {}}
        for level, r in results["power"].items():
            curves["alignment (paired, grouped)"][100 * float(level)] = r["rates"]["alignment"]
            curves["marginal MMD (captions)"][100 * float(level)] = r["rates"]["mmd"]
            curves["marginal classifier (captions)"][100 * float(level)] = r["rates"]["classifier"]
        plot_detection_curves(curves, BENCH / "figures" / "alignment_power.png", xlabel="% of drop's caption rows shuffled",
                              title=f"Detection rate, {args.reps} drops per level, {N_IMAGES} images x 5 captions a side")
    if "null" in args.sections:
        results["null"] = null_calibration(f, champion, args.null_reps)
    if "model_change" in args.sections:
        results["model_change"] = model_change(f, champion)
    if "promotions" in args.sections:
        results["promotions"] = promotions(f, args.promotions, args.drops_per_promotion, drift_settings)
    results["machine"]["load_average_end"] = os.getloadavg()
    results["seconds"] = time.time() - start
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "power"}, indent=2))


if __name__ == "__main__":
    main()
