"""Export a trained mmcl model to the ecosystem's formats.

    python -m mmcl export --checkpoint runs/demo-1a2b3c --format sentence-transformers --output exported/demo
    python -c "from sentence_transformers import SentenceTransformer as S; print(S('exported/demo').encode(['hi']))"

sentence-transformers: the text tower becomes Transformer (the HF backbone + tokenizer, save_pretrained)
-> [WeightedLayerPooling for first_last_avg] -> Pooling (cls or mean, as the encoder pooled) -> Dense
per linear layer of the projection head (identity activation; GELU between the two layers of an "mlp"
head) -> Normalize, so `SentenceTransformer(dir).encode` equals `model.encode("text", ...)`. The export
is checked on probe sentences before it is reported done. max_seq_length defaults to the evaluation
length of mmcl.eval.embedders (the backbone limit, 512 for BERT/MiniLM), so `mmcl eval sts` on the
checkpoint and on the exported folder see the same tokens.

open_clip: when both image and text towers are open_clip's (same architecture), a state dict that
`open_clip.create_model(arch, pretrained=<file>)` loads, with mmcl's linear heads folded into the
towers' projections and mmcl's temperature as logit_scale.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mmcl.errors import UserError

FORMATS = ("sentence-transformers", "open_clip")
PROBE_SENTENCES = ["A man is playing a guitar.", "Two dogs run across a snowy field .", "a", "Hello world!"]


def _prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise UserError(f"output folder {output} is not empty (pass --overwrite to replace its files)")
    output.mkdir(parents=True, exist_ok=True)


def _head_modules(head: Any) -> list[Any]:
    """Dense modules reproducing an mmcl projection head (Linear, Sequential(Linear, GELU, Linear), Identity)."""
    from sentence_transformers.sentence_transformer.modules import Dense
    from torch import nn

    def dense(linear: nn.Linear, activation: nn.Module) -> Dense:
        bias = linear.bias is not None
        return Dense(
            linear.in_features,
            linear.out_features,
            bias=bias,
            activation_function=activation,
            init_weight=linear.weight.detach().clone(),
            init_bias=linear.bias.detach().clone() if bias else None,
        )

    if isinstance(head, nn.Identity):
        return []
    if isinstance(head, nn.Linear):
        return [dense(head, nn.Identity())]
    if isinstance(head, nn.Sequential) and [type(m) for m in head] == [nn.Linear, nn.GELU, nn.Linear]:
        return [dense(head[0], nn.GELU()), dense(head[2], nn.Identity())]
    raise UserError(
        f"cannot express the projection head {type(head).__name__} as sentence-transformers Dense layers"
    )


def _text_modules(text: Any, hf_dir: Path, max_seq_length: int) -> list[Any]:
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer, WeightedLayerPooling

    first_last = text.pooling == "first_last_avg"
    text.backbone.config.output_hidden_states = first_last  # ST hands hidden states to WeightedLayerPooling
    text.backbone.save_pretrained(hf_dir)
    text.tokenizer.save_pretrained(hf_dir)
    modules: list[Any] = [Transformer(str(hf_dir), max_seq_length=max_seq_length)]
    dim = text.output_dim
    if first_last:  # mean over tokens of (hidden_states[1] + hidden_states[-1]) / 2, as TextEncoder does
        layers = text.backbone.config.num_hidden_layers
        weights = torch.zeros(layers, dtype=torch.float)
        weights[0] = weights[-1] = 1.0
        modules.append(
            WeightedLayerPooling(
                dim, num_hidden_layers=layers, layer_start=1, layer_weights=torch.nn.Parameter(weights)
            )
        )
    modules.append(
        Pooling(dim, pooling_mode="cls" if text.pooling in ("cls", "cls_before_pooler") else "mean")
    )
    return modules


def export_sentence_transformers(
    checkpoint: str | Path,
    output: str | Path,
    *,
    use_head: bool = True,
    max_seq_length: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the text tower of `checkpoint` as a sentence-transformers folder; returns a summary dict."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize

    from mmcl.eval.embedders import CheckpointEmbedder, _eval_max_length
    from mmcl.train.checkpoint import load_model

    model, config = load_model(checkpoint)
    text = model.encoders["text"] if "text" in model.encoders else None
    if text is None or not hasattr(text, "backbone"):
        kind = type(text).__name__ if text is not None else "none"
        raise UserError(
            f"--format sentence-transformers needs a Hugging Face text tower (hf_text); this model has {kind}"
        )
    output = Path(output)
    _prepare_output(output, overwrite)
    length = max_seq_length or _eval_max_length(text.backbone, text.tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        modules = _text_modules(text, Path(tmp), length)
        if use_head:
            modules += _head_modules(model.heads["text"])
        modules.append(Normalize())
        SentenceTransformer(modules=modules, device="cpu").save(str(output))
    exported = SentenceTransformer(str(output), device="cpu")
    reference = CheckpointEmbedder(
        checkpoint, use_head=use_head, max_length=length, model=model, show_progress=False
    )
    expected = reference.encode(PROBE_SENTENCES)
    got = exported.encode(PROBE_SENTENCES, normalize_embeddings=not use_head)
    if not use_head:
        expected = expected / ((expected**2).sum(1, keepdims=True) ** 0.5)
    max_diff = float(abs(got - expected).max())
    if max_diff > 1e-4:
        raise RuntimeError(f"exported model differs from the checkpoint by {max_diff:.2e} on probe sentences")
    summary = {
        "format": "sentence-transformers",
        "checkpoint": str(Path(checkpoint).resolve()),
        "output": str(output),
        "pooling": text.pooling,
        "use_head": use_head,
        "max_seq_length": length,
        "dimension": int(got.shape[1]),
        "probe_max_abs_diff": max_diff,
        "run_name": config.get("name"),
    }
    (output / "mmcl_export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _fold(projection: Any, head: Any) -> Any:
    """x @ P then head W (y = x P W^T) is x @ (P W^T): [width, D_tower] @ [D_tower, D] -> [width, D]."""
    from torch import nn

    if isinstance(head, nn.Identity):
        return projection.detach().clone()
    if isinstance(head, nn.Linear) and head.bias is None:
        return projection.detach() @ head.weight.detach().T
    raise UserError(
        f"--format open_clip folds only identity or bias-free linear heads, not {type(head).__name__}"
    )


def export_open_clip(
    checkpoint: str | Path, output: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Write `open_clip_pytorch_model.bin` (+ `open_clip_config.json`) for open_clip.create_model."""
    import math

    import open_clip
    import torch
    from torch import nn

    from mmcl.train.checkpoint import load_model

    model, config = load_model(checkpoint)
    image, text = (
        model.encoders["image"] if "image" in model.encoders else None,
        model.encoders["text"] if "text" in model.encoders else None,
    )
    if not (hasattr(image, "visual") and hasattr(text, "text_projection")) or image.arch != text.arch:
        raise UserError(
            "--format open_clip needs open_clip image and text towers of the same architecture "
            "(encoders open_clip_image + open_clip_text); use --format sentence-transformers for text models"
        )
    if not isinstance(text.text_projection, nn.Parameter):
        raise UserError(
            f"cannot fold the text head into {text.arch}'s text tower (text_projection is not a matrix)"
        )
    visual_proj = getattr(image.visual, "proj", None)
    if not isinstance(visual_proj, nn.Parameter) and not isinstance(model.heads["image"], nn.Identity):
        raise UserError(f"cannot fold the image head into {image.arch}'s visual tower (no `proj` matrix)")
    clip = open_clip.create_model(image.arch, pretrained=None, device="cpu")
    clip.visual.load_state_dict(image.visual.state_dict())
    for name in ("token_embedding", "transformer", "ln_final"):
        getattr(clip, name).load_state_dict(getattr(text, name).state_dict())
    with torch.no_grad():
        clip.positional_embedding.copy_(text.positional_embedding)
        clip.text_projection = nn.Parameter(_fold(text.text_projection, model.heads["text"]))
        if isinstance(visual_proj, nn.Parameter):
            clip.visual.proj = nn.Parameter(_fold(visual_proj, model.heads["image"]))
        clip.logit_scale.fill_(float(model.logit_scale.clamp(max=math.log(100.0))))
    output = Path(output)
    _prepare_output(output, overwrite)
    torch.save(clip.state_dict(), output / "open_clip_pytorch_model.bin")
    cfg = dict(open_clip.get_model_config(image.arch) or {})
    cfg["embed_dim"] = int(clip.text_projection.shape[1])
    preprocess = {"size": image.image_size, "mean": list(image.mean), "std": list(image.std)}
    (output / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}, indent=2) + "\n"
    )
    max_diff = _check_open_clip(output, model, text)
    summary = {
        "format": "open_clip",
        "arch": image.arch,
        "checkpoint": str(Path(checkpoint).resolve()),
        "output": str(output),
        "embed_dim": cfg["embed_dim"],
        "probe_max_abs_diff": max_diff,
        "load_with": f"open_clip.create_model('local-dir:{output.resolve()}')",
        "run_name": config.get("name"),
    }
    (output / "mmcl_export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _check_open_clip(output: Path, model: Any, text: Any) -> float:
    """Reload through open_clip's own loader; text and image embeddings must match mmcl's."""
    import open_clip
    import torch
    import torch.nn.functional as F

    clip = open_clip.create_model(f"local-dir:{output.resolve()}", device="cpu").eval()
    tokens = text.tokenize(PROBE_SENTENCES)
    images = torch.randn(
        2, 3, model.encoders["image"].image_size, model.encoders["image"].image_size
    )  # [2, 3, H, W]
    with torch.inference_mode():
        diffs = [
            (F.normalize(clip.encode_text(tokens["input_ids"]), dim=-1) - model.encode("text", tokens))
            .abs()
            .max(),
            (F.normalize(clip.encode_image(images), dim=-1) - model.encode("image", images)).abs().max(),
        ]
    max_diff = float(max(diffs))
    if max_diff > 1e-4:
        raise RuntimeError(f"open_clip export differs from the checkpoint by {max_diff:.2e}")
    return max_diff
