"""Two-stream ResNet backbones: modality-specific stems, shared residual stages.

The visible and infrared images first pass their own stem (conv1, bn1, relu, maxpool); layer1–layer4 are
shared, so both modalities end up in one feature space. Inside each module the parameter names follow
torchvision's ResNet (`conv1.weight`, `layer1.0.downsample.0.weight`, …): the shared stages carry exactly
torchvision's keys and each stem carries them behind a `visible_stem.` / `infrared_stem.` prefix, so an
ImageNet state dict maps onto the backbone by name (see `vireid.training.pretrained`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import Registry

BACKBONES: Registry[TwoStreamResNet] = Registry("backbone")

STEM_PREFIXES = ("visible_stem.", "infrared_stem.")


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with an identity shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided, as torchvision's "ResNet v1.5") → 1×1 with 4× expansion (ResNet-50)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class Stem(nn.Module):
    """ResNet stem: 7×7/2 convolution, BN, ReLU, 3×3/2 max-pool (output stride 4)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class TwoStreamResNet(nn.Module):
    """ResNet with one stem per modality (0 = visible, 1 = infrared) and shared layer1–layer4.

    Args:
        block: `BasicBlock` or `Bottleneck`.
        layers: Blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
        width: Channels of the stem and layer1 (64 in the standard ResNets); the stages use
            width, 2·width, 4·width and 8·width planes.
        last_stride: Stride of layer4 (1 keeps 18×9 maps at 288×144 input, the re-id convention).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        width: int = 64,
        last_stride: int = 1,
    ) -> None:
        super().__init__()
        self.visible_stem = Stem(width)
        self.infrared_stem = Stem(width)
        self._inplanes = width
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], last_stride)
        self.out_channels = width * 8 * block.expansion
        self.output_stride = 16 * last_stride
        _init_weights(self)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        modules = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        modules += [block(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def stems(self, x: Tensor, modality: Tensor) -> Tensor:
        """Run each sample through its modality's stem.

        Training: each stem sees only its own samples, so its BatchNorm statistics stay
        modality-specific. Inference/export: both stems run on the whole batch and `torch.where` picks
        per sample, a branch-free graph with a dynamic batch (the stem is ~3 % of ResNet-50's FLOPs).
        """
        if self.training and not torch.jit.is_tracing():
            return self._stems_by_subset(x, modality)
        pick_visible = modality.reshape(-1, 1, 1, 1) == 0
        return torch.where(pick_visible, self.visible_stem(x), self.infrared_stem(x))

    def _stems_by_subset(self, x: Tensor, modality: Tensor) -> Tensor:
        visible = modality == 0
        order, pieces = [], []
        for stem, mask in ((self.visible_stem, visible), (self.infrared_stem, ~visible)):
            index = mask.nonzero().squeeze(1)
            if index.numel():
                order.append(index)
                pieces.append(stem(x.index_select(0, index)))
        return torch.cat(pieces)[torch.argsort(torch.cat(order))]

    def forward(self, x: Tensor, modality: Tensor) -> Tensor:
        """Map normalised `[N, 3, H, W]` images to `[N, C, H/s, W/s]` features (s = output stride)."""
        x = self.stems(x, modality)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@BACKBONES.register("resnet50")
def resnet50(last_stride: int = 1, width: int | None = None) -> TwoStreamResNet:
    """Two-stream ResNet-50: 2048-channel output, the paper-scale default."""
    return TwoStreamResNet(Bottleneck, (3, 4, 6, 3), width or 64, last_stride)


@BACKBONES.register("resnet34")
def resnet34(last_stride: int = 1, width: int | None = None) -> TwoStreamResNet:
    """Two-stream ResNet-34: 512-channel output."""
    return TwoStreamResNet(BasicBlock, (3, 4, 6, 3), width or 64, last_stride)


@BACKBONES.register("resnet18")
def resnet18(last_stride: int = 1, width: int | None = None) -> TwoStreamResNet:
    """Two-stream ResNet-18: 512-channel output (8·width with a `width` multiplier)."""
    return TwoStreamResNet(BasicBlock, (2, 2, 2, 2), width or 64, last_stride)


@BACKBONES.register("resnet_tiny")
def resnet_tiny(last_stride: int = 1, width: int | None = None) -> TwoStreamResNet:
    """One BasicBlock per stage at width 16 (128-channel output): a CPU demo backbone, not for accuracy."""
    return TwoStreamResNet(BasicBlock, (1, 1, 1, 1), width or 16, last_stride)
