"""Latency and throughput of a model on every runtime, in one process (`vireid bench MODEL [MODEL ...]`).

Every configuration (backend × precision × batch) is opened first, then timed in interleaved rounds so
that a noisy neighbour or a CPU clock change hits every row alike and the ratios stay fair. Per row:
latency p50/p90/p99, throughput, a per-stage split (preprocessing of raw crops, host→device, inference,
device→host, where the runtime lets them be separated), memory, and the cosine of its embeddings to the
reference row (FP32 ONNX Runtime on CPU, else torch). Backends that cannot run here are listed as
skipped with the reason, never silently dropped; so is a configuration that opened and then failed
while running (out of memory at a large batch, a driver error), without ending the run. Several models
(`compare_models`) share the same interleaved rounds, so the ratios between models are fair too.

`torch` (eager PyTorch, the reference users compare against) needs the `train` extra and a checkpoint
or `random:BACKBONE` model; everything else needs only the runtime. ONNX files a row needs but that do
not exist yet (an ONNX file for a checkpoint, an FP16 file for an FP32 one) are exported into a
temporary folder with `vireid.export` when it is installed, else the row is skipped.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import open_backend
from ..backends.ort_config import default_threads
from ..card import ModelCard, sha256_file
from ..errors import ConfigError, InputSpecError, VireidError
from ..preprocess import preprocess_crops
from ..system import environment

BACKENDS = ("torch", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt")
"""Runtimes `vireid bench` knows, in table order."""
PRECISIONS = ("fp32", "fp16", "int8")
RANDOM_PREFIX = "random:"
REFERENCE_ORDER = (("ort-cpu", "fp32"), ("torch", "fp32"), ("ort-cuda", "fp32"))
SETTLE_S = 0.2
"""Pause before timing each configuration in a round: ONNX Runtime's worker threads spin-wait after a
call, and would otherwise steal the CPU from the next configuration's first calls."""

