"""Learning-rate schedule: linear warm-up, then step decay at epoch milestones (the reference recipe)
or a half cosine down to zero at the last epoch."""

from __future__ import annotations

import math

from .config import TrainConfig


def lr_factor(epoch_progress: float, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at a fractional epoch: linear warm-up, then ×gamma at each milestone."""
    opt = cfg.optim
    if opt.warmup_epochs and epoch_progress < opt.warmup_epochs:
        return max(epoch_progress, 0.01) / opt.warmup_epochs
    if opt.schedule == "cosine":
        span = max(opt.epochs - opt.warmup_epochs, 1e-9)
        done = min(max((epoch_progress - opt.warmup_epochs) / span, 0.0), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * done))
    return opt.gamma ** sum(epoch_progress >= m for m in opt.milestones)
