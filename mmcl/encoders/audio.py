"""Speech encoder: log-mel front end + a small conv stack + a transformer layer, mean-pooled.

The front end is plain torch (STFT + a Slaney-style mel filterbank) so no audio backend is needed
at training time; decoding MP3 happens once in the data layer (mmcl.data.audio).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmcl.registry import ENCODERS


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, fmin: float = 20.0, fmax: float | None = None) -> Tensor:
    """[n_mels, n_fft//2+1] triangular filters, equally spaced on the HTK mel scale."""
    fmax = fmax or sample_rate / 2

    def hz_to_mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)  # [n_mels + 2]
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)  # [F]
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0)


class LogMel(nn.Module):
    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, hop: int = 160, n_mels: int = 64) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fbank", mel_filterbank(n_fft, n_mels, sample_rate), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        spec = torch.stft(wave.float(), self.n_fft, self.hop, window=self.window, return_complex=True)  # [B, F, T]
        power = spec.abs().pow(2)
        mel = torch.einsum("mf,bft->bmt", self.fbank, power)  # [B, M, T]
        return torch.log(mel + 1e-6)


@ENCODERS.register("audio_conv")
class AudioConvEncoder(nn.Module):
    modality = "audio"

    def __init__(
        self, sample_rate: int = 16000, n_mels: int = 64, width: int = 128, layers: int = 4, transformer_layers: int = 1
    ) -> None:
        super().__init__()
        self.frontend = LogMel(sample_rate=sample_rate, n_mels=n_mels)
        self.norm = nn.InstanceNorm1d(n_mels)  # per-clip loudness normalisation
        convs, cin = [], n_mels
        for i in range(layers):
            convs += [nn.Conv1d(cin, width, 5, stride=2 if i < 3 else 1, padding=2), nn.BatchNorm1d(width), nn.GELU()]
            cin = width
        self.convs = nn.Sequential(*convs)
        self.transformer = (
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width, batch_first=True, dropout=0.1),
                num_layers=transformer_layers,
                enable_nested_tensor=False,
            )
            if transformer_layers
            else nn.Identity()
        )
        self.output_dim = width
        self.sample_rate = sample_rate

    def forward(self, wave: Tensor) -> Tensor:
        x = self.norm(self.frontend(wave))  # [B, M, T]
        x = self.convs(x)  # [B, W, T/8]
        x = self.transformer(x.transpose(1, 2))  # [B, T/8, W]
        return x.mean(dim=1)  # [B, W]
