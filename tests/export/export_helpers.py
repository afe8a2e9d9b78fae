"""Helpers of the export tests: tiny registered models with non-trivial BatchNorm statistics.

(Test modules import these from here, never from conftest.py: pytest imports every folder's
conftest.py under the one module name `conftest`.)
"""

from __future__ import annotations

from pathlib import Path

SIZE = (128, 64)


def tiny_model(name: str = "mspac", seed: int = 0, **config: object):
    """A tiny registered model in eval mode with non-trivial BatchNorm statistics."""
    import torch

    from vireid.training.models import build_model

    torch.manual_seed(seed)
    model = build_model(name, 8, with_pretrained=False, backbone="resnet_tiny", input_size=SIZE, **config)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def save_tiny_checkpoint(stem: Path, name: str = "mspac", **config: object) -> Path:
    """Write a tiny model as a vireid checkpoint pair; returns the `.safetensors` path."""
    from vireid.training.checkpoint import save_checkpoint

    model = tiny_model(name, **config)
    meta = {"model_config": model.config.to_dict(), "num_classes": 8, "epoch": 1}
    return save_checkpoint(stem, model.state_dict(), meta)
