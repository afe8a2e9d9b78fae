"""The training loop: cross-modal P×K batches, SGD with warm-up and steps, AMP on CUDA (bfloat16 on AMX
CPUs), exact resume, periodic validation, best/last checkpoints, JSONL metrics, DistributedDataParallel
under torchrun.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vireid import jsonio
from vireid.atomic import write_atomic
from vireid.errors import ConfigError, DeviceError, TrainingError
from vireid.progress import progress

from ._needs_torch import torch
from .augment import augment
from .checkpoint import load_checkpoint, load_weights, paths_for, save_checkpoint
from .config import DEFAULT_VAL_PROTOCOL, TrainConfig
from .data.imageset import ImageSet
from .evaluate import evaluate_model
from .factory import (
    build_criterion,
    build_model,
    check_training_config,
    data_fingerprint,
    input_size_of,
    training_images,
)
from .images import ImageStore
from .models.base import ReIDModel
from .models.heads import GeM
from .precision import autocast_dtype
from .sampler import CrossModalIdentitySampler
from .schedule import lr_factor

nn = torch.nn
log = logging.getLogger("vireid.train")

_DTYPE_NAMES: dict[torch.dtype | None, str] = {
    torch.float16: "float16 autocast",
    torch.bfloat16: "bfloat16 autocast",
}

_KEEP_PRECISION = {  # (what the earlier epochs computed in, this run's device type) -> the setting
    ("float32", "cpu"): "--set run.cpu_precision=fp32",
    ("bfloat16 autocast", "cpu"): "--set run.cpu_precision=bf16",
    ("float32", "cuda"): "--set run.amp=false",
    ("float16 autocast", "cuda"): "--set run.amp=true",
}

MAX_NONFINITE_STEPS = 20
"""Consecutive steps with NaN/inf gradients (without AMP, which skips them by design) that stop a run."""


@dataclass(frozen=True)
class TrainResult:
    """Where a run left its checkpoints and what it measured."""

    run_dir: Path
    last: Path
    best: Path | None
    epochs_run: int
    best_metrics: dict[str, float | int | str] = field(default_factory=dict)
    seconds: float = 0.0
    computed_in: str = "float32"  # or "bfloat16 autocast" / "float16 autocast" (run.cpu_precision, run.amp)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present (and says so); an explicit unavailable device raises."""
    if name == "auto":
        chosen = "cuda" if torch.cuda.is_available() else "cpu"
        logging.getLogger("vireid").info("device auto -> %s", chosen)  # training and evaluation alike
        return torch.device(chosen)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} was requested but torch sees no CUDA device; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None


def process_group_backend(device: torch.device) -> str:
    """NCCL for CUDA training, gloo otherwise: by the device the run trains on, not by whether the
    machine has a GPU (NCCL cannot reduce CPU tensors, so `run.device: cpu` on a CUDA machine needs gloo)."""
    return "nccl" if device.type == "cuda" else "gloo"


def _distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=process_group_backend(device))
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _rank_device(device: torch.device, world: int) -> torch.device:
    """Under torchrun with CUDA, each process takes the GPU `LOCAL_RANK` (one GPU per process)."""
    if world == 1 or device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.index is not None and device.index != local:
        log.warning(
            "device %s ignored under torchrun: process %d uses cuda:%d (LOCAL_RANK)", device, local, local
        )
    device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    return device


