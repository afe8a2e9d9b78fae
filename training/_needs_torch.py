"""Imported first by the packages and modules that need torch: a clear `MissingDependencyError` naming
the `train` extra, instead of a bare ModuleNotFoundError from deep inside them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vireid.errors import require

if TYPE_CHECKING:
    import torch
else:
    torch = require("torch", "train", "vireid.training's models, losses, pretrained weights and trainer")
