"""A Triton Inference Server model repository for an exported ONNX model or TensorRT engine.

```
REPO/NAME/config.pbtxt        platform onnxruntime_onnx | tensorrt_plan, dynamic batching
REPO/NAME/VERSION/model.onnx  (or model.plan, a copy of the engine)
REPO/NAME/vireid_card.json    the artifact's model card (Triton ignores extra files)
```

With `max_batch_size > 0` Triton adds the batch dimension itself, so `dims` leave it out: `images` is
`[H, W, 3]`, `embeddings` `[D]`, and `modality` — a plain `[N]` tensor in the model — is declared
`dims: [1]` with `reshape: { shape: [] }`. The configuration is written as text and can be checked
against Triton's own protobuf schema (`model_config.proto`, shipped in the `tritonclient` package).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from vireid import jsonio
from vireid.card import TRITON_CARD, ModelCard
from vireid.errors import ArtifactError, ConfigError, MissingDependencyError

from .artifact import log

PLATFORMS = {".onnx": ("onnxruntime_onnx", "model.onnx")}
PLATFORMS.update(dict.fromkeys((".engine", ".plan", ".trt"), ("tensorrt_plan", "model.plan")))
_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # used with fullmatch (`$` lets a final newline through)
_KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}


@dataclasses.dataclass(frozen=True)
class TritonModel:
    """What `to_triton` wrote: the model folder, its config file and the copied artifact."""

    directory: Path
    config: Path
    artifact: Path
    platform: str
    max_batch_size: int


def _platform(path: Path) -> tuple[str, str]:
    try:
        return PLATFORMS[path.suffix.lower()]
    except KeyError:
        raise ArtifactError(
            f"{path}: Triton can serve {sorted(PLATFORMS)} artifacts from vireid, not '{path.suffix}'"
        ) from None


def _max_batch(card: ModelCard, platform: str, max_batch: int | None) -> int:
    profile = card.profile
    if platform == "tensorrt_plan":
        if profile is None:
            raise ArtifactError("the engine's card has no batch profile; rebuild it with vireid")
        if profile.min != 1:
            dla = (
                " (a DLA engine has one fixed batch: only one built with batch=(1, 1, 1) serves, at "
                "max_batch_size 1)"
                if card.dla_core is not None
                else ""
            )
            raise ConfigError(
                f"Triton sends batches from 1 up to max_batch_size, but the engine's profile starts at "
                f"{profile.min}; rebuild it with batch=(1, opt, max){dla}"
            )
        limit = profile.max
        max_batch = limit if max_batch is None else max_batch
        if max_batch > limit:
            raise ConfigError(f"max_batch {max_batch} exceeds the engine profile's max batch {limit}")
    max_batch = 32 if max_batch is None else max_batch
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(f"max_batch must be a positive integer, got {max_batch!r}")
    return max_batch


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string literal is a protobuf text-format string


def _instance_group(card: ModelCard, instances: int, kind: str) -> str:
    """`instance_group`; a DLA engine's instances run on its DLA core, which Triton's TensorRT backend
    takes from a `KIND_NVDLA` secondary device of a GPU instance group."""
    if card.dla_core is None:
        return f"instance_group [ {{ count: {int(instances)} kind: {_KINDS[kind]} }} ]"
    if kind != "gpu":
        raise ConfigError(
            f"an engine built for DLA core {card.dla_core} is served by a GPU instance group, not {kind}"
        )
    return (
        f"instance_group [ {{ count: {int(instances)} kind: KIND_GPU "
        f"secondary_devices [ {{ kind: KIND_NVDLA device_id: {int(card.dla_core)} }} ] }} ]"
    )


def config_text(
    card: ModelCard,
    name: str,
    platform: str,
    max_batch: int,
    *,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 500,
    instances: int = 1,
    kind: str = "gpu",
) -> str:
    """The `config.pbtxt` text for a vireid artifact (Triton model-configuration text format)."""
    images, modality = card.input_names
    card_json = jsonio.dumps(card.to_dict(), sort_keys=True)
    preferred = sorted({int(b) for b in preferred_batch_sizes if 1 <= int(b) <= max_batch})
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {max_batch}",
        "input [",
        f"  {{ name: {_quote(images)} data_type: TYPE_UINT8 "
        f"dims: [ {card.input_height}, {card.input_width}, 3 ] }},",
        f"  {{ name: {_quote(modality)} data_type: TYPE_INT32 dims: [ 1 ] reshape: {{ shape: [ ] }} }}",
        "]",
        "output [",
        f"  {{ name: {_quote(card.output_name)} data_type: TYPE_FP32 dims: [ {card.embedding_dim} ] }}",
        "]",
        "dynamic_batching {",
        *([f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]"] if preferred else []),
        f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}",
        "}",
        _instance_group(card, instances, kind),
        "parameters {",
        f'  key: "vireid.card" value: {{ string_value: {_quote(card_json)} }}',
        "}",
    ]
    return "\n".join(lines) + "\n"


def to_triton(
    artifact: str | Path,
    repo_dir: str | Path,
    name: str,
    max_batch: int | None = None,
    *,
    version: int = 1,
    preferred_batch_sizes: Sequence[int] | None = None,
    max_queue_delay_us: int = 500,
    instances: int = 1,
    kind: str | None = None,
    validate: bool = True,
) -> TritonModel:
    """Add an exported `.onnx` or TensorRT engine to a Triton model repository.

    Args:
        artifact: `.onnx` (served by the onnxruntime backend) or `.engine`/`.plan` (tensorrt_plan; it
            must match the server's TensorRT version and GPU, and its profile must start at batch 1).
        repo_dir: the model repository root (created when missing).
        name: model name (folder name; letters, digits, `_`, `-`, `.`).
        max_batch: Triton's `max_batch_size`; default = the engine profile's max, or 32 for ONNX.
        version: version folder to write (an existing one is replaced).
        preferred_batch_sizes: dynamic-batching sizes; default = the profile's opt and max.
        max_queue_delay_us: how long Triton waits to fill a preferred batch.
        instances: model instances per device.
        kind: `gpu`, `cpu` or `auto`; default `gpu` for engines, `auto` for ONNX.
        validate: parse the config with Triton's schema when `tritonclient` is installed.

    Returns:
        A `TritonModel` naming what was written.
    """
    artifact = Path(artifact)
    check_model_name(name)
    if not isinstance(version, int) or version < 1:
        raise ConfigError(f"version must be a positive integer, got {version!r}")
    platform, filename = _platform(artifact)
    card = ModelCard.from_artifact(artifact)
    max_batch = _max_batch(card, platform, max_batch)
    kind = kind or ("gpu" if platform == "tensorrt_plan" else "auto")
    if kind not in _KINDS:
        raise ConfigError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    if preferred_batch_sizes is None:
        preferred_batch_sizes = [card.profile.opt, max_batch] if card.profile else [8, max_batch]
    text = config_text(
        card,
        name,
        platform,
        max_batch,
        preferred_batch_sizes=preferred_batch_sizes,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        kind=kind,
    )
    if validate:
        _validate_if_possible(text)
    model_dir = Path(repo_dir) / name
    version_dir = model_dir / str(version)
    if version_dir.exists():
        shutil.rmtree(version_dir)
    version_dir.mkdir(parents=True)
    shutil.copyfile(artifact, version_dir / filename)
    (model_dir / TRITON_CARD).write_text(card.to_json() + "\n", encoding="utf-8")
    config = model_dir / "config.pbtxt"
    config.write_text(text, encoding="utf-8")
    return TritonModel(model_dir, config, version_dir / filename, platform, max_batch)


def check_model_name(name: str) -> None:
    """Refuse a Triton model name that is not a plain folder name of the repository.

    Raises:
        ConfigError: the name has other characters than letters, digits, `_`, `-`, `.`, or starts with `.`.
    """
    if not _NAME.fullmatch(name) or name.startswith("."):
        raise ConfigError(
            f"Triton model name {name!r} may hold only letters, digits, '_', '-' and '.', and may not "
            "start with '.' (it names a folder of the model repository)"
        )


@lru_cache(maxsize=1)
def triton_schema() -> Any:
    """Triton's `model_config_pb2` module from the installed `tritonclient` package.

    Loaded from its file so the gRPC client (and `grpcio`) is not needed just to read the schema.

    Raises:
        MissingDependencyError: tritonclient is not installed (extras `export` / `dev`).
    """
    spec = importlib.util.find_spec("tritonclient")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "grpc" / "model_config_pb2.py"
        if path.is_file():
            module_spec = importlib.util.spec_from_file_location("vireid_triton_model_config_pb2", path)
            module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
            try:
                module_spec.loader.exec_module(module)  # type: ignore[union-attr]
            except ImportError as exc:  # tritonclient[http] comes without protobuf; only [grpc] has it
                raise MissingDependencyError(
                    "protobuf", "export", "Checking a Triton model configuration"
                ) from exc
            return module
    raise MissingDependencyError("tritonclient", "export", "Checking a Triton model configuration")


def parse_config(text: str) -> Any:
    """Parse `config.pbtxt` text into Triton's `inference.ModelConfig` message (raises ConfigError).

    Raises:
        MissingDependencyError: tritonclient or protobuf is not installed.
    """
    try:
        from google.protobuf import text_format
    except ImportError as exc:
        raise MissingDependencyError("protobuf", "export", "Checking a Triton model configuration") from exc

    schema = triton_schema()
    try:
        return text_format.Parse(text, schema.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"invalid Triton model configuration: {exc}") from None


def _validate_if_possible(text: str) -> None:
    try:
        parse_config(text)
    except MissingDependencyError:
        log.debug("tritonclient not installed; config.pbtxt written without schema validation")
