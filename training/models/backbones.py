"""Two-stream ResNet backbones: modality-specific leading stages, shared residual stages.

The visible and infrared images first pass their own branch: the stem (conv1, bn1, relu, maxpool) and,
with `specific_stages` > 1, the first residual stages too (the split point); the remaining stages are
shared, so both modalities end up in one feature space. With `share_convs` the two branches share their
convolution weights and keep only their BatchNorm layers apart (PSMG's parameter sharing: one set of
filters, modality-specific statistics).

Inside each module the parameter names follow torchvision's ResNet (`conv1.weight`,
`layer1.0.downsample.0.weight`, …): the shared stages carry exactly torchvision's keys and each branch
carries them behind a `visible_stem.` / `infrared_stem.` prefix, so an ImageNet state dict maps onto the
backbone by name whatever the split point (see `vireid.training.pretrained`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vireid.errors import ConfigError

from .registry import Registry

BACKBONES: Registry[TwoStreamResNet] = Registry("backbone")

STEM_PREFIXES = ("visible_stem.", "infrared_stem.")
SPLIT_POINTS = (1, 2, 3, 4)


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
    """One modality's branch: the ResNet stem (7×7/2 convolution, BN, ReLU, 3×3/2 max-pool) followed by
    the modality-specific residual stages, if any (`layer1`… as attributes, torchvision's names)."""

    def __init__(self, width: int, stages: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stage_names = tuple(stages or ())
        for name, stage in (stages or {}).items():
            self.add_module(name, stage)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x


class TwoStreamResNet(nn.Module):
    """ResNet with one branch per modality (0 = visible, 1 = infrared) and shared later stages.

    Args:
        block: `BasicBlock` or `Bottleneck`.
        layers: Blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
        width: Channels of the stem and layer1 (64 in the standard ResNets); the stages use
            width, 2·width, 4·width and 8·width planes.
        last_stride: Stride of layer4 (1 keeps 18×9 maps at 288×144 input, the re-id convention).
        specific_stages: How many leading stages are modality-specific, counting the stem: 1 = the stem
            only (the default two-stream network), 2 = stem + layer1, … up to 4 (layer4 is always shared).
        share_convs: The two branches share their convolution weights; only BatchNorm stays per modality.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        width: int = 64,
        last_stride: int = 1,
        specific_stages: int = 1,
        share_convs: bool = False,
    ) -> None:
        super().__init__()
        if specific_stages not in SPLIT_POINTS:
            raise ConfigError(
                f"model.specific_stages must be one of {list(SPLIT_POINTS)} (1 = stem only, 2 = stem + "
                f"layer1, …), got {specific_stages!r}"
            )
        plan = [(width, 1), (width * 2, 2), (width * 4, 2), (width * 8, last_stride)]
        names = [f"layer{i}" for i in range(1, 5)]
        specific = specific_stages - 1
        branches = []
        for _ in range(2):  # visible, infrared: identical shapes, separate modules
            self._inplanes = width
            stages = {
                n: self._make_layer(block, planes, blocks, stride)
                for n, (planes, stride), blocks in zip(names[:specific], plan, layers, strict=False)
            }
            branches.append(Stem(width, stages))
        self.visible_stem, self.infrared_stem = branches
        self.shared_stages = tuple(names[specific:])
        for name, (planes, stride), blocks in zip(names, plan, layers, strict=True):
            if name in self.shared_stages:
                setattr(self, name, self._make_layer(block, planes, blocks, stride))
        self.specific_stages, self.share_convs = specific_stages, share_convs
        self.out_channels = width * 8 * block.expansion
        self.output_stride = 16 * last_stride
        _init_weights(self)
        if share_convs:
            self._tie_branch_convs()

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
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

    def _tie_branch_convs(self) -> None:
        """Make the infrared branch use the visible branch's convolution weights (one Parameter each)."""
        visible = dict(self.visible_stem.named_modules())
        self._tied = []
        for name, module in self.infrared_stem.named_modules():
            if isinstance(module, nn.Conv2d):
                module.weight = visible[name].weight
                self._tied.append(f"{name}.weight")
        self._register_load_state_dict_pre_hook(self._refuse_untied_weights)

    def _refuse_untied_weights(
        self, state: dict, prefix: str, _meta: Any, _strict: bool, *errors: list
    ) -> None:
        """A state dict whose two branches hold different filters cannot load into tied branches:
        one set would silently replace the other. Reported through `load_state_dict`'s errors."""
        for key in self._tied:
            pair = state.get(f"{prefix}visible_stem.{key}"), state.get(f"{prefix}infrared_stem.{key}")
            if pair[0] is not None and pair[1] is not None and not torch.equal(pair[0], pair[1]):
                errors[-1].append(
                    f"{prefix}visible_stem.{key} and {prefix}infrared_stem.{key} differ, but this backbone "
                    "shares its branch convolutions (share_convs: true); the weights come from a model "
                    "trained with share_convs: false: build it with that setting"
                )
                return

    def stems(self, x: Tensor, modality: Tensor) -> Tensor:
        """Run each sample through its modality's branch (the stem and any modality-specific stages).

        Training: each branch sees only its own samples, so its BatchNorm statistics stay
        modality-specific. Inference/export: both branches run on the whole batch and a per-sample 0/1
        weight picks one, `visible·w + infrared·(1 − w)`: a branch-free graph with a dynamic batch (the
        stem is ~3 % of ResNet-50's FLOPs; each further specific stage adds its own cost once more).
        Exact for finite activations, and made of Mul/Add rather than `Where`, because ONNX Runtime's
        INT8 layout optimiser keeps quantised Mul/Add in NHWC but wraps a quantised Where in transposes
        of the whole stem output (measured on ResNet-50: INT8 2.5 % faster at batch 32).
        """
        if self.training and not torch.jit.is_tracing():
            return self._stems_by_subset(x, modality)
        visible = (modality.reshape(-1, 1, 1, 1) == 0).to(x.dtype)
        return self.visible_stem(x) * visible + self.infrared_stem(x) * (1 - visible)

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
        for name in self.shared_stages:
            x = getattr(self, name)(x)
        return x


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@BACKBONES.register("resnet50")
def resnet50(
    last_stride: int = 1, width: int | None = None, specific_stages: int = 1, share_convs: bool = False
) -> TwoStreamResNet:
    """Two-stream ResNet-50: 2048-channel output, the paper-scale default."""
    return TwoStreamResNet(Bottleneck, (3, 4, 6, 3), width or 64, last_stride, specific_stages, share_convs)


@BACKBONES.register("resnet34")
def resnet34(
    last_stride: int = 1, width: int | None = None, specific_stages: int = 1, share_convs: bool = False
) -> TwoStreamResNet:
    """Two-stream ResNet-34: 512-channel output."""
    return TwoStreamResNet(BasicBlock, (3, 4, 6, 3), width or 64, last_stride, specific_stages, share_convs)


@BACKBONES.register("resnet18")
def resnet18(
    last_stride: int = 1, width: int | None = None, specific_stages: int = 1, share_convs: bool = False
) -> TwoStreamResNet:
    """Two-stream ResNet-18: 512-channel output (8·width with a `width` multiplier)."""
    return TwoStreamResNet(BasicBlock, (2, 2, 2, 2), width or 64, last_stride, specific_stages, share_convs)


@BACKBONES.register("resnet_tiny")
def resnet_tiny(
    last_stride: int = 1, width: int | None = None, specific_stages: int = 1, share_convs: bool = False
) -> TwoStreamResNet:
    """One BasicBlock per stage at width 16 (128-channel output): a CPU demo backbone, not for accuracy."""
    return TwoStreamResNet(BasicBlock, (1, 1, 1, 1), width or 16, last_stride, specific_stages, share_convs)
