"""Frozen text embedders behind one protocol, and the `--model` resolution of `mmcl eval`.

    embedder = load_text_embedder("all-minilm-l6-v2")          # packaged sentence-transformers model
    embedder = load_text_embedder("runs/demo-1a2b3c")           # mmcl run dir / model.pt / .ckpt
    embedder = load_text_embedder("/models/bert", pooling="first_last_avg")   # plain HF folder
    emb = embedder.encode(sentences)                            # np.float32 [N, D]

Speed: `encode` embeds each distinct sentence once, in length-sorted batches (longest first, so padding
is small and an out-of-memory shows at once) under torch.inference_mode(); evaluators pass every
sentence of every set in one call so duplicates across sets are shared too.

Maximum length: training truncates at the text encoder's `max_length` (32 tokens, SimCSE); evaluation
does not (SimCSE's SentEval batcher pads without truncating), so checkpoints and plain HF folders are
evaluated up to the backbone's position limit (512 for BERT/MiniLM) unless `max_length` is given.
A sentence-transformers folder keeps its own `max_seq_length`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmcl.errors import UserError

HF_POOLINGS = ("cls", "cls_before_pooler", "mean", "first_last_avg")
DEFAULT_BATCH_SIZE = 64


@runtime_checkable
class TextEmbedder(Protocol):
    """Anything with `encode(sentences) -> float32 [N, D]` and a `describe()` dict for reports."""

    def encode(self, sentences: list[str]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


def auto_threads() -> int:
    """Cores this process may use, minus those other processes keep busy (1-minute load average).

    Why: oversubscribed OpenMP threads spin-wait; on the 2-core CI machine under a load of 8, encoding
    with 2 threads took 4.7x the wall time of 1 thread. On an idle machine this is every core.
    """
    cores = len(os.sched_getaffinity(0))
    free = cores - os.getloadavg()[0]
    return max(1, min(cores, int(free + 0.5)))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (`threads` or auto_threads()); returns the number in use."""
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from the Rust tokenizer
    torch.set_num_threads(max(1, threads or auto_threads()))
    return torch.get_num_threads()


class BatchedTextEmbedder:
    """Shared fast path: unique sentences, length-sorted batches, inference mode, progress bar."""

    kind = "abstract"

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE, show_progress: bool = True) -> None:
        self.batch_size, self.show_progress = batch_size, show_progress
        self.source = ""
        self.name: str | None = None  # what the user called it (e.g. the packaged short name)

    def embed_batch(self, batch: list[str]):  # -> Tensor [B, D]
        raise NotImplementedError

    def lengths(self, sentences: list[str]) -> list[int]:
        """Sort keys for batching; subclasses with a tokenizer count tokens (less padding than chars)."""
        return [len(s) for s in sentences]

    def encode(self, sentences: list[str]) -> np.ndarray:
        """Embeddings in input order: np.float32 [N, D]."""
        import torch
        from tqdm.auto import tqdm

        unique = list(dict.fromkeys(sentences))
        if not unique:
            raise ValueError("encode() needs at least one sentence")
        lengths = self.lengths(unique)
        order = sorted(range(len(unique)), key=lambda i: -lengths[i])
        out: np.ndarray | None = None
        batches = range(0, len(order), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(
                batches, desc="encode", unit="batch", disable=not self.show_progress, leave=False
            ):
                idx = order[start : start + self.batch_size]
                emb = self.embed_batch([unique[i] for i in idx]).float().cpu().numpy()  # [B, D]
                if out is None:
                    out = np.empty((len(unique), emb.shape[1]), dtype=np.float32)
                out[idx] = emb
        row = {s: i for i, s in enumerate(unique)}
        return out[[row[s] for s in sentences]]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "source": self.source, "batch_size": self.batch_size}


def _token_lengths(tokenizer: Any, sentences: list[str]) -> list[int]:
    """Token counts (fast tokenizers do ~100k short sentences/s, a small cost against the forward)."""
    try:
        ids = tokenizer(sentences, add_special_tokens=True, truncation=False)["input_ids"]
    except Exception:  # a tokenizer that is not a HF one: character length is a fine proxy
        return [len(s) for s in sentences]
    return [len(x) for x in ids]


class SentenceTransformerEmbedder(BatchedTextEmbedder):
    """A sentence-transformers folder, run through its own modules (Transformer, Pooling, Dense, ...)."""

    kind = "sentence-transformers"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from sentence_transformers import SentenceTransformer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.source = str(path)
        self.model = SentenceTransformer(str(path), device="cpu").eval()

    def lengths(self, sentences: list[str]) -> list[int]:
        return _token_lengths(self.model.tokenizer, sentences)

    def embed_batch(self, batch: list[str]):
        features = self.model.preprocess(batch)
        return self.model(features)["sentence_embedding"]  # [B, D]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_seq_length": self.model.max_seq_length}


def _eval_max_length(backbone, tokenizer) -> int:
    limit = int(getattr(backbone.config, "max_position_embeddings", 512) or 512)
    model_max = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, model_max, 512))


