"""The backend protocol: one base class owns lifecycle, input checks and chunking; subclasses run.

A backend is opened on one artifact and one device, reads the artifact's `ModelCard` before anything
else, and exposes `infer(images, modality) -> embeddings`. The base class validates every call against
the card (`uint8 [N, H, W, 3]` images, `int32 [N]` modality values from the card's modalities), splits
batches larger than the engine's optimisation profile, pads batches smaller than its minimum, checks the
output, and calls the subclass's `_infer()` with one chunk at a time. Subclasses only run the engine.
"""

from __future__ import annotations

import abc
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..card import BatchProfile, ModelCard
from ..errors import ArtifactError, InputSpecError

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
"""Device names `open_backend` accepts. `cuda`/`tensorrt` mean GPU device `device_id` (default 0)."""


def _describe(array: Any) -> str:
    return f"{array.shape} {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__


class Backend(abc.ABC):
    """An opened model artifact on one device. Use as a context manager or call `close()`.

    Attributes:
        path: the artifact file.
        card: its `ModelCard`, read before the runtime was touched.
        device: the device it runs on (`cpu`, `cuda` or `tensorrt`), never `auto`.
        providers: what actually runs it (ONNX Runtime execution providers, or `("TensorRT x.y",)`).
    """

    format_id: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()
    """Keyword options the subclass accepts (checked by `open_backend`)."""

    def __init__(self, path: str | Path, card: ModelCard) -> None:
        self.path = Path(path)
        self.card = card
        self.device = "unopened"
        self.providers: tuple[str, ...] = ()
        self.profile: BatchProfile | None = card.profile
        self._lock = threading.RLock()
        self._staging: np.ndarray | None = None
        self._closed = False
        self.record_stages = False
        """When True, backends that copy to a device time `h2d`, `infer` and `d2h` of each call
        separately (synchronising between them, so only for benchmarks) into `last_stages`."""
        self.last_stages: dict[str, float] = {}

    # ----- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the session/engine and its memory. Safe to call twice."""
        with self._lock:  # never while a call is running
            if not self._closed:
                self._closed = True
                self._release()

    def _release(self) -> None:  # noqa: B027 - optional hook
        """Free runtime resources (subclass hook)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.device
        return f"{type(self).__name__}({str(self.path)!r}, {state}, providers={list(self.providers)})"

    @property
    def call_lock(self) -> threading.RLock:
        """The lock `infer` and `close` hold. A caller that fills `allocate_images()` itself holds it
        from asking for the buffer until `infer` returned (as `Embedder` does), so that another thread
        sharing this backend cannot overwrite the buffer, or close the backend, in between."""
        return self._lock

    # ----- sizes --------------------------------------------------------------------------------
    @property
    def max_batch(self) -> int | None:
        """Largest batch one engine call takes (the profile's max), or None for no limit."""
        return self.profile.max if self.profile else None

    @property
    def min_batch(self) -> int:
        """Smallest batch one engine call takes; smaller chunks are padded (profile min, usually 1)."""
        return self.profile.min if self.profile else 1

    def allocate_images(self, n: int) -> np.ndarray:
        """A writable `uint8 [n, H, W, 3]` staging array to preprocess into and pass to `infer`.

        The memory is reused by the next call (it grows to the largest `n` asked for) and shared by every
        user of this backend, so hold `call_lock` from here until `infer` returned (`Embedder` does);
        the TensorRT backend returns a view of its pinned host buffer, which `infer` then uploads
        without a host copy. Through cuda-python that memory stays valid while you hold the array, after
        `close` too; through pycuda it goes with the CUDA context at `close`, so do not keep it past.
        """
        if self._staging is None or len(self._staging) < n:
            self._staging = np.empty((n, *self.card.input_size, 3), dtype=np.uint8)
        return self._staging[:n]

    # ----- inference ----------------------------------------------------------------------------
    def infer(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        """Embed a ready batch: `uint8 [N, H, W, 3]` RGB images and `int32 [N]` modality values.

        Batches above the profile's max are run in chunks; the result is one `float32 [N, D]` array.
        Thread-safe: calls on one backend are serialised.

        Raises:
            InputSpecError: names, dtypes, shapes or modality values do not match the card.
            ArtifactError: the model returned something other than `float32 [N, D]`.
        """
        images, modality = self.check_inputs(images, modality)
        n = len(images)
        out = np.empty((n, self.card.embedding_dim), dtype=np.float32)
        step = self.max_batch or max(n, 1)
        with self._lock:
            if self._closed:
                raise ArtifactError(
                    f"{self.path}: backend is closed; open it again with vireid.open_backend()"
                )
            for start in range(0, n, step):
                stop = min(start + step, n)
                out[start:stop] = self._run_chunk(images[start:stop], modality[start:stop])
        return out

    def check_inputs(self, images: Any, modality: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate a batch against the card; returns C-contiguous arrays (copied only if needed)."""
        image_name, modality_name = self.card.input_names
        height, width = self.card.input_size
        if (
            not isinstance(images, np.ndarray)
            or images.dtype != np.uint8
            or images.ndim != 4
            or images.shape[1:] != (height, width, 3)
        ):
            raise InputSpecError(
                f"{image_name} must be (N, {height}, {width}, 3) uint8 {self.card.color_order} "
                f"(the input size in {self.path.name}'s card), got {_describe(images)}; resize crops "
                "with vireid.preprocess.preprocess_crops or use vireid.Embedder"
            )
        n = len(images)
        if not isinstance(modality, np.ndarray) or modality.dtype != np.int32 or modality.shape != (n,):
            raise InputSpecError(
                f"{modality_name} must be ({n},) int32 (one value per image), got {_describe(modality)}"
            )
        bad = self._bad_modality_rows(modality)
        if len(bad):
            names = ", ".join(f"{int(m)} ({m})" for m in self.card.modalities)
            raise InputSpecError(
                f"{modality_name} values must be one of {names} (the card's modalities), got "
                f"{modality[bad[:5]].tolist()} at rows {bad[:5].tolist()}"
            )
        return np.ascontiguousarray(images), np.ascontiguousarray(modality)

    def _bad_modality_rows(self, modality: np.ndarray) -> np.ndarray:
        """Rows whose value is not one of the card's modalities (a min/max check when that suffices)."""
        allowed = sorted(int(m) for m in self.card.modalities)
        low, high = allowed[0], allowed[-1]
        if not len(modality) or (
            allowed == list(range(low, high + 1)) and low <= modality.min() <= modality.max() <= high
        ):
            return np.empty(0, dtype=np.intp)
        return np.flatnonzero(~np.isin(modality, allowed))

    def _run_chunk(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        n = len(images)
        if n < self.min_batch:  # pad up to the profile minimum by repeating the last item
            extra = self.min_batch - n
            images = np.concatenate([images, np.repeat(images[-1:], extra, axis=0)])
            modality = np.concatenate([modality, np.repeat(modality[-1:], extra)])
        result = self._infer(images, modality)
        expected = (len(images), self.card.embedding_dim)
        if not isinstance(result, np.ndarray) or result.dtype != np.float32 or result.shape != expected:
            raise ArtifactError(
                f"{self.path}: model returned {_describe(result)} for a batch of {len(images)}, expected "
                f"{expected} float32 as its card says; the artifact breaks the vireid contract, re-export it"
            )
        return result[:n]

    @abc.abstractmethod
    def _infer(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        """Run one validated chunk (`min_batch <= N <= max_batch`) and return `float32 [N, D]`."""


def check_device_name(device: Any) -> str:
    """Validate a device name (`auto`, `cpu`, `cuda`, `tensorrt`; case-insensitive)."""
    name = str(device).strip().lower() if isinstance(device, str) else None
    if name not in DEVICES:
        raise InputSpecError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return name
