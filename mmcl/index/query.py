"""Queries into the model's space: a text, an image file or a speech clip -> unit-norm embedding [D].

Decoding goes through the data layer's owners (mmcl.data.flickr.load_image, mmcl.data.audio.load_audio), so a
file that is not an image or audio fails with the same DataError (naming the file) as in training.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mmcl.errors import UserError

QUERY_MODALITIES = ("text", "image", "audio")


class QueryError(UserError):
    """A query that cannot be answered as given (empty text, unknown modality, no such tower)."""


class QueryEncoder:
    """Embeds queries with one model (loaded once); thread-safe callers serialise calls themselves."""

    def __init__(self, model: Any, config: dict[str, Any]) -> None:
        data = config.get("data", {})
        self.model = model.eval()
        self.sample_rate = int(data.get("audio_sample_rate", 16000))
        self.seconds = float(data.get("audio_seconds", 6.0))
        self.transform = model.encoders["image"].transform(train=False) if "image" in model.encoders else None

    @classmethod
    def from_file(cls, model_file: str | os.PathLike) -> QueryEncoder:
        from mmcl.train.checkpoint import load_model

        return cls(*load_model(model_file))

    def _encode(self, modality: str, inputs: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.encode(modality, inputs)[0].float().cpu().numpy()

    def encode(self, modality: str, value: str | os.PathLike) -> np.ndarray:
        """Embedding [D] of a text (modality "text") or of the image / audio file at `value`."""
        import torch

        if modality not in QUERY_MODALITIES:
            raise QueryError(f"unknown query modality {modality!r}: use one of {', '.join(QUERY_MODALITIES)}")
        if modality not in self.model.encoders:
            raise QueryError(f"the champion has no {modality} tower (it has {', '.join(self.model.encoders)})")
        if modality == "text":
            text = str(value).strip()
            if not text:
                raise QueryError("the text query is empty")
            return self._encode("text", self.model.encoders["text"].tokenize([text]))
        if modality == "image":
            from mmcl.data.flickr import load_image

            return self._encode("image", self.transform(load_image(value)).unsqueeze(0))  # [1, 3, H, W]
        from mmcl.data.audio import load_audio

        clip = load_audio(value, self.sample_rate, max_seconds=self.seconds)
        wave = torch.zeros(1, int(self.seconds * self.sample_rate))  # [1, S], zero-padded as in training
        clip = torch.from_numpy(clip[: wave.shape[1]])
        wave[0, : clip.shape[0]] = clip
        return self._encode("audio", wave)

    def encode_bytes(self, modality: str, data: bytes, name: str = "upload") -> np.ndarray:
        """Same as `encode` for an uploaded file's bytes (written to a private temp file for the decoders)."""
        if not data:
            raise QueryError(f"the {modality} upload is empty")
        suffix = Path(name).suffix[:8] if Path(name).suffix.isascii() else ""
        fd, tmp = tempfile.mkstemp(prefix="mmcl-query-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return self.encode(modality, tmp)
        finally:
            os.unlink(tmp)
