"""`TrainConfig`: typed, validated training configuration read from YAML at the edge.

Every section is a frozen dataclass; an unknown key, a wrong type or an out-of-range value raises
`ConfigError` naming the dotted key (`optim.lr`) and what was expected.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vireid.errors import ConfigError

log = logging.getLogger("vireid.train")

OPTIMIZERS = ("sgd", "adamw")
MODEL_LOSS_WEIGHTS = (
    "center_alignment",
    "hetero_triplet",
    "center_cluster",
    "mutual_mean",
    "pattern_diversity",
)


VAL_SPLITS = ("test", "val")
CPU_PRECISIONS = ("fp32", "bf16", "auto")
"""`run.cpu_precision`: float32, bfloat16 autocast always, or bfloat16 where the CPU has AMX units."""
VAL_PROTOCOLS = {"sysu": ("sysu-all", "sysu-indoor"), "regdb": ("regdb-v2t", "regdb-t2v")}
"""Protocols the periodic validation can run per dataset; the first is the default."""
DEFAULT_VAL_PROTOCOL = {dataset: protocols[0] for dataset, protocols in VAL_PROTOCOLS.items()}


@dataclass(frozen=True)
class DataConfig:
    """Which dataset layout to read and how to validate during training."""

    dataset: str = "sysu"  # sysu | regdb
    regdb_trial: int = 1
    val_protocol: str | None = None  # periodic validation; None: sysu-all for SYSU, regdb-v2t for RegDB
    val_trials: int = 1
    val_split: str = "test"  # test: train on train+val ids, validate on test ids (the reference code);
    # val (SYSU): train on the train ids only, validate on the held-out val ids, so `best` never sees test


@dataclass(frozen=True)
class SamplerConfig:
    """P identities x K images per modality in every batch (visible half, then infrared half)."""

    num_ids: int = 8
    num_instances: int = 4
    iters_per_epoch: int | None = None  # default: visible training images / (P*K)


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (all probabilities in [0, 1])."""

    pad: int = 10
    flip: float = 0.5
    erasing: float = 0.5
    channel_exchange: float = 0.0  # visible images: replace RGB by one random channel
    grayscale: float = 0.0  # visible images: convert to grey (3 equal channels)
    lowres: float = 0.0  # visible images: down-sample by 0.4-0.8 and back, like a thermal sensor
    intensity_remap: float = 0.0  # both modalities: grey through a random curve (brightness order lost)


@dataclass(frozen=True)
class MeCenConfig:
    """MeCen loss switches; `center` alone is the plain centre loss (ablation: gid → +center → …)."""

    weight: float = 1.0
    center: bool = True
    margin: bool = True
    exp: bool = True
    m: float = 0.1
    clamp: float = 10.0


@dataclass(frozen=True)
class LossConfig:
    """Loss weights: `gid` on the global feature, `pid` per part, MeCen and an optional triplet."""

    gid: float = 1.0
    pid: float = 1.0
    label_smoothing: float = 0.0
    mecen: MeCenConfig = field(default_factory=MeCenConfig)
    triplet: float = 0.0
    triplet_margin: float = 0.3
    # The other seed models' losses; null = the model's default (psmg: center_alignment and
    # hetero_triplet 1.0; mpanet: mutual_mean, center_cluster and pattern_diversity 1.0; else 0).
    center_alignment: float | None = None
    hetero_triplet: float | None = None
    hetero_margin: float = 0.3
    center_cluster: float | None = None
    center_margin: float = 0.5
    mutual_mean: float | None = None
    pattern_diversity: float | None = None


