"""The loss registry (`LOSSES`): identity, mecen, triplet."""

from __future__ import annotations

from torch import nn

from ..models.registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")
