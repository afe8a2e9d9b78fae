"""`Embedder`: person crops (or boxes in a frame) → L2-normalised embeddings, on any backend.

It reads what it needs from the model card (input size, modalities, threshold, embedding space),
preprocesses with `vireid.preprocess` straight into the backend's input buffer, runs batches of
`batch_size` (one call may mix visible and infrared crops: the model takes a modality per item), and
returns a typed `Embeddings` result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, open_backend
from .card import ModelCard
from .embeddings import Embeddings, unit_model_output
from .errors import InputSpecError
from .modality import Modality
from .preprocess import (
    as_boxes,
    as_image_list,
    check_image,
    is_ready_batch,
    preprocess_boxes,
    preprocess_crops,
    thermal_to_8bit,
)
from .thermal import ThermalScaling

ModalityLike = Modality | str | int
_SINGLE = (Modality, str, int, np.integer)


class Embedder:
    """Embeds person crops with an exported model.

    Example:
        >>> with Embedder("model.onnx") as embedder:                 # device="auto": CUDA if usable, else CPU
        ...     emb = embedder.embed([crop_rgb, crop_thermal], ["visible", "infrared"])
        ...     emb.vectors.shape                                    # (2, embedder.card.embedding_dim)

    Args:
        model: path of an `.onnx` / `.engine` artifact, or an already opened `Backend`.
        device: `auto`, `cpu`, `cuda` or `tensorrt` (see `vireid.open_backend`).
        batch_size: crops per backend call (capped by the engine profile's max batch).
        **backend_options: passed to the backend (e.g. `threads=4`, `device_id=1`).

    Calls are serialised (one lock), so one Embedder may be shared by threads.
    """

    def __init__(
        self, model: str | Path | Backend, device: str = "auto", batch_size: int = 32, **backend_options: Any
    ) -> None:
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputSpecError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(model, Backend):
            if backend_options:
                raise InputSpecError("backend options cannot be applied to an already opened backend")
            self.backend, self._owns_backend = model, False
        else:
            self.backend, self._owns_backend = open_backend(model, device, **backend_options), True
        self.batch_size = int(batch_size)
        self._space = self.backend.card.embedding_space()
        self._lock = threading.Lock()

    # ----- what the model says ------------------------------------------------------------------
    @property
    def card(self) -> ModelCard:
        """The model card of the artifact."""
        return self.backend.card

    @property
    def embedding_space(self) -> str:
        """Fingerprint of the embedding space (`card.embedding_space()`); galleries are bound to it."""
        return self._space

    @property
    def threshold(self) -> float | None:
        """Recommended cosine match threshold from the card (None when the export did not calibrate one)."""
        return self.card.match_threshold

    @property
    def device(self) -> str:
        """The device the model runs on (`cpu`, `cuda`, `tensorrt`)."""
        return self.backend.device

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.card.embedding_dim

    def close(self) -> None:
        """Close the backend (when the Embedder opened it), after any call in progress."""
        with self._lock:
            if self._owns_backend:
                self.backend.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Embedder({self.backend!r}, batch_size={self.batch_size}, space={self._space!r})"

    # ----- embedding ----------------------------------------------------------------------------
    def embed(
        self,
        images: Any,
        modality: ModalityLike | Sequence[ModalityLike] | np.ndarray,
        *,
        bgr: bool = False,
        camera_ids: Any = None,
        track_ids: Any = None,
        thermal: ThermalScaling | str | None = None,
    ) -> Embeddings:
        """Embed person crops.

        Args:
            images: one crop, a list of crops (any sizes) or a `uint8 [N, h, w, 3|1]` batch; uint8 RGB
                `HxWx3` (or BGR with `bgr=True`), or `HxW`/`HxWx1` infrared. A batch already at the
                card's size is used without a copy.
            modality: one modality for all crops, or one per crop (`Modality`, `"rgb"`, `"ir"`, 0, 1...).
            bgr: crops are in OpenCV's BGR order.
            camera_ids: optional camera id per crop (or one for all), kept on the result.
            track_ids: optional tracker id per crop (or one for all), kept on the result.
            thermal: how uint16 (radiometric) thermal crops become 8-bit: a `ThermalScaling`,
                `"window:LOW:HIGH"` (raw values) or `"percentile:LOW:HIGH"`; needed only for them.

        Raises:
            InputSpecError: a crop, modality, tag or scaling does not fit; the message says which and why.
        """
        items = as_image_list(images)
        if thermal is not None:
            items = _scale_thermal(items, ThermalScaling.parse(thermal))
        n = len(items)
        codes = self._modality_codes(modality, n)
        size = self.card.input_size
        if not bgr and is_ready_batch(items, size):
            vectors = self._run(n, lambda start, stop: items[start:stop], codes)
        else:
            for i, image in enumerate(items):
                check_image(image, f"images[{i}]")

            def fill(start: int, stop: int) -> np.ndarray:
                out = self.backend.allocate_images(stop - start)
                return preprocess_crops(items[start:stop], size, bgr=bgr, out=out)

            vectors = self._run(n, fill, codes)
        return self._result(vectors, codes, camera_ids, track_ids)

    def embed_boxes(
        self,
        frame: np.ndarray,
        boxes: Any,
        modality: ModalityLike | Sequence[ModalityLike] | np.ndarray,
        *,
        bgr: bool = False,
        pad_value: int = 0,
        camera_ids: Any = None,
        track_ids: Any = None,
        thermal: ThermalScaling | str | None = None,
    ) -> Embeddings:
        """Crop `boxes` (`[K, 4]` x1, y1, x2, y2 pixels) from one frame and embed them.

        Boxes leaving the frame are clipped and padded with `pad_value`; see `vireid.preprocess`.
        A uint16 thermal frame is scaled to 8 bits by `thermal` as a whole, before cropping. Other
        arguments as in `embed`.
        """
        frame = check_image(thermal_to_8bit(frame, thermal), "frame")
        array = as_boxes(boxes)
        codes = self._modality_codes(modality, len(array))

        def fill(start: int, stop: int) -> np.ndarray:
            out = self.backend.allocate_images(stop - start)
            size = self.card.input_size
            return preprocess_boxes(frame, array[start:stop], size, bgr=bgr, pad_value=pad_value, out=out)

        vectors = self._run(len(array), fill, codes)
        return self._result(vectors, codes, camera_ids, track_ids)

    # ----- internals ----------------------------------------------------------------------------
    def _modality_codes(self, modality: Any, n: int) -> np.ndarray:
        """int32 `[n]` modality codes from one value or one per item, checked against the card."""
        if isinstance(modality, _SINGLE):
            codes = np.full(n, int(Modality.parse(_plain(modality))), dtype=np.int32)
        else:
            values = list(modality) if not isinstance(modality, np.ndarray) else modality.tolist()
            if len(values) != n:
                raise InputSpecError(
                    f"modality: got {len(values)} values for {n} images; pass one value or {n}"
                )
            codes = np.array([int(Modality.parse(_plain(v))) for v in values], dtype=np.int32)
        allowed = {int(m) for m in self.card.modalities}
        unsupported = sorted({str(Modality(c)) for c in codes.tolist() if c not in allowed})
        if unsupported:
            accepted = ", ".join(str(m) for m in self.card.modalities)
            raise InputSpecError(
                f"model {self.card.model_name} takes {accepted} crops only, got {', '.join(unsupported)}"
            )
        return codes

    def _run(self, n: int, fill: Callable[[int, int], np.ndarray], codes: np.ndarray) -> np.ndarray:
        vectors = np.empty((n, self.dim), dtype=np.float32)
        step = min(self.batch_size, self.backend.max_batch or self.batch_size)
        # the backend's lock too: its staging buffer is shared with every other user of the backend
        with self._lock, self.backend.call_lock:
            for start in range(0, n, step):
                stop = min(start + step, n)
                vectors[start:stop] = self.backend.infer(fill(start, stop), codes[start:stop])
        return vectors

    def _result(self, vectors: np.ndarray, codes: np.ndarray, camera_ids: Any, track_ids: Any) -> Embeddings:
        vectors = unit_model_output(vectors, self.backend.path)
        return Embeddings(
            vectors=vectors,
            modalities=codes.astype(np.int8),
            camera_ids=camera_ids,
            track_ids=track_ids,
            embedding_space=self._space,
        )


def _scale_thermal(items: Any, scaling: ThermalScaling) -> Any:
    """`items` with every uint16 crop scaled to 8 bits once (unchanged, without a copy, when none is)."""
    if not any(isinstance(image, np.ndarray) and image.dtype == np.uint16 for image in items):
        return items
    scaled = []
    for i, image in enumerate(items):
        try:
            scaled.append(thermal_to_8bit(image, scaling))
        except InputSpecError as exc:
            raise InputSpecError(f"images[{i}]: {exc}") from None
    return scaled


def _plain(value: Any) -> Any:
    """numpy integers → int so `Modality.parse` accepts them."""
    return int(value) if isinstance(value, np.integer) else value
