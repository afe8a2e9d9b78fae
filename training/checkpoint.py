"""Checkpoints: `safetensors` weights + a JSON description, never pickle.

`NAME.safetensors` holds the model's state dict and, for resumable checkpoints, the optimizer's tensor
state under `__optim__.<param index>.<key>` and the loss's learnable state (MeCen centres) under
`__criterion__.<key>`; `NAME.json` holds the model and training configs, epoch,
step, metrics, number of classes, the data fingerprint and the optimizer's non-tensor state.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vireid import jsonio
from vireid._version import __version__
from vireid.atomic import create_unique
from vireid.card import sha256_file
from vireid.errors import ArtifactError, require

FORMAT = "vireid.checkpoint"
FORMAT_VERSION = 1
_OPTIM = "__optim__."
_CRITERION = "__criterion__."


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: configs and metadata, the model state dict, optional optimizer state."""

    path: Path
    model_config: dict[str, Any]
    num_classes: int
    epoch: int
    step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    state_dict: dict[str, Any] = field(default_factory=dict, repr=False)
    criterion_state: dict[str, Any] = field(default_factory=dict, repr=False)
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)
    amp_scaler: dict[str, Any] = field(default_factory=dict, repr=False)
    """The mixed-precision gradient scaler's state (CUDA AMP runs' `last` checkpoints), for resuming."""
    computed_in: str | None = None
    """What the training steps computed in (`float32`, `bfloat16 autocast`, ...; None: not recorded)."""

    @property
    def sha256(self) -> str:
        """SHA-256 of the weights file (recorded in exported model cards)."""
        return sha256_file(self.path)


def paths_for(stem: str | Path) -> tuple[Path, Path]:
    """`(weights, description)` paths of a checkpoint given either file or the bare stem.

    Only a final `.safetensors` / `.json` is taken off: `model.best.safetensors` is the checkpoint
    `model.best`, never `model`.
    """
    stem = Path(stem)
    for suffix in (".safetensors", ".json"):
        if stem.name.endswith(suffix) and len(stem.name) > len(suffix):
            stem = stem.with_name(stem.name[: -len(suffix)])
            break
    return stem.with_name(f"{stem.name}.safetensors"), stem.with_name(f"{stem.name}.json")