class Trainer:
    """One training run; build with `Trainer(config, data_root, out_dir)` then call `fit()`."""

    def __init__(
        self,
        config: TrainConfig,
        data_root: str | Path,
        out_dir: str | Path,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.cfg, self.data_root, self.out_dir = config, Path(data_root), Path(out_dir)
        device = resolve_device(config.run.device)
        self.rank, self.world = _distributed(device)
        self._replaces_run = _check_run_folder(self.out_dir, resume, overwrite)
        self.device = _rank_device(device, self.world)
        self._autocast = autocast_dtype(self.device, config.run.amp, config.run.cpu_precision)
        self._resumed_from_precision = ""  # "<what the resumed epochs computed in> to epoch N, then "
        if config.run.threads:
            torch.set_num_threads(config.run.threads)
        torch.manual_seed(config.run.seed)
        check_training_config(config, with_pretrained=not resume)  # before the images are decoded
        self.train_set, self.labels, self.num_classes = self._load_train_set()
        self.input_size = input_size_of(config.model)
        self.store = ImageStore(
            self.train_set.paths,
            self.input_size,
            cache_bytes=int(config.run.image_cache_gib * (1 << 30)),
            show_progress=self._chatty,
        )
        self.sampler = CrossModalIdentitySampler(
            self.labels,
            self.train_set.modalities,
            config.sampler.num_ids,
            config.sampler.num_instances,
            config.sampler.iters_per_epoch,
            seed=config.run.seed,
            rank=self.rank,
        )
        # Channels-last weights: the images arrive NHWC, so every convolution then runs without
        # reordering its filters or activations (12 % faster steps on the 2-core CPU, demo config).
        model = build_model(config.model, self.num_classes, with_pretrained=not resume)  # resume: ckpt
        # torch's Module.to overloads omit memory_format, which it takes at runtime
        self.model: ReIDModel = model.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.criterion = build_criterion(config, self.num_classes, self.model).to(self.device)
        self.optimizer = self._optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self._amp)
        self._nonfinite_run = 0  # consecutive steps with NaN/inf gradients (without AMP)
        self.start_epoch, self.step, self.best_score = 1, 0, -math.inf
        self.best_metrics: dict[str, float | int | str] = {}
        if resume:
            self._resume()
        self.net = self._wrap_ddp()

    # ----- setup ------------------------------------------------------------------------------------
    @property
    def _chatty(self) -> bool:
        return self.rank == 0 and self.cfg.run.progress

    @property
    def _amp(self) -> bool:
        """float16 autocast with loss scaling (CUDA); bfloat16 on a CPU needs no scaler."""
        return self._autocast == torch.float16

    @property
    def _computed_in(self) -> str:
        """What the steps computed in, with the earlier epochs' type when a resume changed it."""
        return self._resumed_from_precision + _DTYPE_NAMES.get(self._autocast, "float32")

    def _check_resumed_precision(self, ckpt: Any, last: Path) -> None:
        """Warn when the resumed run computes in another type than its first epochs did (`auto` resolved
        otherwise on this machine, or the config changed): it no longer equals an uninterrupted run."""
        now = _DTYPE_NAMES.get(self._autocast, "float32")
        if ckpt.computed_in is None:
            return
        latest = ckpt.computed_in.rpartition(", then ")[2]  # an earlier resume may have changed it too
        if latest == now:
            self._resumed_from_precision = ckpt.computed_in[: len(ckpt.computed_in) - len(latest)]
            return
        log.warning(
            "--resume: %s trained its epochs 1-%d in %s, this run goes on in %s: the result will not "
            "equal an uninterrupted run; to continue as it started: %s",
            last,
            ckpt.epoch,
            latest,
            now,
            _KEEP_PRECISION.get((latest, self.device.type), f"train on a device that computes in {latest}"),
        )
        self._resumed_from_precision = f"{ckpt.computed_in} to epoch {ckpt.epoch}, then "

    def _load_train_set(self) -> tuple[ImageSet, np.ndarray, int]:
        images = training_images(self.cfg, self.data_root)
        classes = np.unique(images.pids)
        return images, np.searchsorted(classes, images.pids), len(classes)

    def _optimizer(self) -> torch.optim.Optimizer:
        """Groups `head` (and `backbone` when pretrained, at its own rate) and `gem`: the GeM exponents
        take no weight decay. Under SGD (lr 0.1, decay 5e-4) decay outweighs their small gradients and
        drives p below 1 within the warm-up, where the forward's clamp zeroes the gradient for good:
        the parts would end average-pooled."""
        opt = self.cfg.optim
        pretrained = bool(self.cfg.model.get("pretrained"))
        exponents = {id(m.p) for m in self.model.modules() if isinstance(m, GeM)}
        backbone: list[torch.nn.Parameter] = []
        head: list[torch.nn.Parameter] = []
        gem: list[torch.nn.Parameter] = []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            if id(param) in exponents:
                gem.append(param)
            else:
                (backbone if pretrained and name.startswith("backbone.") else head).append(param)
        head += [p for p in self.criterion.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": opt.lr, "base_lr": opt.lr, "name": "head"}]
        if backbone:
            groups.append(
                {"params": backbone, "lr": opt.backbone_lr, "base_lr": opt.backbone_lr, "name": "backbone"}
            )
        if gem:
            groups.append(
                {"params": gem, "lr": opt.lr, "base_lr": opt.lr, "weight_decay": 0.0, "name": "gem"}
            )
        if opt.name == "adamw":
            return torch.optim.AdamW(groups, weight_decay=opt.weight_decay)
        return torch.optim.SGD(groups, momentum=opt.momentum, weight_decay=opt.weight_decay, nesterov=True)

    def _wrap_ddp(self) -> nn.Module:
        if self.world == 1:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=True)

    def _resume(self) -> None:
        last = paths_for(self.out_dir / "last")[0]
        if not last.is_file():
            raise ConfigError(f"--resume: no checkpoint at {last}; start without --resume")
        ckpt = load_checkpoint(last, with_optimizer=True)
        saved_optimizer = (ckpt.train_config.get("optim") or {}).get("name")
        if saved_optimizer not in (None, self.cfg.optim.name):
            raise ConfigError(
                f"--resume: {last} was trained with optim.name={saved_optimizer}, this config says "
                f"{self.cfg.optim.name}; its optimizer state cannot continue another optimizer. Resume with "
                f"--set optim.name={saved_optimizer}, or start a new run (--out elsewhere)"
            )
        load_weights(self.model, ckpt, "the model this config builds")
        self._check_resumed_precision(ckpt, last)
        self.criterion.load_state_dict(ckpt.criterion_state)
        groups = (ckpt.optimizer_state or {}).get("param_groups", [])
        if ckpt.optimizer_state is not None and not all("name" in g for g in groups):
            # saved before the GeM exponents had their own group: the layouts differ
            log.warning(
                "--resume: %s holds an optimizer state of an older vireid (another parameter-group "
                "layout); the weights, MeCen centres and schedule resume, the optimizer's momentum "
                "restarts",
                last,
            )
        elif ckpt.optimizer_state is not None:
            try:
                self.optimizer.load_state_dict(ckpt.optimizer_state)
            except ValueError as exc:  # parameter groups of another layout
                raise ConfigError(
                    f"--resume: the optimizer state in {last} does not fit this trainer's parameter groups "
                    f"({exc}); resume with the vireid version that started the run, or start a new run "
                    "(--out elsewhere)"
                ) from None
            self._apply_optimizer_settings()  # the loaded state carries the old run's lr and decay
        if ckpt.amp_scaler and self._amp:
            self.scaler.load_state_dict(ckpt.amp_scaler)
        self.start_epoch, self.step = ckpt.epoch + 1, ckpt.step
        if self.start_epoch > self.cfg.optim.epochs:
            raise ConfigError(
                f"--resume: {last} has trained {ckpt.epoch} epochs, this config stops at optim.epochs="
                f"{self.cfg.optim.epochs}; nothing to do. Raise it to train further, e.g. --epochs "
                f"{ckpt.epoch + 10}"
            )
        if self.rank == 0:
            self._drop_log_records_after(ckpt.epoch, ckpt.step)
        best = ckpt.metrics.get("best_score")  # null: no validation yet (JSON has no -inf)
        self.best_score = -math.inf if best is None else float(best)
        self.best_metrics = dict(ckpt.metrics.get("best", {}))
        log.info("resumed from %s at epoch %d", last, ckpt.epoch)

    def _apply_optimizer_settings(self) -> None:
        """The config's learning rates, momentum and weight decay on the optimizer's groups (a resumed
        run may change them: `--resume --set optim.lr=...` must train at that rate)."""
        opt = self.cfg.optim
        for group in self.optimizer.param_groups:
            name = group.get("name")
            group["base_lr"] = group["lr"] = opt.backbone_lr if name == "backbone" else opt.lr
            group["weight_decay"] = 0.0 if name == "gem" else opt.weight_decay
            if "momentum" in group:
                group["momentum"] = opt.momentum

    # ----- loop -------------------------------------------------------------------------------------
    def fit(self, on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
        """Train from `start_epoch` to `optim.epochs`; returns where the checkpoints are."""
        started = time.monotonic()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0 and self._replaces_run:  # only now: a failed setup leaves the old run intact
            for name in _RUN_FILES:
                (self.out_dir / name).unlink(missing_ok=True)
            self._replaces_run = False
        if self.rank == 0:
            (self.out_dir / "config.json").write_text(jsonio.dumps(self.cfg.to_dict(), indent=2))
            if self.cfg.run.eval_every > 0 and self.cfg.data.val_split == "test":
                log.info(
                    "validating on the test identities, as the reference code does: `best` is chosen on "
                    "them; data.val_split: val (SYSU) validates on held-out val identities instead"
                )
            opt = self.cfg.optim
            if opt.warmup_epochs >= opt.epochs:
                log.warning(
                    "optim.warmup_epochs (%d) >= optim.epochs (%d): the whole run is warm-up, no epoch "
                    "trains at optim.lr (the rate ends at %.0f%% of it); fine for a smoke test, else e.g. "
                    "--set optim.warmup_epochs=%d",
                    opt.warmup_epochs,
                    opt.epochs,
                    100.0 * lr_factor(float(opt.epochs), self.cfg),
                    max(0, opt.epochs - 1) if opt.epochs < 4 else opt.epochs // 4,
                )
        for epoch in range(self.start_epoch, self.cfg.optim.epochs + 1):
            stats = self._train_epoch(epoch)
            if self._should_validate(epoch):
                stats.update(self._validate_keeping_the_epoch(epoch))
            if self.rank == 0:
                self._log({"event": "epoch", "epoch": epoch, **stats})
                self._save("last", epoch)
                if on_epoch:
                    on_epoch(epoch, stats)
        best = paths_for(self.out_dir / "best")[0]
        return TrainResult(
            run_dir=self.out_dir,
            last=paths_for(self.out_dir / "last")[0],
            best=best if best.is_file() else None,
            epochs_run=self.cfg.optim.epochs - self.start_epoch + 1,
            best_metrics=self.best_metrics,
            seconds=time.monotonic() - started,
            computed_in=self._computed_in,
        )

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        torch.manual_seed(self.cfg.run.seed * 100_003 + epoch * 101 + self.rank)
        rng = np.random.default_rng([self.cfg.run.seed, epoch, self.rank, 7])
        self.net.train()
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        seen, started = 0, time.monotonic()
        batches = progress(
            self.sampler.epoch(epoch), desc=f"epoch {epoch}", total=len(self.sampler), enabled=self._chatty
        )
        for i, batch in enumerate(batches):
            self._set_lr(epoch - 1 + i / len(self.sampler))
            losses = self._train_step(batch, rng)
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
            seen += len(batch.indices)
            self.step += 1
            if self.rank == 0 and self.step % self.cfg.run.log_every == 0:
                self._log({"event": "step", "epoch": epoch, "step": self.step, "lr": self._lr(), **losses})
        stats = {key: value if key in _COUNTED else value / counts[key] for key, value in totals.items()}
        stats["images_per_s"] = seen / max(time.monotonic() - started, 1e-9)
        stats["lr"] = self._lr()
        return stats

    def _train_step(self, batch: Any, rng: np.random.Generator) -> dict[str, float]:
        images = self.store.get(batch.indices)
        modalities = self.train_set.modalities[batch.indices]
        images = np.stack(
            [augment(img, int(m), self.cfg.augment, rng) for img, m in zip(images, modalities, strict=True)]
        )
        x = torch.from_numpy(images).to(self.device, non_blocking=True)
        mod = torch.from_numpy(modalities.astype(np.int32)).to(self.device)
        y = torch.from_numpy(batch.labels.astype(np.int64)).to(self.device)
        with torch.autocast(self.device.type, dtype=self._autocast, enabled=self._autocast is not None):
            output = self.net(x, mod)
            loss, parts = self.criterion(output, y, mod)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._average_criterion_grads()
        self.scaler.unscale_(self.optimizer)
        clip = self.cfg.optim.grad_clip or float("inf")
        # the loss's own parameters (MeCen's centres) too: they are optimised like the model's
        trained = itertools.chain(self.model.parameters(), self.criterion.parameters())
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in trained if p.grad is not None], clip)
        if self._amp or math.isfinite(float(grad_norm)):  # GradScaler skips non-finite steps itself
            self.scaler.step(self.optimizer)
        self.scaler.update()
        if hasattr(self.criterion, "after_step"):
            self.criterion.after_step()
        return {"loss": float(loss.detach()), **self._grad_record(float(grad_norm)), **_floats(parts)}

    def _average_criterion_grads(self) -> None:
        """Under DDP, average the gradients of the loss's own parameters (MeCen's class centres) over
        the processes, as DDP does for the model's: each process would otherwise move its centres
        towards its own batches only, and the processes would optimise towards different centres."""
        if self.world == 1:
            return
        for param in self.criterion.parameters():
            if not param.requires_grad:
                continue
            if param.grad is None:  # every process must reduce the same tensors, in the same order
                param.grad = torch.zeros_like(param)
            torch.distributed.all_reduce(param.grad)
            param.grad /= self.world

    def _grad_record(self, grad_norm: float) -> dict[str, float]:
        """The step's gradient norm, or, when it is not finite, a count of such steps (JSON has no inf).

        Under AMP an overflowing step is expected now and then: GradScaler skips it and lowers its scale.
        Without AMP the step is skipped as GradScaler would, with a warning, and
        `MAX_NONFINITE_STEPS` in a row stop the run: it diverged.
        """
        if math.isfinite(grad_norm):
            self._nonfinite_run = 0
            return {"grad_norm": grad_norm}
        if self._amp:
            return {"amp_skipped_steps": 1.0}
        self._nonfinite_run += 1
        if self._nonfinite_run >= MAX_NONFINITE_STEPS:
            raise TrainingError(
                f"{self.out_dir}: the last {self._nonfinite_run} steps all had NaN/inf gradients (step "
                f"{self.step}): training diverged. Lower optim.lr or set optim.grad_clip, and "
                "train again (--overwrite), or --resume from the last checkpoint, saved before it"
            )
        log.warning(
            "step %d: gradient norm is %s: step skipped; lower optim.lr or set optim.grad_clip",
            self.step,
            grad_norm,
        )
        return {"nonfinite_grad_steps": 1.0}

    def _set_lr(self, epoch_progress: float) -> None:
        factor = lr_factor(epoch_progress, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ----- validation and checkpoints ---------------------------------------------------------------
    def _should_validate(self, epoch: int) -> bool:
        every = self.cfg.run.eval_every
        return self.rank == 0 and every > 0 and (epoch % every == 0 or epoch == self.cfg.optim.epochs)

    def _validate_keeping_the_epoch(self, epoch: int) -> dict[str, float]:
        """`_validate`; when it fails (out of memory, a damaged test image, Ctrl-C) the epoch's training
        is saved in `last` first, so `--resume` continues after it instead of training it again."""
        try:
            return self._validate(epoch)
        except BaseException:
            self._save("last", epoch)
            log.error(
                "validation after epoch %d failed; the epoch's weights are saved in %s: fix the cause and "
                "continue with --resume (that epoch is not validated again)",
                epoch,
                paths_for(self.out_dir / "last")[0],
            )
            raise

    def _validate(self, epoch: int) -> dict[str, float]:
        protocol = self.cfg.data.val_protocol or DEFAULT_VAL_PROTOCOL[self.cfg.data.dataset]
        trials: int | list[int] = self.cfg.data.val_trials
        if self.cfg.data.dataset == "regdb":
            trials = [self.cfg.data.regdb_trial]  # other splits' test ids are this split's training ids
        result = evaluate_model(
            self.model,
            self.input_size,
            self.data_root,
            protocol,
            trials=trials,
            batch_size=self.cfg.run.eval_batch,
            device=str(self.device),
            split=self.cfg.data.val_split,
        )
        metrics = {f"val_{k}": v for k, v in result.mean().items()}
        score = metrics["val_R1"] + metrics["val_mAP"]
        if score > self.best_score:
            split = self.cfg.data.val_split
            self.best_score, self.best_metrics = score, {**result.mean(), "epoch": epoch, "split": split}
            self._save("best", epoch)
        return metrics

    def _save(self, name: str, epoch: int) -> None:
        broken = [key for key, value in self.model.state_dict().items() if not bool(value.isfinite().all())]
        if broken:  # never replace a good checkpoint with these
            raise TrainingError(
                f"{self.out_dir}: the weights hold NaN/inf ({', '.join(broken[:3])}) at epoch {epoch}: "
                f"training diverged; {name} is not saved. Lower optim.lr or set optim.grad_clip"
            )
        meta = {
            "model_config": self.model.config.to_dict(),  # resolved: defaults fixed at training time
            "num_classes": self.num_classes,
            "epoch": epoch,
            "step": self.step,
            "train_config": self.cfg.to_dict(),
            "computed_in": self._computed_in,  # what `auto` resolved to on this machine
            "metrics": {"best_score": self.best_score, "best": self.best_metrics},
            "data": data_fingerprint(self.cfg.data.dataset, self.data_root, self.train_set),
        }
        optim = self.optimizer.state_dict() if name == "last" else None
        if name == "last" and self._amp:  # its scale decides which steps overflow: resume needs it
            meta["amp_scaler"] = self.scaler.state_dict()
        save_checkpoint(
            self.out_dir / name, self.model.state_dict(), meta, optim, self.criterion.state_dict()
        )

    def _drop_log_records_after(self, epoch: int, step: int) -> None:
        """Forget the metrics logged after the checkpoint a resume starts from: the resumed run logs
        those steps again, and a reader would otherwise see them twice."""
        path = self.out_dir / "metrics.jsonl"
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("step", 0) <= step and record.get("epoch", 0) <= epoch:
                kept.append(line)
        write_atomic(path, "".join(f"{line}\n" for line in kept))

    def _log(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 3), **record}
        with (self.out_dir / "metrics.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(jsonio.dumps(record) + "\n")
        if record.get("event") == "epoch":
            shown = {k: round(v, 4) for k, v in record.items() if isinstance(v, float) and k != "time"}
            log.info("epoch %d %s", record["epoch"], shown)


_COUNTED = ("amp_skipped_steps", "nonfinite_grad_steps")  # epoch stats sum these; the rest are means


def _floats(parts: dict[str, Any]) -> dict[str, float]:
    return {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in parts.items()}


def train(
    config: TrainConfig,
    data_root: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train a model as configured; the public entry point (`vireid.training.train`).

    `out_dir` must not hold another run unless `resume` (continue it) or `overwrite` (replace its
    checkpoints and log) says what to do with it.
    """
    return Trainer(config, data_root, out_dir, resume=resume, overwrite=overwrite).fit()


_RUN_FILES = ("last.safetensors", "last.json", "best.safetensors", "best.json", "metrics.jsonl")


def _check_run_folder(out_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Refuse to train into a file or over another run by accident; True when an earlier run is to be
    replaced (its files are removed by `fit`, once the new run has been set up).

    Raises:
        ConfigError: `out_dir` is a file; it holds a run (any checkpoint or log) and neither `resume` nor
            `overwrite` is set; or both are set.
    """
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other: continue the run, or replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: is a file; the run folder (--out) must be a folder")
    found = [name for name in _RUN_FILES if (out_dir / name).exists()]
    if resume or not found:
        return False
    if not overwrite:
        raise ConfigError(
            f"{out_dir}: already holds a training run ({', '.join(found)}); pass --resume (resume=True) to "
            "continue it, --overwrite (overwrite=True) to replace it, or choose another --out"
        )
    return True
