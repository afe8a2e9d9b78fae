"""Baseline: the same two-stream backbone and heads as MSPAC without part attention (`baseline`).

With `parts` set (e.g. (6,)), the raw backbone map is also cut into that many stripes, each with its own
GeM/BN/classifier head for the `pid` loss: the paper's "Baseline + pid" row. The deployed embedding is
always the plain global feature.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from .attention import split_rows
from .base import MODELS, ReIDModel


@MODELS.register("baseline")
class Baseline(ReIDModel):
    """Two-stream ResNet → GeM → BN-neck; optional plain stripe heads for the `pid` loss."""

    default_parts: ClassVar[tuple[int, ...]] = ()

    def refine(self, fmap: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The backbone map is the global map; stripes are cut only when part heads exist and training."""
        if not self.training:
            return fmap, []
        stripes = [stripe for count in self.parts if count > 1 for stripe in split_rows(fmap, count)]
        return fmap, stripes
