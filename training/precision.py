"""Which float type the trainer's forward pass computes in: float16 with loss scaling on CUDA (`run.amp`),
bfloat16 on CPUs that compute it natively (`run.cpu_precision`), float32 otherwise.

bfloat16 keeps float32's exponent range, so it needs no loss scaling; the weights, the optimizer and the
losses stay float32 (the losses and the part attention turn autocast off themselves). On a CPU with AMX
tiles the demo config's steps run 1.3x faster (docs/training.md); a CPU without native bfloat16 runs it
emulated, slower than float32, which is why `auto` asks the CPU first.
"""

from __future__ import annotations

import logging

from vireid.errors import ConfigError

from ._needs_torch import torch
from .config import CPU_PRECISIONS

log = logging.getLogger("vireid.train")


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Xeon since Sapphire Rapids): bfloat16 matrix units.

    Asked through torch's own CPU feature probe (private in torch 2.x, hence the guard): False where
    the probe is missing, so `auto` stays float32 rather than guess.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except (RuntimeError, AttributeError):  # a torch build without the CPU feature table
        return False


def autocast_dtype(device: torch.device, amp: bool, cpu_precision: str) -> torch.dtype | None:
    """The autocast type for training on `device`, or None for plain float32.

    Raises:
        ConfigError: `cpu_precision` is not one of `CPU_PRECISIONS`.
    """
    if cpu_precision not in CPU_PRECISIONS:
        choices = ", ".join(CPU_PRECISIONS)
        raise ConfigError(f"run.cpu_precision must be one of {choices}, got {cpu_precision!r}")
    if device.type == "cuda":
        return torch.float16 if amp else None
    if device.type != "cpu" or cpu_precision == "fp32":
        return None
    if cpu_has_amx():
        log.info("run.cpu_precision %s: bfloat16 autocast on this CPU (AMX)", cpu_precision)
        return torch.bfloat16
    if cpu_precision == "auto":
        log.info("run.cpu_precision auto: float32 (this CPU has no AMX bfloat16 units)")
        return None
    log.warning(
        "run.cpu_precision bf16: this CPU has no AMX bfloat16 units; bfloat16 may run slower than "
        "float32 here (run.cpu_precision: auto picks float32 on such CPUs)"
    )
    return torch.bfloat16