@dataclass(frozen=True)
class OptimConfig:
    """SGD (the paper's recipe) or AdamW, with linear warm-up and step decay (epochs)."""

    name: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    backbone_lr: float = 0.01  # used for pretrained backbone parameters only
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 80
    warmup_epochs: int = 10
    milestones: tuple[int, ...] = (20, 50)
    gamma: float = 0.1
    schedule: str = "step"  # step: ×gamma at each milestone; cosine: half a cosine from warm-up to the end
    grad_clip: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """Seeds, devices, logging and checkpointing."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # float16 mixed precision with loss scaling, on CUDA
    cpu_precision: str = "fp32"  # on CPU: fp32 | bf16 | auto (bfloat16 autocast where the CPU has AMX)
    threads: int | None = None  # torch intra-op threads on CPU (default: all available cores)
    eval_every: int = 5  # epochs; 0 disables periodic validation
    log_every: int = 20  # iterations
    eval_batch: int = 64
    progress: bool = True
    image_cache_gib: float = 6.0  # decoded training images kept in RAM up to this size (0: decode per batch)


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration. `model` is the model registry's own config (validated there)."""

    model: Mapping[str, Any] = field(default_factory=lambda: {"name": "mspac"})
    data: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-serialisable dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build from nested dicts, naming the dotted key of any problem."""
        return _build(cls, data, prefix="", source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file (the `train` extra provides PyYAML)."""
        from vireid.errors import require

        yaml = require("yaml", "train", "Reading a training config")
        path = _locate(Path(path))
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        return cls.from_dict(data, source=str(path))

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """A copy with dotted keys replaced, e.g. `{"optim.epochs": 3}`."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                if key in node and not isinstance(node[key], dict):
                    raise ConfigError(f"override {dotted!r}: {key!r} is a value, not a config section")
                if not isinstance(node.get(key), dict):
                    sections = ", ".join(k for k, v in node.items() if isinstance(v, dict))
                    raise ConfigError(
                        f"override {dotted!r}: {key!r} is not a config section; sections here: {sections}"
                    )
                node = node[key]
            node[leaf] = value
        return TrainConfig.from_dict(data, source="overrides")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def bundled_configs() -> dict[str, Path]:
    """The configs shipped with vireid (the repository's `configs/`), by name without `.yaml`."""
    from importlib.resources import files

    try:
        folder = Path(str(files("vireid.training.configs")))
    except ModuleNotFoundError:  # an install made before the configs were packaged
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def _locate(path: Path) -> Path:
    """`path` itself, else the bundled config it names (`demo_cpu`, `demo_cpu.yaml` or
    `configs/demo_cpu.yaml` as the docs write it, from any folder)."""
    if path.is_file():
        return path
    bundled = bundled_configs()
    names_a_bundled = len(path.parts) == 1 or (len(path.parts) == 2 and path.parts[0] == "configs")
    stem = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if names_a_bundled and stem in bundled:
        log.info("config %s: using the one shipped with vireid, %s", path, bundled[stem])
        return bundled[stem]
    raise ConfigError(
        f"{path}: config file not found; give a YAML file or the name of a bundled config: "
        f"{', '.join(bundled) or '(none installed)'}"
    )


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {prefix or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{prefix}{unknown[0]}"
        raise ConfigError(f"{source}: unknown key {where!r}; known keys here: {sorted(known)}")
    kwargs = {name: _coerce(hints[name], value, f"{prefix}{name}", source) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.", source=source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key, source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, key, source) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, bool, str) and type(value) is not hint:
        hint_text = ""
        if hint is float and isinstance(value, str) and _is_number(value):  # YAML 1.1: 1e-3 is not a float
            hint_text = f"; YAML reads {value} as text: write {_yaml_float(value)}"
        if hint is str and isinstance(value, bool):  # YAML 1.1: off, no, on, yes are booleans
            hint_text = "; YAML reads on/off/yes/no unquoted as a boolean: quote the word"
        raise ConfigError(
            f"{source}: {key} must be {hint.__name__}, got {value!r} ({type(value).__name__}){hint_text}"
        )
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key} must be a mapping, got {value!r}")
        return dict(value)
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _yaml_float(text: str) -> str:
    """`1e-3` -> `1.0e-3`: the spelling YAML 1.1 (PyYAML) reads as a float."""
    mantissa, sep, exponent = text.lower().partition("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}{sep}{exponent}"


def _check(condition: bool, key: str, expected: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{key} must be {expected}, got {value!r}")


def _validate(cfg: TrainConfig) -> None:
    _check(cfg.data.dataset in ("sysu", "regdb"), "data.dataset", "'sysu' or 'regdb'", cfg.data.dataset)
    _check(1 <= cfg.data.regdb_trial <= 10, "data.regdb_trial", "in 1..10", cfg.data.regdb_trial)
    _check(
        cfg.data.regdb_trial == 1 or cfg.data.dataset == "regdb",
        "data.regdb_trial",
        "left at 1 for SYSU-MM01 (it picks a RegDB split; set data.dataset: regdb)",
        cfg.data.regdb_trial,
    )
    _check(cfg.data.val_trials >= 1, "data.val_trials", ">= 1", cfg.data.val_trials)
    _check(cfg.data.val_split in VAL_SPLITS, "data.val_split", f"one of {VAL_SPLITS}", cfg.data.val_split)
    _check(
        cfg.data.val_split == "test" or cfg.data.dataset == "sysu",
        "data.val_split",
        "test for RegDB (its splits have no val identities)",
        cfg.data.val_split,
    )
    precision = cfg.run.cpu_precision
    _check(precision in CPU_PRECISIONS, "run.cpu_precision", f"one of {', '.join(CPU_PRECISIONS)}", precision)
    _check(cfg.sampler.num_ids >= 2, "sampler.num_ids", ">= 2", cfg.sampler.num_ids)
    _check(cfg.sampler.num_instances >= 1, "sampler.num_instances", ">= 1", cfg.sampler.num_instances)
    iters = cfg.sampler.iters_per_epoch
    _check(iters is None or iters >= 1, "sampler.iters_per_epoch", ">= 1 or null", iters)
    for name in ("flip", "erasing", "channel_exchange", "grayscale", "lowres", "intensity_remap"):
        value = getattr(cfg.augment, name)
        _check(0.0 <= value <= 1.0, f"augment.{name}", "a probability in [0, 1]", value)
    _check(cfg.augment.pad >= 0, "augment.pad", ">= 0", cfg.augment.pad)
    _check(cfg.optim.name in OPTIMIZERS, "optim.name", f"one of {', '.join(OPTIMIZERS)}", cfg.optim.name)
    _check(cfg.optim.lr > 0, "optim.lr", "> 0", cfg.optim.lr)
    _check(cfg.optim.backbone_lr > 0, "optim.backbone_lr", "> 0", cfg.optim.backbone_lr)
    _check(cfg.optim.epochs >= 1, "optim.epochs", ">= 1", cfg.optim.epochs)
    _check(cfg.optim.warmup_epochs >= 0, "optim.warmup_epochs", ">= 0", cfg.optim.warmup_epochs)
    _check(
        cfg.optim.schedule in ("step", "cosine"), "optim.schedule", "'step' or 'cosine'", cfg.optim.schedule
    )
    if cfg.optim.schedule == "cosine":
        warmup, epochs = cfg.optim.warmup_epochs, cfg.optim.epochs
        _check(
            warmup < epochs, "optim.warmup_epochs", f"< optim.epochs ({epochs}) for a cosine schedule", warmup
        )
    ms = list(cfg.optim.milestones)
    _check(ms == sorted(ms), "optim.milestones", "increasing epochs", ms)
    _check(0 <= cfg.loss.label_smoothing < 1, "loss.label_smoothing", "in [0, 1)", cfg.loss.label_smoothing)
    _check(cfg.loss.mecen.clamp > 0, "loss.mecen.clamp", "> 0", cfg.loss.mecen.clamp)
    for name in ("gid", "pid", "triplet", *MODEL_LOSS_WEIGHTS):
        value = getattr(cfg.loss, name)
        _check(
            value is None or (math.isfinite(value) and value >= 0),
            f"loss.{name}",
            "a finite weight >= 0",
            value,
        )
    _check(
        0 < cfg.loss.hetero_margin <= 2,
        "loss.hetero_margin",
        "in (0, 2] (unit features)",
        cfg.loss.hetero_margin,
    )
    _check(
        0 < cfg.loss.center_margin <= 2,
        "loss.center_margin",
        "in (0, 2] (unit features)",
        cfg.loss.center_margin,
    )
    gamma = cfg.optim.gamma
    _check(gamma > 0, "optim.gamma", "> 0 (the learning rate's factor at each milestone)", gamma)
    _check(cfg.optim.momentum >= 0, "optim.momentum", ">= 0", cfg.optim.momentum)
    _check(cfg.optim.weight_decay >= 0, "optim.weight_decay", ">= 0", cfg.optim.weight_decay)
    clip = cfg.optim.grad_clip
    _check(clip is None or clip >= 0, "optim.grad_clip", ">= 0 (0 or null: no clipping)", clip)
    _check(cfg.run.eval_every >= 0, "run.eval_every", ">= 0", cfg.run.eval_every)
    _check(cfg.run.log_every >= 1, "run.log_every", ">= 1 (iterations)", cfg.run.log_every)
    _check(cfg.run.eval_batch >= 1, "run.eval_batch", ">= 1", cfg.run.eval_batch)
    cache = cfg.run.image_cache_gib
    _check(math.isfinite(cache) and cache >= 0, "run.image_cache_gib", ">= 0 (GiB; 0: per batch)", cache)
    threads = cfg.run.threads
    _check(threads is None or threads >= 0, "run.threads", ">= 0 (0 or null: all available cores)", threads)
    protocols = VAL_PROTOCOLS.get(cfg.data.dataset, ())
    _check(
        not protocols or cfg.data.val_protocol is None or cfg.data.val_protocol in protocols,
        "data.val_protocol",
        f"one of {', '.join(protocols)} for data.dataset {cfg.data.dataset}",
        cfg.data.val_protocol,
    )
    _check(
        isinstance(cfg.model, Mapping) and "name" in cfg.model, "model", "a mapping with 'name'", cfg.model
    )