def save_checkpoint(
    stem: str | Path,
    model_state: Mapping[str, Any],
    meta: Mapping[str, Any],
    optimizer_state: Mapping[str, Any] | None = None,
    criterion_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write `stem.safetensors` + `stem.json` atomically (temp files, then rename).

    Returns:
        The weights path.
    """
    safetensors_torch = require("safetensors.torch", "train", "Saving a checkpoint")
    weights, desc = paths_for(stem)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = _unshared({k: v.detach().contiguous().cpu() for k, v in model_state.items()})
    tensors.update(
        {f"{_CRITERION}{k}": v.detach().contiguous().cpu() for k, v in (criterion_state or {}).items()}
    )
    extra: dict[str, Any] = {}
    if optimizer_state is not None:
        for idx, state in optimizer_state["state"].items():
            for key, value in state.items():
                tensors[f"{_OPTIM}{idx}.{key}"] = value.detach().contiguous().cpu()
        extra["optimizer_param_groups"] = optimizer_state["param_groups"]
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vireid_version": __version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **meta,
        **extra,
    }
    # unique temp names (O_EXCL): a fixed `X.tmp` could be a planted symlink, or another save's file
    temps = [_temp_beside(weights)]
    try:
        temps.append(_temp_beside(desc))
        tmp_w, tmp_d = temps
        safetensors_torch.save_file(tensors, str(tmp_w))
        description["weights_sha256"] = sha256_file(tmp_w)  # ties the pair: see load_checkpoint
        tmp_d.write_text(jsonio.dumps(description, indent=2, default=_json_default), encoding="utf-8")
        for written in (tmp_w, tmp_d):  # on disk before the renames, so a power cut leaves one whole pair
            with written.open("rb") as fh:
                os.fsync(fh.fileno())
        tmp_w.replace(weights)
        tmp_d.replace(desc)
    finally:
        for leftover in temps:
            leftover.unlink(missing_ok=True)
    return weights


def _temp_beside(path: Path) -> Path:
    """A new, empty, uniquely named file in `path`'s folder (created exclusively, never followed)."""
    tmp, fd = create_unique(path)
    os.close(fd)
    return tmp


def _unshared(tensors: dict[str, Any]) -> dict[str, Any]:
    """Copies for tensors that share storage with an earlier one (tied weights, e.g. `psmg`'s shared
    branch convolutions): safetensors refuses shared memory; loading writes both keys into the one
    tied parameter again."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        pointer = value.untyped_storage().data_ptr() if value.numel() else -1
        out[key] = value.clone() if pointer in seen else value
        seen.add(pointer)
    return out


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def load_checkpoint(path: str | Path, with_optimizer: bool = False) -> Checkpoint:
    """Load a checkpoint written by `save_checkpoint` (either file of the pair may be given).

    Raises:
        ArtifactError: a file is missing, unreadable, or not a vireid checkpoint.
    """
    safetensors_torch = require("safetensors.torch", "train", "Loading a checkpoint")
    if Path(path).is_dir():
        raise ArtifactError(
            f"{path}: is a folder; pass a checkpoint inside it, e.g. {Path(path) / 'last.safetensors'}"
        )
    if Path(path).suffix.lower() not in ("", ".safetensors", ".json") and not paths_for(path)[0].is_file():
        raise ArtifactError(
            f"{path}: not a training checkpoint (a pair NAME.safetensors + NAME.json); this command needs "
            "the checkpoint the model was trained into (e.g. runs/demo/last.safetensors)"
        )
    weights, desc = paths_for(path)
    for needed in (weights, desc):
        if not needed.is_file():
            raise ArtifactError(
                f"{needed}: checkpoint file missing; a vireid checkpoint is a pair "
                "NAME.safetensors + NAME.json"
            )
    try:
        meta = json.loads(desc.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{desc}: checkpoint description is not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{desc}: not a vireid checkpoint description (format={meta.get('format')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ArtifactError(f"{desc}: checkpoint format {meta['format_version']} is newer; upgrade vireid")
    missing = [key for key in ("model_config", "num_classes") if key not in meta]
    if missing:
        raise ArtifactError(
            f"{desc}: checkpoint description lacks {', '.join(missing)}; it was edited or cut short: "
            "restore it from the run folder (vireid writes it next to the .safetensors)"
        )
    try:
        tensors = safetensors_torch.load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ArtifactError(f"{weights}: cannot read weights ({exc}); the file may be truncated") from None
    recorded = meta.get("weights_sha256")
    if recorded is not None and recorded != sha256_file(weights):
        raise ArtifactError(
            f"{weights}: these weights are not the ones {desc.name} describes (the two files come from "
            "different saves: a save interrupted between its two renames, or a file copied over). Restore "
            "the pair from a backup, or use the run's other checkpoint (best/last)"
        )
    state = {k: v for k, v in tensors.items() if not k.startswith((_OPTIM, _CRITERION))}
    criterion = {k[len(_CRITERION) :]: v for k, v in tensors.items() if k.startswith(_CRITERION)}
    optim = _optimizer_state(tensors, meta) if with_optimizer else None
    return Checkpoint(
        path=weights,
        model_config=meta["model_config"],
        num_classes=int(meta["num_classes"]),
        epoch=int(meta.get("epoch", 0)),
        step=int(meta.get("step", 0)),
        metrics=meta.get("metrics", {}),
        train_config=meta.get("train_config", {}),
        data=meta.get("data", {}),
        state_dict=state,
        criterion_state=criterion,
        optimizer_state=optim,
        amp_scaler=meta.get("amp_scaler") or {},
        computed_in=meta.get("computed_in"),
    )


def _optimizer_state(tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any] | None:
    if "optimizer_param_groups" not in meta:
        return None
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            idx, name = key[len(_OPTIM) :].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["optimizer_param_groups"]}


def load_weights(model: Any, ckpt: Checkpoint, what: str = "the model its description names") -> None:
    """Load `ckpt`'s weights into `model`.

    Raises:
        ArtifactError: they do not fit; the message counts the missing, unexpected and mis-shaped
            tensors and names a few, instead of torch's list of every key.
    """
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        config = ckpt.model_config
        raise ArtifactError(
            f"{ckpt.path}: the weights do not fit {what} ({config.get('name')}, {config.get('backbone')}): "
            f"{_mismatch_summary(str(exc))}. The .safetensors and .json files of a checkpoint must come "
            "from the same save, and a resumed run needs the config it was started with."
        ) from None


def _mismatch_summary(text: str) -> str:
    parts = []
    for label, noun in (("Missing key(s)", "missing"), ("Unexpected key(s)", "unexpected")):
        found = re.search(re.escape(label) + r" in state_dict: (.*?)\.\s*(?:\n|$)", text)
        if found:
            keys = re.findall(r'"([^"]+)"', found.group(1))
            parts.append(f"{len(keys)} {noun} tensors (e.g. {', '.join(keys[:3])})")
    shapes = re.findall(r"size mismatch for ([^:]+):", text)
    if shapes:
        parts.append(f"{len(shapes)} of another shape (e.g. {', '.join(shapes[:3])})")
    return "; ".join(parts) or text.splitlines()[0][:300]