logger = logging.getLogger("vireid.bench")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.

    Attributes:
        backends: subset of `BACKENDS`.
        batches: batch sizes.
        precisions: subset of `PRECISIONS`.
        warmup: untimed calls per configuration before timing.
        iters: timed calls per configuration (None: run for `seconds`).
        seconds: timed seconds per configuration when `iters` is None.
        rounds: the timed calls are split into this many interleaved rounds over all configurations.
        threads: CPU threads for ONNX Runtime and torch (None: physical cores).
        crop_scale: raw crops for the preprocessing stage are this much larger than the model input.
        streams: concurrent copies of every configuration, each with `threads // streams` threads
            (throughput mode: several requests in flight, as a server with one worker per core runs);
            a row's latency is then one call's and its throughput that of all copies together.
    """

    backends: tuple[str, ...] = BACKENDS
    batches: tuple[int, ...] = (1, 8, 32)
    precisions: tuple[str, ...] = PRECISIONS
    warmup: int = 2
    iters: int | None = None
    seconds: float = 3.0
    rounds: int = 3
    threads: int | None = None
    crop_scale: float = 1.4
    streams: int = 1

    def __post_init__(self) -> None:
        _check_subset("backend", self.backends, BACKENDS)
        _check_subset("precision", self.precisions, PRECISIONS)
        if not self.batches or any(
            isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.batches
        ):
            raise ConfigError(f"batches must be positive integers, got {list(self.batches)}")
        if self.warmup < 0 or self.rounds < 1 or (self.iters is not None and self.iters < 1):
            raise ConfigError(
                "warmup must be >= 0, rounds >= 1 and iters >= 1; "
                f"got {self.warmup}, {self.rounds}, {self.iters}"
            )
        if self.iters is None and not self.seconds > 0:
            raise ConfigError(f"seconds must be > 0, got {self.seconds}")
        if isinstance(self.streams, bool) or not isinstance(self.streams, int) or self.streams < 1:
            raise ConfigError(f"streams must be a positive integer, got {self.streams!r}")


def _check_subset(what: str, values: Sequence[str], options: Sequence[str]) -> None:
    unknown = [v for v in values if v not in options]
    if unknown or not values:
        raise ConfigError(f"unknown {what} {unknown or values!r}; choose from: {', '.join(options)}")


@dataclass(frozen=True)
class Stages:
    """Mean milliseconds per call of each stage; None where the runtime does not separate it.

    Attributes:
        preprocess: raw crops (`crop_scale` × input size, RGB) → model input batch (`preprocess_crops`).
        h2d: host → device copy of the batch.
        infer: the model itself (on CPU backends: the whole call).
        d2h: device → host copy of the embeddings.
        note: what `None` means for this row.
    """

    preprocess: float
    h2d: float | None
    infer: float
    d2h: float | None
    note: str = ""


@dataclass(frozen=True)
class BenchRow:
    """One measured configuration."""

    backend: str
    precision: str
    batch: int
    device: str
    providers: tuple[str, ...]
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float
    stages: Stages
    rss_mb: float
    gpu_memory_mb: float | None
    cosine_to_reference: float | None
    streams: int = 1


@dataclass(frozen=True)
class Skipped:
    """A configuration that could not run here, and why."""

    backend: str
    precision: str
    reason: str


@dataclass
class BenchReport:
    """A whole `vireid bench` run: rows, skipped configurations, environment and settings."""

    model: str
    input_size: tuple[int, int]
    embedding_dim: int
    rows: list[BenchRow]
    skipped: list[Skipped]
    reference: str | None
    environment: dict[str, Any]
    config: BenchConfig
    peak_rss_mb: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        data = asdict(self)
        data["config"] = asdict(self.config)
        return data

    def row(self, backend: str, precision: str, batch: int) -> BenchRow | None:
        """The row of one configuration, if it ran."""
        return next(
            (r for r in self.rows if (r.backend, r.precision, r.batch) == (backend, precision, batch)), None
        )

    def speedup(self, backend: str, over: str, batch: int, precision: str = "fp32") -> float | None:
        """Throughput ratio of two backends at one batch size (None if either did not run)."""
        a, b = self.row(backend, precision, batch), self.row(over, "fp32", batch)
        return a.throughput / b.throughput if a and b else None

    def table(self) -> str:
        """The terminal table."""
        header = (
            f"{'backend':9s} {'prec':4s} {'batch':>5s} {'p50 ms':>9s} {'p90 ms':>9s} {'p99 ms':>9s} "
            f"{'img/s':>8s} {'prep ms':>8s} {'h2d':>6s} {'infer':>8s} {'d2h':>6s} {'RSS MB':>7s} "
            f"{'cos ref':>8s}"
        )
        lines = [header, "-" * len(header)]
        for r in self.rows:
            s = r.stages
            lines.append(
                f"{r.backend:9s} {r.precision:4s} {r.batch:5d} "
                f"{r.p50_ms:9.2f} {r.p90_ms:9.2f} {r.p99_ms:9.2f} "
                f"{r.throughput:8.1f} {s.preprocess:8.2f} {_opt(s.h2d, 6)} {s.infer:8.2f} {_opt(s.d2h, 6)} "
                f"{r.rss_mb:7.0f} {_opt(r.cosine_to_reference, 8, 5)}"
            )
        grouped: dict[tuple[str, str], list[str]] = {}  # one line per backend and reason
        for skip in self.skipped:
            grouped.setdefault((skip.backend, _short_reason(skip.reason)), []).append(skip.precision)
        for (backend, reason), precisions in grouped.items():
            lines.append(f"{backend:9s} {','.join(precisions)} skipped: {reason}")
        if self.reference:
            lines.append(
                f"cos ref: lowest cosine to the {self.reference} embeddings of the same 8 random-noise "
                "images (a smoke test: INT8 scores lower on noise; `vireid verify` measures parity on people)"
            )
        if self.config.streams > 1:
            lines.append(
                f"streams: every configuration ran as {self.config.streams} concurrent copies; "
                "latency is one call's, img/s that of all copies together"
            )
        return "\n".join(lines)


def _opt(value: float | None, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}s}" if value is None else f"{value:{width}.{digits}f}"


# ----- the model under test ---------------------------------------------------------------------
@dataclass
class ModelSource:
    """The artifacts one bench run can use, found beside MODEL or made on demand.

    Attributes:
        spec: what the user passed.
        checkpoint: a training checkpoint (torch row; exported for the ONNX rows).
        random_backbone: `random:[MODEL/]BACKBONE[@HxW]` as (model, backbone, (H, W)): a freshly
            initialised model (`mspac` unless named; speed does not depend on weights), for
            benchmarking before anything is trained.
        onnx: precision → ONNX file.
        engine: a TensorRT engine.
    """

    spec: str
    checkpoint: Path | None = None
    random_backbone: tuple[str, str, tuple[int, int]] | None = None
    onnx: dict[str, Path] = field(default_factory=dict)
    engine: Path | None = None
    workdir: Path | None = None
    _torch_model: Any = None
    _failed: dict[str, BaseException] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | Path) -> ModelSource:
        """Classify MODEL: `random:[MODEL/]BACKBONE[@HxW]`, a checkpoint, an `.onnx` file or an engine."""
        text = str(spec)
        if text.startswith(RANDOM_PREFIX):
            return cls(text, random_backbone=_parse_random(text))
        path = Path(text)
        if not path.is_file():
            raise InputSpecError(
                f"{path}: no such file; pass a checkpoint (.safetensors), an exported model (.onnx, "
                ".engine) or random:BACKBONE (e.g. random:resnet50) for an untrained model"
            )
        suffix = path.suffix.lower()
        if suffix in (".safetensors", ".json"):
            return cls(text, checkpoint=path, onnx=_exports_of(path))
        if suffix == ".onnx":
            card = ModelCard.from_onnx(path)
            precision = card.precision.value
            source = cls(text, onnx={precision: path})
            for other, sibling in _siblings(path).items():
                if other != precision and sibling.is_file() and _same_model(card, sibling, other):
                    source.onnx[other] = sibling
            return source
        if suffix in (".engine", ".plan", ".trt"):
            return cls(text, engine=path)
        raise InputSpecError(
            f"{path}: unknown model file type {suffix!r}; expected .safetensors, .onnx, .engine "
            "or random:BACKBONE"
        )

    def torch_model(self) -> Any:
        """The PyTorch model (checkpoint or random), loaded once; needs the `train` extra."""
        if self._torch_model is None:
            if self.random_backbone is not None:
                from vireid.training.models.build import build_model

                model, backbone, size = self.random_backbone
                try:
                    built = build_model(
                        model, 395, backbone=backbone, input_size=list(size), with_pretrained=False
                    )
                except ConfigError as exc:  # an unknown model or backbone name, a size it cannot take
                    raise ConfigError(
                        f"{self.spec}: {exc} (the form is random:[MODEL/]BACKBONE[@HxW], e.g. "
                        "random:resnet50@288x144 or random:psmg/resnet50@288x144)"
                    ) from None
                self._torch_model = built.eval()
            elif self.checkpoint is not None:
                from vireid.training.evaluate import load_model

                self._torch_model = load_model(self.checkpoint, "cpu")[0].eval()
            else:
                raise InputSpecError(
                    f"{self.spec}: the torch row needs a checkpoint or random:BACKBONE as MODEL, not an "
                    "exported file"
                )
        return self._torch_model

    def onnx_file(self, precision: str, log: Callable[[str], None]) -> Path:
        """The ONNX file of one precision, exported into the work folder when missing."""
        if precision in self.onnx:
            return self.onnx[precision]
        if precision in self._failed:  # one failed export serves every row that needs the file
            raise self._failed[precision]
        if precision == "int8":
            raise VireidError(
                "no INT8 model beside MODEL; make one with "
                "`vireid export CHECKPOINT --to int8 --int8-data DIR` (calibration needs training images)"
            )
        try:
            return self._make_onnx(precision, log)
        except (VireidError, ImportError, OSError, ValueError) as exc:
            self._failed[precision] = exc
            raise

    def _make_onnx(self, precision: str, log: Callable[[str], None]) -> Path:
        if self.engine is not None and not self.onnx:
            raise InputSpecError(f"{self.spec}: an engine has no ONNX file; pass the .onnx it was built from")
        workdir = self._workdir()
        if precision == "fp32" and self.checkpoint is None and self.random_backbone is None:
            given = next(iter(self.onnx.values()))
            raise InputSpecError(
                f"no FP32 ONNX beside {given.name} (expected {_siblings(given)['fp32'].name}); pass the FP32 "
                "file or the checkpoint as MODEL"
            )
        if precision == "fp32":
            from vireid.export import to_onnx

            model = self.torch_model()  # a bad spec is reported before "exporting"
            log("exporting the model to ONNX for the ONNX Runtime rows")
            self.onnx["fp32"] = to_onnx(model, workdir / "model.onnx")
        else:
            from vireid.export.fp16 import to_fp16

            fp32 = self.onnx_file("fp32", log)
            log(f"converting {fp32.name} to FP16 for the fp16 rows")
            self.onnx["fp16"] = to_fp16(fp32, workdir / "model.fp16.onnx")
        return self.onnx[precision]

    def card(self, log: Callable[[str], None]) -> ModelCard:
        """The model card (from the engine or an ONNX file)."""
        if self.engine is not None:
            return ModelCard.from_engine(self.engine)
        return ModelCard.from_onnx(self.onnx_file(next(iter(self.onnx), "fp32"), log))

    def _workdir(self) -> Path:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="vireid-bench-"))
        return self.workdir

    def cleanup(self) -> None:
        """Remove files exported for this run."""
        if self.workdir is not None:
            for path in self.workdir.iterdir():
                path.unlink()
            self.workdir.rmdir()
            self.workdir = None


def _parse_random(text: str) -> tuple[str, str, tuple[int, int]]:
    body = text[len(RANDOM_PREFIX) :]
    names, _, size = body.partition("@")
    model, _, backbone = names.rpartition("/")
    if not backbone or (not model and "/" in names):
        raise InputSpecError(
            f"{text!r}: expected random:[MODEL/]BACKBONE[@HxW], e.g. random:resnet50@288x144 or "
            "random:psmg/resnet50@288x144"
        )
    if not size:
        return model or "mspac", backbone, (288, 144)
    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InputSpecError(f"{text!r}: size must be HxW, e.g. random:resnet50@288x144") from None
    return model or "mspac", backbone, (h, w)


def _exports_of(checkpoint: Path) -> dict[str, Path]:
    """ONNX files `vireid export CKPT --out <its folder>` wrote beside a checkpoint
    (`<stem>[.fp16|.int8].onnx`), kept only when their card names this very checkpoint (a stale export
    is re-made instead)."""
    weights = checkpoint.with_suffix(".safetensors")
    found: dict[str, Path] = {}
    for precision, path in _siblings(checkpoint.with_suffix(".onnx")).items():
        if path.is_file() and weights.is_file():
            card = ModelCard.from_onnx(path)
            if card.source_checkpoint_sha256 == sha256_file(weights) and card.precision.value == precision:
                found[precision] = path
    return found


def _same_model(card: ModelCard, sibling: Path, precision: str) -> bool:
    """A file beside MODEL is another precision of the same model only when its card says so: that
    precision, the same embedding space and input size (a stale or renamed file is left out, logged)."""
    try:
        other = ModelCard.from_onnx(sibling)
    except VireidError as exc:
        logger.warning("bench: %s left out: %s", sibling, exc)
        return False
    problems = []
    if other.precision.value != precision:
        problems.append(f"its card says {other.precision.value}, its name {precision}")
    if other.embedding_space() != card.embedding_space():
        problems.append("another embedding space (another model or checkpoint)")
    if other.input_size != card.input_size:
        problems.append(f"input size {other.input_size}, not {card.input_size}")
    if problems:
        logger.warning(
            "bench: %s is not the %s of the model given, left out: %s",
            sibling,
            precision,
            "; ".join(problems),
        )
    return not problems


def _siblings(path: Path) -> dict[str, Path]:
    """`X.onnx`, `X.fp16.onnx`, `X.int8.onnx` beside any one of them (the names `vireid export` writes)."""
    stem = path.name[: -len(".onnx")]
    for tag in (".fp16", ".int8"):
        stem = stem.removesuffix(tag)
    return {
        "fp32": path.with_name(f"{stem}.onnx"),
        "fp16": path.with_name(f"{stem}.fp16.onnx"),
        "int8": path.with_name(f"{stem}.int8.onnx"),
    }


# ----- runners ----------------------------------------------------------------------------------
class Runner:
    """One opened configuration: `run(images, modality)` → embeddings, plus the stages it can split."""

    device = "cpu"
    providers: tuple[str, ...] = ()
    stage_note = "host memory: no copies"

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def last_stages(self) -> dict[str, float]:
        """Milliseconds of `h2d`, `infer`, `d2h` of the last call, when this runtime separates them."""
        return {}

    def close(self) -> None:
        """Free the runtime."""


class BackendRunner(Runner):
    """An ONNX Runtime or TensorRT backend from `vireid.open_backend`."""

    def __init__(self, path: Path, device: str, **options: Any) -> None:
        self.backend = open_backend(path, device, **options)
        self.device = self.backend.device
        self.providers = self.backend.providers
        self.backend.record_stages = True
        if self.device != "cpu":
            self.stage_note = (
                "copies inside the call (ONNX Runtime binds host buffers)" if path.suffix == ".onnx" else ""
            )

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        return self.backend.infer(images, modality)

    def last_stages(self) -> dict[str, float]:
        return dict(self.backend.last_stages)

    def close(self) -> None:
        self.backend.close()


class TorchRunner(Runner):
    """Eager PyTorch under `inference_mode` (CUDA when there is one; FP16 by autocast on CUDA only)."""

    def __init__(self, model: Any, precision: str, threads: int | None) -> None:
        import torch

        self.torch = torch
        # the same default as ONNX Runtime's rows (cores this process may use, cgroup quota included):
        # torch's own default, every core of the host, would oversubscribe a CPU-limited container
        torch.set_num_threads(threads or default_threads())
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if precision == "int8":
            raise VireidError("torch eager has no INT8 path here; compare ONNX Runtime INT8 with torch fp32")
        if precision == "fp16" and self.device == "cpu":
            raise VireidError("torch fp16 runs on CUDA only (CPU half kernels are not a deployment path)")
        self.model = model.to(self.device)
        self.fp16 = precision == "fp16"
        self.providers = (f"torch {torch.__version__} {self.device}",)
        self._stages: dict[str, float] = {}
        if self.device == "cuda":
            self.stage_note = ""

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            if self.device == "cpu":
                return self.model(torch.from_numpy(images), torch.from_numpy(modality)).numpy()
            t0 = time.perf_counter()
            x = torch.from_numpy(images).to("cuda")
            m = torch.from_numpy(modality).to("cuda")
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
                y = self.model(x, m)
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            out = y.float().cpu().numpy()
            t3 = time.perf_counter()
        self._stages = {"h2d": 1e3 * (t1 - t0), "infer": 1e3 * (t2 - t1), "d2h": 1e3 * (t3 - t2)}
        return out

    def last_stages(self) -> dict[str, float]:
        return dict(self._stages)

    def close(self) -> None:
        self.model = None
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


class StreamsRunner(Runner):
    """Several copies of one configuration, each call run on all of them at once (one thread each)."""

    def __init__(self, runners: list[Runner]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.runners = runners
        first = runners[0]
        self.device, self.providers, self.stage_note = first.device, first.providers, first.stage_note
        self._pool = ThreadPoolExecutor(len(runners), thread_name_prefix="vireid-bench-stream")

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        calls = [self._pool.submit(r.run, images, modality) for r in self.runners]
        outputs = [call.result() for call in calls]  # every copy finishes before the call counts as done
        return outputs[0]

    def last_stages(self) -> dict[str, float]:
        return self.runners[0].last_stages()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for runner in self.runners:
            runner.close()


def open_runner(
    source: ModelSource, backend: str, precision: str, config: BenchConfig, log: Callable[[str], None]
) -> Runner:
    """Open one backend × precision (`config.streams` copies of it), or raise with the reason it
    cannot run here."""
    if config.streams > 1:
        per_stream = max(1, (config.threads or default_threads()) // config.streams)
        each = replace(config, streams=1, threads=per_stream)
        runners: list[Runner] = []
        try:
            for _ in range(config.streams):
                runners.append(open_runner(source, backend, precision, each, log))
        except BaseException:
            for runner in runners:
                runner.close()
            raise
        return StreamsRunner(runners)
    threads = {"threads": config.threads} if config.threads else {}
    if backend == "torch":
        return TorchRunner(source.torch_model(), precision, config.threads)
    if backend == "tensorrt":
        if source.engine is None:
            raise VireidError(
                "needs a TensorRT engine as MODEL; build one on the target GPU with "
                "`vireid export MODEL --to engine`"
            )
        built = ModelCard.from_engine(source.engine).precision.value
        if built != precision:
            raise VireidError(f"the engine was built for {built}; build another for {precision}")
        return BackendRunner(source.engine, "tensorrt")
    if backend == "ort-trt":  # the file of that precision, as open_backend(file, "tensorrt") deploys it
        return BackendRunner(source.onnx_file(precision, log), "tensorrt")
    device = "cpu" if backend == "ort-cpu" else "cuda"
    return BackendRunner(source.onnx_file(precision, log), device, **(threads if device == "cpu" else {}))


# ----- measuring ----------------------------------------------------------------------------------
@dataclass
class _Config:
    backend: str
    precision: str
    batch: int
    runner: Runner
    images: np.ndarray
    modality: np.ndarray
    times: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)
    rss_mb: float = 0.0
    error: str | None = None

    def call(self) -> float | None:
        """Seconds one call took, or None (and `error` set) when the runtime failed: a configuration
        that opened and then fails (out of memory at a large batch, a driver error) is reported as
        skipped with the reason instead of ending the whole run."""
        if self.error is not None:
            return None
        start = time.perf_counter()
        try:
            self.runner.run(self.images, self.modality)
        except Exception as exc:  # any runtime's failure becomes this row's skip reason
            self.error = _reason(exc)
            return None
        return time.perf_counter() - start


@dataclass
class _Opened:
    """One model of a run: its card, the runners that opened and the configurations that could not."""

    source: ModelSource
    card: ModelCard
    runners: dict[tuple[str, str], Runner]
    skipped: list[Skipped]
    configs: list[_Config] = field(default_factory=list)


def run_bench(
    model: str | Path | ModelSource,
    config: BenchConfig | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> BenchReport:
    """Open every configuration of `config` that can run here, time them interleaved, report.

    `model` is what `vireid bench` takes (see `ModelSource.parse`), or a `ModelSource` naming a
    checkpoint and its already exported ONNX files together (the demo does this to skip re-exporting).
    """
    return compare_models([model], config, log)[0]


def compare_models(
    models: Sequence[str | Path | ModelSource],
    config: BenchConfig | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[BenchReport]:
    """`run_bench` for several models in one run: every configuration of every model is timed in the
    same interleaved rounds, so ratios between models are as fair as those between runtimes (two
    separate runs would each meet the machine in another state). One report per model, in order."""
    if not models:
        raise InputSpecError("compare_models needs at least one model")
    config = config or BenchConfig()
    sources: list[ModelSource] = []
    try:
        for model in models:
            sources.append(ModelSource.parse(model) if not isinstance(model, ModelSource) else model)
        return _bench(sources, config, log)
    finally:
        for model, source in zip(models, sources, strict=False):
            if not isinstance(model, ModelSource):  # a caller's ModelSource keeps its exported files
                with contextlib.suppress(OSError):  # one undeletable temp folder must not hide the rest
                    source.cleanup()


def _bench(sources: list[ModelSource], config: BenchConfig, log: Callable[[str], None]) -> list[BenchReport]:
    opened: list[_Opened] = []
    try:
        for source in sources:
            prefix = f"{source.spec}: " if len(sources) > 1 else ""
            opened.append(_open(source, config, _prefixed(log, prefix)))
        results = []
        for model in opened:
            images, modality = _inputs(model.card, max(config.batches))
            model.configs = [
                _Config(b, p, n, runner, images[:n], modality[:n])
                for (b, p), runner in model.runners.items()
                for n in sorted(config.batches)
            ]
            results.append(_cosines(model, (images, modality)))
        _time_all([model.configs for model in opened], config, log)
        return [_report(model, cosines, config) for model, cosines in zip(opened, results, strict=True)]
    finally:
        for model in opened:
            for runner in model.runners.values():
                runner.close()


def _prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    """`log` with `prefix` before every message."""
    return lambda message: log(prefix + message)


def _open(source: ModelSource, config: BenchConfig, log: Callable[[str], None]) -> _Opened:
    card = source.card(log)
    opened = _Opened(source, card, {}, [])
    try:
        for backend in config.backends:
            for precision in config.precisions:
                try:
                    runner = open_runner(source, backend, precision, config, log)
                    opened.runners[(backend, precision)] = runner
                    log(f"opened {backend} {precision}")
                except (VireidError, ImportError, OSError) as exc:
                    opened.skipped.append(Skipped(backend, precision, _reason(exc, source.workdir)))
    except BaseException:
        for runner in opened.runners.values():
            runner.close()
        raise
    return opened


def _report(
    model: _Opened,
    cosines: tuple[dict[tuple[str, str], float], tuple[str, str] | None],
    config: BenchConfig,
) -> BenchReport:
    by_runner, reference = cosines
    preprocess = {n: _preprocess_ms(model.card, n, config.crop_scale) for n in config.batches}
    rows = [
        _row(c, preprocess[c.batch], by_runner.get((c.backend, c.precision)), config.streams)
        for c in model.configs
        if c.error is None
    ]
    failed = [
        Skipped(c.backend, c.precision, f"batch {c.batch} failed while running: {c.error}")
        for c in model.configs
        if c.error is not None
    ]
    return BenchReport(
        model=model.source.spec,
        input_size=model.card.input_size,
        embedding_dim=model.card.embedding_dim,
        rows=rows,
        skipped=model.skipped + failed,
        reference=" ".join(reference) if reference else None,
        environment=environment(),
        config=config,
        peak_rss_mb=_proc_status_mb("VmHWM"),
    )


def comparison(reports: Sequence[BenchReport]) -> list[dict[str, Any]]:
    """Per configuration that ran for every model: each model's throughput (images/s) and its ratio
    to the first model's, in the first report's row order."""
    out = []
    for row in reports[0].rows:
        rows = [report.row(row.backend, row.precision, row.batch) for report in reports]
        if all(r is not None for r in rows):
            out.append(
                {
                    "backend": row.backend,
                    "precision": row.precision,
                    "batch": row.batch,
                    "throughput": [r.throughput for r in rows],  # type: ignore[union-attr]
                    "ratio_to_first": [r.throughput / row.throughput for r in rows],  # type: ignore[union-attr]
                }
            )
    return out


def model_names(reports: Sequence[BenchReport]) -> list[str]:
    """Short labels for the reports' models: file names, with as many parent folders as it takes to
    tell them apart (`a/last.onnx`, `b/last.onnx`); `random:` specs whole; a repeated model numbered."""
    specs = [report.model for report in reports]
    depth_needed = max((len(Path(s).parts) for s in specs if not s.startswith(RANDOM_PREFIX)), default=1)
    for depth in range(1, depth_needed + 1):
        names = [_tail(spec, depth) for spec in specs]
        if len(set(names)) == len(set(specs)):
            break
    repeats = collections.Counter(names)
    seen: collections.Counter[str] = collections.Counter()
    for index, name in enumerate(names):
        seen[name] += 1
        names[index] = f"{name} #{seen[name]}" if repeats[name] > 1 else name
    return names


def _tail(spec: str, depth: int) -> str:
    return spec if spec.startswith(RANDOM_PREFIX) else str(Path(*Path(spec).parts[-depth:]))


def comparison_table(reports: Sequence[BenchReport]) -> str:
    """The terminal table of `comparison`: images/s per model and, after the first, × the first's."""
    names = model_names(reports)
    width = max(16, *(len(n) for n in names))
    lines = [
        f"throughput per model (images/s; × = relative to {names[0]}), same interleaved rounds:",
        f"{'backend':9s} {'prec':4s} {'batch':>5s} " + " ".join(f"{n:>{width}s}" for n in names),
    ]
    for entry in comparison(reports):
        cells = [f"{entry['throughput'][0]:{width}.1f}"] + [
            f"{f'{t:.1f} {r:.2f}x':>{width}s}"
            for t, r in zip(entry["throughput"][1:], entry["ratio_to_first"][1:], strict=True)
        ]
        lines.append(f"{entry['backend']:9s} {entry['precision']:4s} {entry['batch']:5d} " + " ".join(cells))
    if len(lines) == 2:
        lines.append("(no configuration ran for every model)")
    return "\n".join(lines)


