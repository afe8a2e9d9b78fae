"""Evaluating a checkpoint or any exported artifact on the standard protocols.

Every model kind sees the same images through the same host-side preprocessing (`load_resized`: RGB,
bilinear resize to the model's input size; normalisation happens inside the model): checkpoints run in
PyTorch (`TorchEmbedder`), `.onnx` (FP32, FP16, INT8) and `.engine` files through the runtime backend
that deployment uses (`ArtifactEmbedder`), so a score difference is the artifact's, not the pipeline's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vireid.errors import ConfigError
from vireid.modality import Modality
from vireid.rerank import Rerank

from .data.protocols import EmbedFn, ProtocolResult, run_protocol
from .images import load_resized

log = logging.getLogger("vireid.evaluate")


class _ImageEmbedder:
    """Embeds image files of one modality (an `EmbedFn`); `flip=True` averages each image's embedding
    with its mirror image's (test-time augmentation, twice the inference)."""

    input_size: tuple[int, int]
    batch_size: int = 64
    flip: bool = False

    def _infer(self, images: np.ndarray, modalities: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed_arrays(self, images: np.ndarray, modality: Modality | np.ndarray) -> np.ndarray:
        """Embed `uint8 [N, H, W, 3]` images; returns float32 `[N, D]`."""
        modalities = np.ascontiguousarray(np.broadcast_to(np.asarray(modality, np.int32), (len(images),)))
        vectors = self._infer(images, modalities)
        if self.flip and len(images):
            vectors = vectors + self._infer(np.ascontiguousarray(images[:, :, ::-1]), modalities)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors

    def __call__(self, paths: Sequence[Path], modality: Modality) -> np.ndarray:
        """Embed image files a batch at a time: only one batch of decoded images is held (a whole
        SYSU-MM01 query set at 288x144 is about 0.5 GB, twice that with `flip`)."""
        parts = []
        for start in range(0, len(paths), self.batch_size):
            chunk = paths[start : start + self.batch_size]
            images = np.stack([load_resized(p, self.input_size) for p in chunk])
            parts.append(self.embed_arrays(images, modality))
        return np.concatenate(parts)


class TorchEmbedder(_ImageEmbedder):
    """Embeds image files with a PyTorch model in eval mode, in batches (an `EmbedFn`)."""

    def __init__(
        self,
        model: Any,
        input_size: tuple[int, int],
        batch_size: int = 64,
        device: str = "cpu",
        flip: bool = False,
    ) -> None:
        self.model, self.input_size, self.batch_size, self.device = model, input_size, batch_size, device
        self.flip = flip

    def _infer(self, images: np.ndarray, modalities: np.ndarray) -> np.ndarray:
        import torch

        was_training = self.model.training
        self.model.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size]))
                mods = torch.tensor(modalities[start : start + self.batch_size])  # copied: a read-only view
                out.append(self.model(batch.to(self.device), mods.to(self.device)).float().cpu().numpy())
        self.model.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class ArtifactEmbedder(_ImageEmbedder):
    """Embeds image files with an exported artifact through `vireid.open_backend` (an `EmbedFn`)."""

    def __init__(
        self, path: str | Path, device: str = "cpu", batch_size: int = 64, flip: bool = False, **options: Any
    ) -> None:
        from vireid.backends import open_backend

        self.backend = open_backend(path, device, **options)
        self.input_size = self.backend.card.input_size
        self.batch_size, self.flip = batch_size, flip

    def _infer(self, images: np.ndarray, modalities: np.ndarray) -> np.ndarray:
        out = [
            self.backend.infer(
                np.ascontiguousarray(images[i : i + self.batch_size]), modalities[i : i + self.batch_size]
            )
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.backend.card.embedding_dim), np.float32)

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()


CHECKPOINT_SUFFIXES = (".safetensors", ".json")


def is_checkpoint(path: str | Path) -> bool:
    """A training checkpoint (evaluated in PyTorch) rather than an exported artifact."""
    return Path(path).suffix.lower() in CHECKPOINT_SUFFIXES


