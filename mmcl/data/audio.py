"""Audio decoding: MP3/WAV/FLAC through libsndfile (soundfile), mono, resampled to the model's rate."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

from mmcl.errors import DataError


def load_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Decode `path` to a float32 mono waveform at `sample_rate` Hz (polyphase resampling).

    Raises DataError naming the file when it is missing, truncated or not audio.
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "audio file is missing")
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError on corrupt data
        raise DataError(path, f"cannot decode audio: {exc}") from exc
    if wave.size == 0:
        raise DataError(path, "audio file decodes to zero samples")
    mono = wave.mean(axis=1)  # [S]
    if max_seconds is not None:
        mono = mono[: int(max_seconds * sr)]
    if sr != sample_rate:
        g = gcd(int(sr), int(sample_rate))
        mono = resample_poly(mono, sample_rate // g, int(sr) // g).astype(np.float32)
    if not np.isfinite(mono).all():
        raise DataError(path, "audio contains NaN or inf samples")
    return mono