def _short_reason(reason: str, limit: int = 160) -> str:
    """A skip reason for the table: without the file it names (the row says which) and only its first
    sentence, cut at a word; the JSON report keeps the whole text."""
    reason = re.sub(r"^\S+\.(?:onnx|engine|plan|trt|safetensors|json): ", "", reason)
    first = reason.split(". ")[0].rstrip(".")
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0] + " ..."


def _reason(exc: BaseException, workdir: Path | None = None) -> str:
    """The error message, without the path of a file this run exported itself."""
    text = " ".join(str(exc).split())
    if workdir is not None:
        text = re.sub(re.escape(str(workdir)) + r"/\S+?: ", "", text)
    return text or type(exc).__name__


def _inputs(card: ModelCard, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, *card.input_size, 3), dtype=np.uint8)
    modality = (np.arange(batch) % 2).astype(np.int32)
    return images, modality


def _cosines(
    model: _Opened, inputs: tuple[np.ndarray, np.ndarray]
) -> tuple[dict[tuple[str, str], float], tuple[str, str] | None]:
    """Lowest cosine of each runner's embeddings to the reference runner's, on up to 8 images; a
    runner that fails here fails every configuration of it (see `_Config.call`)."""
    images, modality = inputs[0][:8], inputs[1][:8]
    outputs = {}
    for key, runner in model.runners.items():
        try:
            outputs[key] = runner.run(images, modality)
        except Exception as exc:  # reported as the configurations' skip reason
            for c in model.configs:
                if (c.backend, c.precision) == key:
                    c.error = _reason(exc)
    reference = next((key for key in REFERENCE_ORDER if key in outputs), None)
    if reference is None:
        return {}, None
    ref = _unit(outputs[reference])
    return {key: float(np.min(np.sum(_unit(out) * ref, axis=1))) for key, out in outputs.items()}, reference


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _preprocess_ms(card: ModelCard, batch: int, scale: float, repeats: int = 5) -> float:
    """Median ms to turn `batch` raw crops (`scale` × the input size) into a model batch."""
    h, w = card.input_size
    rng = np.random.default_rng(1)
    crops = [
        rng.integers(0, 256, (round(h * scale), round(w * scale), 3), dtype=np.uint8) for _ in range(batch)
    ]
    out = np.empty((batch, h, w, 3), np.uint8)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        preprocess_crops(crops, (h, w), out=out)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def _time_all(groups: list[list[_Config]], config: BenchConfig, log: Callable[[str], None]) -> None:
    """Time every configuration, one model's group after the other in each round; with several models
    every other round takes them in reverse order, so a steady drift of the machine (warming up,
    throttling) does not always land on the same model."""
    configs = [c for group in groups for c in group]
    for c in configs:  # warm-up, and the per-call time that sizes a `seconds` budget
        for _ in range(config.warmup):
            c.call()
    calls_of = {id(c): calls for c, calls in zip(configs, _calls_per_round(configs, config), strict=True)}
    for round_index in range(config.rounds):
        ordered = groups if round_index % 2 == 0 else groups[::-1]
        for c in (c for group in ordered for c in group if c.error is None):
            time.sleep(SETTLE_S)  # let the previous runtime's spinning worker threads park
            for _ in range(calls_of[id(c)]):
                seconds = c.call()
                if seconds is None:
                    c.times.clear()
                    break
                c.times.append(seconds)
                stages = c.runner.last_stages()
                if stages:
                    c.stages.append(stages)
            c.rss_mb = _proc_status_mb("VmRSS")  # resident memory right after this configuration ran
        if any(c.error is None for c in configs):
            log(f"round {round_index + 1}/{config.rounds} done")