def regdb_training_split(checkpoint: str | Path) -> int | None:
    """The RegDB split a checkpoint was trained on (its `train_config`), or None (not RegDB, or unknown).

    Reads only the checkpoint's JSON description, so it needs no torch.
    """
    from .checkpoint import paths_for

    try:
        meta = json.loads(paths_for(checkpoint)[1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    data = (meta.get("train_config") or {}).get("data") or {}
    return int(data.get("regdb_trial", 1)) if data.get("dataset") == "regdb" else None


def regdb_splits(models: Sequence[str | Path], split: int | None, trials: int | None) -> list[int] | int:
    """The RegDB splits to evaluate `models` on, refusing combinations that would test on trained ids.

    RegDB's ten splits share identities: split k's test identities are other splits' training
    identities. A model trained on split k is therefore only cleanly evaluated on split k (the
    literature trains ten models and averages them). `split` picks one split; `trials` averages splits
    1..trials, allowed only for models whose training split is unknown (exported artifacts).

    Raises:
        ConfigError: a checkpoint trained on RegDB would be evaluated on another split.
    """
    trained = {str(m): s for m in models if is_checkpoint(m) and (s := regdb_training_split(m)) is not None}
    if split is not None and trials is not None:
        raise ConfigError("give --split (one RegDB split) or --trials (splits 1..N), not both")
    wanted = [split] if split is not None else None
    if wanted is None and trained:
        if trials is not None:  # --trials N means splits 1..N, as --help says, also for N = 1
            wanted = list(range(1, trials + 1))
        else:
            wanted = sorted(set(trained.values()))[:1]
            log.info("RegDB: evaluating split %d, the split the checkpoint was trained on", wanted[0])
    for model, own in trained.items():
        if wanted is not None and wanted != [own]:
            raise ConfigError(
                f"{model} was trained on RegDB split {own}; the test identities of split(s) "
                f"{[s for s in wanted if s != own]} include identities it trained on, so the numbers would "
                f"be inflated. Evaluate with --split {own} (to report 10 splits, train one model per split "
                "and average them)"
            )
    if wanted is not None:
        return wanted
    if trials is None:
        log.warning(
            "RegDB: averaging splits 1..10 with a model whose training split is unknown; a model trained on "
            "one split has seen the other splits' test identities: pass --split N for its own split"
        )
    return trials or 10


def evaluate_any(
    model: str | Path,
    data_root: str | Path,
    protocol: str,
    shots: int = 1,
    trials: int | Sequence[int] = 10,
    batch_size: int = 64,
    device: str = "auto",
    reverse: bool = False,
    *,
    flip: bool = False,
    rerank: Rerank | None = None,
) -> ProtocolResult:
    """Run a protocol with a checkpoint (PyTorch) or an artifact (`.onnx`, `.engine`; runtime backend).

    `device` for artifacts is a runtime device (`auto`, `cpu`, `cuda`, `tensorrt`); for checkpoints a
    torch device (`auto`, `cpu`, `cuda`, `cuda:N`). `flip` averages each image's embedding with its
    mirror image's; `rerank` ranks by k-reciprocal re-ranking (both test-time options the field reports
    separately; the result records them).
    """
    results = evaluate_directions(
        model, data_root, protocol, shots, trials, batch_size, device, (reverse,), flip=flip, rerank=rerank
    )
    return results[reverse]


def evaluate_directions(
    model: str | Path,
    data_root: str | Path,
    protocol: str,
    shots: int = 1,
    trials: int | Sequence[int] = 10,
    batch_size: int = 64,
    device: str = "auto",
    directions: Sequence[bool] = (False, True),
    *,
    flip: bool = False,
    rerank: Rerank | None = None,
) -> dict[bool, ProtocolResult]:
    """`evaluate_any` in each direction (`reverse` False, True) with the model loaded once and every
    image embedded once: both directions use the same query and gallery images."""
    with _embedder_for(model, device, batch_size, flip) as embed:
        once = _EmbedOnce(embed)
        return {
            reverse: dataclasses.replace(
                run_protocol(
                    once, data_root, protocol, shots=shots, trials=trials, reverse=reverse, rerank=rerank
                ),
                flip=flip,
            )
            for reverse in directions
        }


@contextlib.contextmanager
def _embedder_for(model: str | Path, device: str, batch_size: int, flip: bool) -> Iterator[EmbedFn]:
    if is_checkpoint(model):
        from .trainer import resolve_device

        resolved = str(resolve_device(device))
        net, input_size = load_model(model, resolved)
        yield TorchEmbedder(net, input_size, batch_size, resolved, flip)
        return
    embedder = ArtifactEmbedder(model, device, batch_size, flip)
    try:
        yield embedder
    finally:
        embedder.close()


class _EmbedOnce:
    """An `EmbedFn` that remembers each (path, modality)'s vector, so a second protocol run reuses it."""

    def __init__(self, embed: EmbedFn) -> None:
        self._embed = embed
        self._seen: dict[tuple[Path, int], np.ndarray] = {}

    def __call__(self, paths: Sequence[Path], modality: Modality) -> np.ndarray:
        todo = [p for p in dict.fromkeys(paths) if (p, int(modality)) not in self._seen]
        if todo:
            vectors = np.asarray(self._embed(todo, modality), np.float32)
            self._seen.update({(p, int(modality)): v for p, v in zip(todo, vectors, strict=True)})
        return np.stack([self._seen[(p, int(modality))] for p in paths])


def evaluate_model(
    model: Any,
    input_size: tuple[int, int],
    data_root: str | Path,
    protocol: str,
    shots: int = 1,
    trials: int | Sequence[int] = 10,
    batch_size: int = 64,
    device: str = "cpu",
    reverse: bool = False,
    split: str = "test",
) -> ProtocolResult:
    """Run a protocol on a dataset folder with an in-memory PyTorch model (`split="val"`: on the
    SYSU val identities, for validation during training)."""
    embedder = TorchEmbedder(model, input_size, batch_size, device)
    return run_protocol(
        embedder, data_root, protocol, shots=shots, trials=trials, reverse=reverse, split=split
    )


def load_model(checkpoint: str | Path, device: str = "cpu") -> tuple[Any, tuple[int, int]]:
    """Rebuild a checkpoint's model in eval mode on `device`; returns `(model, input_size)`."""
    from .checkpoint import load_checkpoint, load_weights
    from .factory import input_size_of
    from .models.build import build_model_from_config

    ckpt = load_checkpoint(checkpoint)
    model = build_model_from_config(ckpt.model_config, ckpt.num_classes)
    load_weights(model, ckpt)
    return model.to(device).eval(), input_size_of(ckpt.model_config)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_root: str | Path,
    protocol: str,
    shots: int = 1,
    trials: int | Sequence[int] = 10,
    batch_size: int = 64,
    device: str = "auto",
    reverse: bool = False,
) -> ProtocolResult:
    """Run a protocol on a dataset folder with the model stored in a checkpoint."""
    from .trainer import resolve_device

    resolved = str(resolve_device(device))
    model, input_size = load_model(checkpoint, resolved)
    return evaluate_model(
        model, input_size, data_root, protocol, shots, trials, batch_size, resolved, reverse
    )
