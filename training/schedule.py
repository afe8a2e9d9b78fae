"""Learning-rate schedule: linear warm-up, then step decay at epoch milestones (the reference recipe)."""

from __future__ import annotations

from .config import TrainConfig


def lr_factor(epoch_progress: float, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at a fractional epoch: linear warm-up, then ×gamma at each milestone."""
    opt = cfg.optim
    if opt.warmup_epochs and epoch_progress < opt.warmup_epochs:
        return max(epoch_progress, 0.01) / opt.warmup_epochs
    return opt.gamma ** sum(epoch_progress >= m for m in opt.milestones)
