"""Training images in memory: decoded once, resized to the model input, cached as one uint8 array.

Decoding runs on a small thread pool (OpenCV releases the GIL). When the whole set does not fit in the
cache budget, images are decoded per batch instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vireid.imageio import read_image
from vireid.preprocess import resize_into
from vireid.progress import progress

log = logging.getLogger("vireid.train")


def load_resized(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Read an image as RGB at `size = (H, W)`, resized exactly as the runtime resizes crops.

    One resize path (`vireid.preprocess.resize_into`) for training, evaluation and deployment, so
    a model never sees differently interpolated pixels at run time than it was trained on.
    """
    return resize_into(read_image(path), np.empty((size[0], size[1], 3), np.uint8))


class ImageStore:
    """Random access to a list of images at a fixed size, cached in RAM when it fits `cache_bytes`."""

    def __init__(
        self,
        paths: Sequence[Path],
        size: tuple[int, int],
        cache_bytes: int = 3 << 30,
        threads: int = 2,
        show_progress: bool = True,
    ) -> None:
        self.paths, self.size = list(paths), size
        self._pool = ThreadPoolExecutor(max_workers=threads)
        need = len(self.paths) * size[0] * size[1] * 3
        self._cache: np.ndarray | None = None
        if need > cache_bytes and self.paths:
            log.info(
                "training images need %.1f GiB decoded, above the %.1f GiB cache (run.image_cache_gib): "
                "decoding every batch instead, which slows each step; raise it if RAM allows",
                need / (1 << 30),
                cache_bytes / (1 << 30),
            )
        if need <= cache_bytes:
            self._cache = np.empty((len(self.paths), size[0], size[1], 3), np.uint8)
            chunks = [range(i, min(i + 256, len(self.paths))) for i in range(0, len(self.paths), 256)]
            for chunk in progress(chunks, desc="loading images", enabled=show_progress):
                self._cache[chunk.start : chunk.stop] = self._decode(list(chunk))

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, indices: Sequence[int]) -> np.ndarray:
        images = self._pool.map(lambda i: load_resized(self.paths[i], self.size), indices)
        return np.stack(list(images)) if indices else np.zeros((0, *self.size, 3), np.uint8)

    def get(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """`uint8 [n, H, W, 3]` images at the given indices."""
        if self._cache is not None:
            return self._cache[np.asarray(indices)]
        return self._decode([int(i) for i in indices])

    def close(self) -> None:
        self._pool.shutdown(wait=False)