class HuggingFaceEmbedder(BatchedTextEmbedder):
    """A plain transformers folder with a pooling rule (mmcl.encoders.text.TextEncoder, no head)."""

    kind = "huggingface"

    def __init__(self, path: str | Path, pooling: str = "mean", max_length: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        from mmcl.encoders.text import TextEncoder

        if pooling not in HF_POOLINGS:
            raise UserError(f"--pooling {pooling!r} is not one of {', '.join(HF_POOLINGS)}")
        self.source, self.pooling = str(path), pooling
        self.encoder = TextEncoder(model=str(path), pooling=pooling).eval()
        self.encoder.max_length = max_length or _eval_max_length(
            self.encoder.backbone, self.encoder.tokenizer
        )

    def lengths(self, sentences: list[str]) -> list[int]:
        return _token_lengths(self.encoder.tokenizer, sentences)

    def embed_batch(self, batch: list[str]):
        return self.encoder(self.encoder.tokenize(batch))  # [B, H]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pooling": self.pooling, "max_length": self.encoder.max_length}


class CheckpointEmbedder(BatchedTextEmbedder):
    """The text tower of an mmcl run: encoders["text"] then heads["text"] (unit norm), or the encoder
    output alone with `use_head=False` (SimCSE/KDMCSE evaluate the raw [CLS] without the MLP)."""

    kind = "mmcl-checkpoint"

    def __init__(
        self,
        path: str | Path,
        pooling: str | None = None,
        use_head: bool = True,
        max_length: int | None = None,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if model is None:
            from mmcl.train.checkpoint import load_model

            model, _ = load_model(path)
        if "text" not in model.encoders:
            raise UserError(f"{path}: this model has no text tower (modalities: {', '.join(model.encoders)})")
        self.source, self.model, self.use_head = str(path), model.eval(), use_head
        self.text = model.encoders["text"]
        if pooling is not None:
            if not hasattr(self.text, "pooling"):
                raise UserError(f"--pooling does not apply to the {type(self.text).__name__} text tower")
            self.text.pooling = pooling
        if hasattr(self.text, "backbone") and hasattr(self.text, "max_length"):
            self.text.max_length = max_length or _eval_max_length(self.text.backbone, self.text.tokenizer)

    def lengths(self, sentences: list[str]) -> list[int]:
        tokenizer = getattr(self.text, "tokenizer", None)
        return _token_lengths(tokenizer, sentences) if callable(tokenizer) else super().lengths(sentences)

    def embed_batch(self, batch: list[str]):
        tokens = self.text.tokenize(batch)
        if self.use_head:
            return self.model.encode("text", tokens)  # [B, D] unit norm
        return self.text(tokens)  # [B, H]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "pooling": getattr(self.text, "pooling", None),
            "max_length": getattr(self.text, "max_length", None),
            "use_head": self.use_head,
        }


def is_checkpoint(path: Path) -> bool:
    if path.is_file():
        return path.suffix in (".ckpt", ".pt")
    return (path / "model.pt").is_file() or (path / "checkpoints" / "last.ckpt").is_file()


def _st_transformer_dir(path: Path) -> Path:
    """The folder of the Transformer module inside a sentence-transformers folder (usually the root)."""
    modules = json.loads((path / "modules.json").read_text())
    for module in modules:
        if module.get("type", "").endswith("Transformer"):
            return path / module.get("path", "")
    raise UserError(f"{path}/modules.json has no Transformer module; --pooling cannot be applied")


def resolve_model_path(model: str) -> Path:
    """A local path, or the folder of a packaged short name (mmcl.encoders.hub)."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    from mmcl.encoders.hub import PACKAGED_TEXT_MODELS, resolve_text_model

    if model.lower() in PACKAGED_TEXT_MODELS:
        return Path(resolve_text_model(model))
    raise UserError(
        f"--model {model!r} is not an existing path nor a packaged model "
        f"({', '.join(sorted(PACKAGED_TEXT_MODELS))}); give an mmcl run dir or checkpoint, "
        "a sentence-transformers folder, or a Hugging Face model folder"
    )


def load_text_embedder(
    model: str,
    pooling: str | None = None,
    *,
    use_head: bool = True,
    max_length: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool = True,
) -> TextEmbedder:
    """Resolve `--model`: mmcl checkpoint/run dir, sentence-transformers folder (or packaged short name),
    or a plain Hugging Face folder. `pooling` on a sentence-transformers folder bypasses its Pooling and
    runs the bare backbone with that rule (e.g. to compare cls vs mean)."""
    embedder = _build_embedder(
        resolve_model_path(model),
        pooling,
        use_head,
        max_length,
        {"batch_size": batch_size, "show_progress": show_progress},
    )
    embedder.name = model
    return embedder


def _build_embedder(
    path: Path, pooling: str | None, use_head: bool, max_length: int | None, common: dict[str, Any]
) -> BatchedTextEmbedder:
    if is_checkpoint(path):
        return CheckpointEmbedder(path, pooling, use_head=use_head, max_length=max_length, **common)
    if path.is_dir() and (path / "modules.json").is_file():
        if pooling is None:
            return SentenceTransformerEmbedder(path, **common)
        return HuggingFaceEmbedder(_st_transformer_dir(path), pooling, max_length, **common)
    if path.is_dir() and (path / "config.json").is_file():
        return HuggingFaceEmbedder(path, pooling or "mean", max_length, **common)
    raise UserError(
        f"--model {path} is neither an mmcl run dir/checkpoint (model.pt, checkpoints/last.ckpt, *.ckpt), "
        "a sentence-transformers folder (modules.json) nor a Hugging Face folder (config.json)"
    )