def _calls_per_round(configs: list[_Config], config: BenchConfig) -> list[int]:
    if config.iters is not None:
        return [max(1, -(-config.iters // config.rounds)) for _ in configs]
    counts = []
    for c in configs:
        one = max(c.call() or 0.0, 1e-6)
        counts.append(max(1, round(config.seconds / config.rounds / one)))
    return counts


def _row(c: _Config, preprocess_ms: float, cosine: float | None, streams: int = 1) -> BenchRow:
    ms = 1e3 * np.asarray(c.times)
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    mean = float(ms.mean())
    split = {k: float(np.mean([s[k] for s in c.stages])) for k in ("h2d", "infer", "d2h")} if c.stages else {}
    stages = Stages(
        preprocess=preprocess_ms,
        h2d=split.get("h2d"),
        infer=split.get("infer", mean),
        d2h=split.get("d2h"),
        note="" if split else c.runner.stage_note,
    )
    return BenchRow(
        backend=c.backend,
        precision=c.precision,
        batch=c.batch,
        device=c.runner.device,
        providers=tuple(c.runner.providers),
        iterations=len(c.times),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=mean,
        throughput=streams * c.batch / (mean / 1e3),
        stages=stages,
        rss_mb=c.rss_mb,
        gpu_memory_mb=_gpu_memory_used_mb() if c.runner.device != "cpu" else None,
        cosine_to_reference=cosine,
        streams=streams,
    )


# ----- environment --------------------------------------------------------------------------------
def _proc_status_mb(key: str) -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _gpu_memory_used_mb() -> float | None:
    """Device memory in use on GPU 0 (all processes), via cuda-python or CuPy when importable."""
    with contextlib.suppress(Exception):
        from ..backends.cuda import import_cudart

        cudart = import_cudart()  # cuda.bindings.runtime (cuda-python >= 12.6) or the older cuda.cudart
        if cudart is not None:
            err, free, total = cudart.cudaMemGetInfo()
            if int(err) == 0:
                return (total - free) / 2**20
    with contextlib.suppress(Exception):
        import cupy

        free, total = cupy.cuda.runtime.memGetInfo()
        return (total - free) / 2**20
    return None


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BenchConfig",
    "BenchReport",
    "BenchRow",
    "ModelSource",
    "Skipped",
    "Stages",
    "environment",
    "run_bench",
]
