"""Retrieval under corrupted queries and missing modalities: R@5 against corruption level, with chance and
bootstrap intervals.

    python -m mmcl eval robustness --model runs/demo-1a2b3c --output reports/robust.json    # + .md, .png

Each curve corrupts the QUERIES of one direction and keeps the gallery clean (Flickr8k test split, positives
share the image id, ties pessimistic as in mmcl.eval.retrieval):

    image_blur, image_noise, image_jpeg   image -> text     (mmcl.data.drops.corrupt_image; JPEG re-encoding)
    caption_word_drop, caption_typos      text  -> image    (each word dropped / given one random edit, prob. p)
    speech_noise, speech_speed            audio -> image    (white noise at an SNR; resampled faster, pitch too)
    missing_text, missing_audio           text+audio -> image: the query is the mean of the caption's and the
                                          clip's embeddings; a fraction p of the queries lose one of the two

The first level of every curve is the clean query. Intervals: percentile bootstrap over queries (95 %).
Chance: the expected R@5 of a random ranking, 1 - C(N-P, 5)/C(N, 5) averaged over queries.
Corruptions are seeded (`seed`), so two models see the same corrupted queries.
"""

from __future__ import annotations

import io
import string
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

from mmcl.errors import UserError
from mmcl.eval.retrieval import _first_positive_and_ap

K = 5


@dataclass(frozen=True)
class Corruption:
    query: str  # query modality (missing_*: the fused text+audio query)
    gallery: str
    levels: tuple[float, ...]  # first = clean
    unit: str  # axis label


CORRUPTIONS: dict[str, Corruption] = {
    "image_blur": Corruption("image", "text", (0.0, 0.125, 0.25, 0.5, 1.0), "Gaussian blur radius / 8 px"),
    "image_noise": Corruption("image", "text", (0.0, 0.1, 0.2, 0.4, 0.8), "noise sigma / 100 (0-255 pixels)"),
    "image_jpeg": Corruption("image", "text", (100, 30, 15, 8, 4, 2), "JPEG quality (100: original file)"),
    "caption_word_drop": Corruption("text", "image", (0.0, 0.1, 0.2, 0.4, 0.6, 0.8), "P(word dropped)"),
    "caption_typos": Corruption("text", "image", (0.0, 0.1, 0.2, 0.4, 0.6, 0.8), "P(word has a typo)"),
    "speech_noise": Corruption("audio", "image", (np.inf, 20.0, 10.0, 5.0, 0.0, -5.0), "SNR dB (inf: clean)"),
    "speech_speed": Corruption("audio", "image", (1.0, 1.2, 1.4, 1.7, 2.0), "speed factor"),
    "missing_text": Corruption("text+audio", "image", (0.0, 0.25, 0.5, 0.75, 1.0), "P(caption missing)"),
    "missing_audio": Corruption("text+audio", "image", (0.0, 0.25, 0.5, 0.75, 1.0), "P(speech missing)"),
}


def _rng(seed: int, name: str, level_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, sum(map(ord, name)), level_index])


def drop_words(text: str, p: float, rng: np.random.Generator) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept or [words[int(rng.integers(len(words)))]]) if words else text  # one word stays


def add_typos(text: str, p: float, rng: np.random.Generator) -> str:
    """Each word of 2+ letters gets, with probability p, one edit: swap, delete, replace or insert a letter."""
    out = []
    for word in text.split():
        if len(word) >= 2 and rng.random() < p:
            i = int(rng.integers(len(word) - 1))
            letter = string.ascii_lowercase[int(rng.integers(26))]
            edit = int(rng.integers(4))
            word = (word[:i] + word[i + 1] + word[i] + word[i + 2:] if edit == 0 else
                    word[:i] + word[i + 1:] if edit == 1 else
                    word[:i] + letter + word[i + 1:] if edit == 2 else word[:i] + letter + word[i:])
        out.append(word)
    return " ".join(out)


def jpeg(image: Any, quality: int) -> Any:
    from PIL import Image

    if quality >= 100:
        return image
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def add_noise_snr(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    if not np.isfinite(snr_db):
        return wave
    power = float(np.mean(wave**2)) or 1e-12
    return (wave + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), wave.shape)).astype(np.float32)


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Played `factor` times faster at the same sample rate (resampled: shorter, higher pitched)."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    if factor == 1.0:
        return wave
    ratio = Fraction(factor).limit_denominator(20)
    return resample_poly(wave, ratio.denominator, ratio.numerator).astype(np.float32)


