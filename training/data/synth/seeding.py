"""Seeds derived from keys, so every image is reproducible on its own.

`rng_for(seed, "image", pid, cam, n)` gives the same stream whatever order images are generated in and
however many worker processes share the work.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key(part: int | str) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode("utf-8"))
    return int(part) & 0xFFFFFFFF


def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """A numpy generator seeded by the master seed and a tuple of keys (strings or integers)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(_key(k) for k in keys)])
