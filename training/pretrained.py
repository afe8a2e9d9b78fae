"""Loading optional ImageNet weights from a local torchvision ResNet state dict (never downloaded).

The two-stream backbone keeps torchvision's parameter names, so the mapping is by name: the file's
`conv1.*` / `bn1.*` go into *both* stems (`visible_stem.*`, `infrared_stem.*`), `layer1`–`layer4` into
the shared stages, and `fc.*` (the ImageNet classifier) is ignored. Accepted files: `torch.save`d state
dicts (`.pth`, `.pt`; read with `weights_only=True`, never unpickling code) and `.safetensors`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vireid.errors import ArtifactError, ConfigError

from ._needs_torch import torch
from .models.backbones import STEM_PREFIXES, TwoStreamResNet

if TYPE_CHECKING:
    from torch import Tensor, nn
else:
    Tensor, nn = torch.Tensor, torch.nn

log = logging.getLogger(__name__)

_HOW_TO_GET = (
    "save torchvision's ImageNet ResNet weights on a machine with internet access, e.g. "
    "`torch.save(torchvision.models.resnet50(weights='IMAGENET1K_V1').state_dict(), 'resnet50.pth')`, "
    "copy the file here and set model.pretrained to its path, or set model.pretrained to null to train "
    "from scratch"
)


@dataclass(frozen=True)
class PretrainedReport:
    """What `load_pretrained` did.

    Attributes:
        path: The weights file.
        loaded: Backbone keys that received weights (the stem keys appear once per stem).
        missing: Backbone keys the file did not provide (they keep their random initialisation).
        unexpected: File keys that match nothing in the backbone (`fc.*` excluded, see `ignored`).
        ignored: File keys skipped on purpose (the ImageNet classifier `fc.*`).
    """

    path: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    ignored: tuple[str, ...]


def check_pretrained_file(path: str | Path) -> Path:
    """`path` as a `Path` when it names a file; else `ArtifactError` saying where the weights come from."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: pretrained weights file not found; {_HOW_TO_GET}")
    return path


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from `.safetensors` or a `torch.save` file (`weights_only=True`).

    A `{"state_dict": …}` / `{"model": …}` wrapper and a DataParallel `module.` prefix are undone.
    Raises `ArtifactError` when the file is missing, unreadable or holds something other than tensors.
    """
    path = check_pretrained_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"{path}: cannot read pretrained weights ({type(exc).__name__}: {exc}); expected a state dict "
            "saved with torch.save(model.state_dict(), ...) or a .safetensors file"
        ) from None
    return _plain_state(state, path)


def _plain_state(state: Any, path: Path) -> dict[str, Tensor]:
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ArtifactError(f"{path}: not a state dict of tensors; {_HOW_TO_GET}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def torchvision_key(backbone_key: str) -> str:
    """The torchvision ResNet key a backbone key reads from (`visible_stem.conv1.weight` → `conv1.weight`)."""
    for prefix in STEM_PREFIXES:
        if backbone_key.startswith(prefix):
            return backbone_key[len(prefix) :]
    return backbone_key


def load_pretrained(model: nn.Module, path: str | Path) -> PretrainedReport:
    """Copy torchvision ResNet weights from `path` into the model's two-stream backbone.

    Args:
        model: A `ReIDModel` (its `.backbone` is used) or a `TwoStreamResNet`.
        path: Local weights file (`.pth`/`.pt`/`.safetensors`).

    Returns:
        A `PretrainedReport`; missing and unexpected keys are also logged as warnings.

    Raises:
        ArtifactError: The file is missing or unreadable.
        ConfigError: Tensors do not fit (another depth/width) or no key matches the ResNet layout.
    """
    backbone = getattr(model, "backbone", model)
    if not isinstance(backbone, TwoStreamResNet):
        raise ConfigError(
            f"load_pretrained needs a two-stream ResNet backbone, got {type(backbone).__name__}"
        )
    source = read_state_dict(path)
    weights, missing = _match(backbone.state_dict(), source, Path(path), model)
    backbone.load_state_dict(weights, strict=False)
    used = {torchvision_key(k) for k in weights}
    ignored = sorted(k for k in source if k.startswith("fc."))
    unexpected = sorted(k for k in source if k not in used and not k.startswith("fc."))
    report = PretrainedReport(str(path), tuple(weights), tuple(missing), tuple(unexpected), tuple(ignored))
    _log_report(report)
    return report


def _match(
    target: Mapping[str, Tensor], source: Mapping[str, Tensor], path: Path, model: nn.Module
) -> tuple[dict[str, Tensor], list[str]]:
    weights, missing, misfits = {}, [], []
    for key, tensor in target.items():
        name = torchvision_key(key)
        if name not in source:
            if not key.endswith("num_batches_tracked"):  # absent from old files and meaningless
                missing.append(key)
        elif source[name].shape != tensor.shape:
            misfits.append(f"{name}: file {tuple(source[name].shape)} vs model {tuple(tensor.shape)}")
        else:
            weights[key] = source[name]
    config = getattr(model, "config", None)
    described = f"backbone {config.backbone!r} (width {config.width})" if config else "the backbone"
    if misfits:
        raise ConfigError(
            f"{path}: {len(misfits)} tensors do not fit {described}, e.g. {misfits[0]}; the file is for "
            "another ResNet depth or width: set model.backbone/model.width to the network the weights "
            "come from, or model.pretrained to null"
        )
    if not weights:
        raise ConfigError(
            f"{path}: no key matches the torchvision ResNet layout (conv1.weight, layer1.0.conv1.weight, "
            f"...); found e.g. {sorted(source)[:3]}; {_HOW_TO_GET}"
        )
    return weights, missing


def _log_report(report: PretrainedReport) -> None:
    log.info("pretrained: %d tensors loaded from %s", len(report.loaded), report.path)
    if report.missing:
        log.warning(
            "pretrained: %d backbone keys not in %s: %s",
            len(report.missing),
            report.path,
            ", ".join(report.missing[:5]),
        )
    if report.unexpected:
        log.warning(
            "pretrained: %d keys in %s unused: %s",
            len(report.unexpected),
            report.path,
            ", ".join(report.unexpected[:5]),
        )