def _weights_digest(module: Any) -> str:
    """A cheap fingerprint of a tower's weights (sums per tensor): equal towers of two models share features."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode() + float(tensor.detach().double().sum()).hex().encode())
    return h.hexdigest()


def chance_at_k(query_ids: np.ndarray, gallery_ids: np.ndarray, k: int = K) -> float:
    n = len(gallery_ids)
    counts = {g: int(c) for g, c in zip(*np.unique(gallery_ids, return_counts=True), strict=True)}
    vals = [1 - comb(n - counts.get(q, 0), k) / comb(n, k) if n >= k else 1.0 for q in query_ids]
    return 100.0 * float(np.mean(vals))


def recall_with_interval(query: np.ndarray, gallery: np.ndarray, query_ids: np.ndarray, gallery_ids: np.ndarray,
                         n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """R@5 (%) of unit-norm query [Q, D] against gallery [G, D], and its 95 % percentile-bootstrap interval."""
    sim = query.astype(np.float64) @ gallery.astype(np.float64).T  # [Q, G]
    first, _ = _first_positive_and_ap(sim, query_ids[:, None] == gallery_ids[None, :], "pessimistic")
    hits = (first <= K).astype(np.float64)  # [Q]
    boot = hits[rng.integers(0, len(hits), size=(n_boot, len(hits)))].mean(axis=1) if n_boot else hits[:1]
    return 100.0 * hits.mean(), 100.0 * float(np.percentile(boot, 2.5)), 100.0 * float(np.percentile(boot, 97.5))


class RobustnessEvaluator:
    """All (or the named) corruption curves of one mmcl model on a Flickr8k split."""

    def __init__(self, split: str = "test", data_dir: str | Path | None = None, max_images: int | None = None,
                 corruptions: list[str] | None = None, n_boot: int = 1000, seed: int = 0,
                 batch_size: int = 64) -> None:
        from mmcl.data.flickr import load_flickr_triples

        unknown = [c for c in corruptions or [] if c not in CORRUPTIONS]
        if unknown:
            raise UserError(f"unknown corruption(s) {unknown}; known: {', '.join(CORRUPTIONS)}")
        self.names = list(corruptions or CORRUPTIONS)
        records = [r for r in load_flickr_triples(data_dir) if r.split == split and r.audio_path is not None]
        if not records:
            raise UserError(f"no Flickr8k images with speech in split {split!r}")
        self.records = records[:max_images] if max_images else records
        self.split, self.n_boot, self.seed, self.batch_size = split, n_boot, seed, batch_size
        self._features: dict[tuple, Any] = {}  # frozen towers' features of (corrupted) queries, see _encode

    # ---- encoding (the model's own towers; inputs as in training)
    def _inputs(self, model, modality: str, batch: list[Any]):
        import torch

        if modality == "text":
            return model.encoders["text"].tokenize(batch)
        if modality == "image":
            return torch.stack([self._transform(im) for im in batch])  # [b, 3, H, W]
        inputs = torch.zeros(len(batch), self._samples)  # [b, S] zero-padded, as in training
        for row, wave in enumerate(batch):
            clip = torch.from_numpy(np.ascontiguousarray(wave[: self._samples]))
            inputs[row, : clip.shape[0]] = clip
        return inputs

    def _encode(self, model, modality: str, items: list[Any], key: tuple = ()) -> np.ndarray:
        """Unit-norm embeddings [N, D]. A frozen tower's features are kept per (tower weights, `key`): models
        that share it (the heads-only runs of a benchmark) then only pay for their heads."""
        import torch

        frozen = modality in model.frozen
        cache_key = (modality, _weights_digest(model.encoders[modality]), key) if frozen and key else None
        chunks = []
        with torch.inference_mode():
            if cache_key is not None and cache_key not in self._features:
                self._features[cache_key] = torch.cat([
                    model.features(modality, self._inputs(model, modality, items[s:s + self.batch_size]))
                    for s in range(0, len(items), self.batch_size)])
            for start in range(0, len(items), self.batch_size):
                if cache_key is not None:
                    inputs = {"features": self._features[cache_key][start:start + self.batch_size]}
                else:
                    inputs = self._inputs(model, modality, items[start:start + self.batch_size])
                chunks.append(model.encode(modality, inputs).float().cpu().numpy())
        return np.concatenate(chunks)

    def __call__(self, model: Any, config: dict[str, Any] | None = None) -> dict[str, Any]:
        from mmcl.data.audio import load_audio
        from mmcl.data.drops import corrupt_image
        from mmcl.data.flickr import load_image

        model.eval()
        data = (config or {}).get("data", {})
        sample_rate, seconds = int(data.get("audio_sample_rate", 16000)), float(data.get("audio_seconds", 6.0))
        self._samples = int(sample_rate * seconds)
        names = [n for n in self.names if all(m in model.encoders for m in
                                               (*CORRUPTIONS[n].query.split("+"), CORRUPTIONS[n].gallery))]
        if not names:
            raise UserError(f"the model's towers ({', '.join(model.encoders)}) cover none of {self.names}")
        needs = {m for n in names for m in (*CORRUPTIONS[n].query.split("+"), CORRUPTIONS[n].gallery)}
        recs = self.records
        image_ids = np.array([r.image_id for r in recs])
        captions = [c for r in recs for c in r.captions]
        caption_ids = np.array([r.image_id for r in recs for _ in r.captions])
        images = [load_image(r.image_path) for r in recs] if "image" in needs else []
        # speech is loaded twice as long as the model hears it: sped-up clips then still fill the window
        waves = [load_audio(r.audio_path, sample_rate, max_seconds=2 * seconds) for r in recs] if "audio" in needs else []
        self._transform = model.encoders["image"].transform(train=False) if "image" in needs else None
        clean = {}
        if "image" in needs:
            clean["image"] = self._encode(model, "image", images, ("clean",))
        if "text" in needs:
            clean["text"] = self._encode(model, "text", captions, ("clean",))
            first_rows = np.cumsum([0] + [len(r.captions) for r in recs[:-1]])
            clean["text_first"] = clean["text"][first_rows]  # the first caption of each image: the spoken one
        if "audio" in needs:
            clean["audio"] = self._encode(model, "audio", waves, ("clean",))
        curves = {}
        for name in names:
            spec = CORRUPTIONS[name]
            gallery, gallery_ids = (clean["text"], caption_ids) if spec.gallery == "text" else (clean["image"], image_ids)
            query_ids = caption_ids if spec.query == "text" else image_ids
            points = []
            for li, level in enumerate(spec.levels):
                rng = _rng(self.seed, name, li)
                if li == 0 and spec.query != "text+audio":
                    query = clean[spec.query]
                elif name == "image_blur" or name == "image_noise":
                    kind = name.split("_")[1]
                    query = self._encode(model, "image", [corrupt_image(im, kind, level, seed=self.seed + i)
                                                          for i, im in enumerate(images)], (name, li))
                elif name == "image_jpeg":
                    query = self._encode(model, "image", [jpeg(im, level) for im in images], (name, li))
                elif name == "caption_word_drop":
                    query = self._encode(model, "text", [drop_words(c, level, rng) for c in captions], (name, li))
                elif name == "caption_typos":
                    query = self._encode(model, "text", [add_typos(c, level, rng) for c in captions], (name, li))
                elif name == "speech_noise":
                    query = self._encode(model, "audio", [add_noise_snr(w, level, rng) for w in waves], (name, li))
                elif name == "speech_speed":
                    query = self._encode(model, "audio", [change_speed(w, level) for w in waves], (name, li))
                else:  # missing_text / missing_audio: the fused query loses one view for a fraction of rows
                    lost = rng.random(len(recs)) < level
                    text, audio = clean["text_first"].copy(), clean["audio"].copy()
                    if name == "missing_text":
                        text[lost] = 0.0
                    else:
                        audio[lost] = 0.0
                    fused = text + audio
                    query = fused / np.linalg.norm(fused, axis=1, keepdims=True)
                r5, low, high = recall_with_interval(query, gallery, query_ids, gallery_ids, self.n_boot, rng)
                points.append({"level": float(level) if np.isfinite(level) else None, "label": f"{level:g}",
                               "R@5": r5, "ci_low": low, "ci_high": high})
            curves[name] = {"query": spec.query, "gallery": spec.gallery, "unit": spec.unit, "points": points,
                            "chance_R@5": chance_at_k(query_ids, gallery_ids), "n_queries": int(len(query_ids)),
                            "n_gallery": int(len(gallery_ids))}
        return {"curves": curves, "details": {"split": self.split, "n_images": len(recs), "seed": self.seed,
                                              "bootstrap": self.n_boot, "k": K, "ties": "pessimistic",
                                              "interval": "95% percentile bootstrap over queries"}}


def plot_curves(results: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One panel per corruption; one line per label in `results` ({label: evaluator output}), CI bands, chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for r in results.values() for n in r["curves"]))
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for label, result in results.items():
            curve = result["curves"].get(name)
            if curve is None:
                continue
            pts = curve["points"]
            x = np.arange(len(pts))
            line, = ax.plot(x, [p["R@5"] for p in pts], marker="o", label=label)
            ax.fill_between(x, [p["ci_low"] for p in pts], [p["ci_high"] for p in pts], alpha=0.2,
                            color=line.get_color())
            ax.set_xticks(x, [p["label"] for p in pts])
        ax.axhline(curve["chance_R@5"], color="grey", linestyle="--", label="chance")
        ax.set_title(f"{name}: {curve['query']} -> {curve['gallery']}", fontsize=9)
        ax.set_xlabel(curve["unit"], fontsize=8)
        ax.set_ylabel("R@5 (%)", fontsize=8)
        ax.set_ylim(bottom=0)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def markdown_table(result: dict[str, Any]) -> str:
    lines = ["| corruption | direction | " + " | ".join(["level: R@5 [95% CI]"]) + " | chance |", "|---|---|---|---|"]
    for name, c in result["curves"].items():
        cells = "; ".join(f"{p['label']}: {p['R@5']:.1f} [{p['ci_low']:.1f}, {p['ci_high']:.1f}]" for p in c["points"])
        lines.append(f"| {name} | {c['query']}->{c['gallery']} | {cells} | {c['chance_R@5']:.1f} |")
    return "\n".join(lines)
