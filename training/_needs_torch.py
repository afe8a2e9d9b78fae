"""Imported first by the packages and modules that need torch: a clear `MissingDependencyError` naming
the `train` extra, instead of a bare ModuleNotFoundError from deep inside them."""

from __future__ import annotations

from vireid.errors import require

torch = require("torch", "train", "vireid.training's models, losses, pretrained weights and trainer")
