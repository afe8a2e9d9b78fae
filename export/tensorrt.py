"""ONNX → TensorRT engine with the TensorRT 8.5 … 11.x Python API, plus the `<engine>.json` card.

Named tensors, one optimisation profile on the batch dimension of every input, a timing cache that is
read before and written after each build, and precision taken from the ONNX file:

- FP16 ONNX (from `to_fp16`): a strongly typed network on TensorRT 10 (`STRONGLY_TYPED`), the only
  kind TensorRT 11 builds; TensorRT 8.x has no strong typing and gets `BuilderFlag.FP16` instead.
- FP32 ONNX, `precision="fp32"`: FP32 kernels; TF32 is switched off unless `tf32=True`.
- FP32 ONNX, `precision="fp16"` (TensorRT ≤ 10 only): `BuilderFlag.FP16` with the fragile layers (input
  path, head, reductions) pinned to FP32 under `OBEY_PRECISION_CONSTRAINTS`. TensorRT 11 removed that
  path; convert with `to_fp16` first.
- INT8 ONNX (QDQ, from `to_int8`): explicit quantisation. The calibrated scales travel in the Q/DQ
  nodes, so the engine uses the same two-modality calibration as ONNX Runtime: a strongly typed network
  on TensorRT 10/11 (11 removed implicit calibrators and the INT8 flag), `BuilderFlag.INT8` + `FP16` on
  8.x. No `IInt8Calibrator` is used.

`dla_core=k` (Jetson AGX Orin / Orin NX) builds for Deep Learning Accelerator core k with GPU
fallback for layers DLA cannot run: FP16 or INT8 files only, a fixed batch (profile min = opt = max,
DLA has no dynamic shapes), not on TensorRT 10.8–11.4.0 (no Jetson DLA there: 10.7 is the last 10.x
with it, 11.4.1 restores it on AGX Orin). The card records the core and
the engine backend sets `runtime.DLA_core` before deserialising.

`tensorrt` is imported when a build starts. Without it, `MissingDependencyError` names the `tensorrt`
extra and carries the equivalent `trtexec` command line; `attach_card` then writes the card for the
engine `trtexec` builds.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vireid.backends.trt_engine import other_format
from vireid.card import BatchProfile, ModelCard, Precision
from vireid.errors import ArtifactError, ConfigError, DeviceError, MissingDependencyError

from .artifact import load_onnx, log, timed, write_artifact
from .fp16 import fp32_node_names

DEFAULT_BATCH = (1, 8, 32)
DEFAULT_WORKSPACE = 1 << 30
PURPOSE = "Building a TensorRT engine"


def engine_path_for(onnx_path: str | Path) -> Path:
    """Default engine path: `<onnx stem>.engine` beside the ONNX file."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + ".engine")


def batch_profile(batch: Sequence[int] | BatchProfile) -> BatchProfile:
    if isinstance(batch, BatchProfile):
        return batch
    values = tuple(batch)
    if len(values) != 3:
        raise ConfigError(f"batch must be (min, opt, max), got {values!r}")
    try:
        return BatchProfile(*values)
    except ArtifactError as exc:
        raise ConfigError(f"batch {values}: {exc}") from None


def _shape(card: ModelCard, name: str, n: int) -> str:
    return (
        f"{name}:{n}x{card.input_height}x{card.input_width}x3"
        if name == card.input_names[0]
        else f"{name}:{n}"
    )


def trtexec_command(
    onnx_path: str | Path,
    out: str | Path | None = None,
    *,
    batch: Sequence[int] | BatchProfile = DEFAULT_BATCH,
    precision: str | Precision | None = None,
    workspace: int = DEFAULT_WORKSPACE,
    timing_cache: str | Path | None = None,
    dla_core: int | None = None,
) -> str:
    """The `trtexec` command line that builds the same engine as `to_engine` (TensorRT 10/11; on 8.6,
    JetPack 6.0, replace `--stronglyTyped` by `--fp16`, or `--int8 --fp16` for an INT8 model)."""
    card = ModelCard.from_onnx(onnx_path)
    profile = batch_profile(batch)
    wanted = _precision(card, precision, major=None)
    check_dla_request(dla_core, wanted, profile)
    if card.precision is Precision.INT8:
        _check_int8_for_tensorrt(Path(onnx_path))
    out = Path(out) if out is not None else engine_path_for(onnx_path)
    shapes = {
        flag: ",".join(_shape(card, name, n) for name in card.input_names)
        for flag, n in (("min", profile.min), ("opt", profile.opt), ("max", profile.max))
    }
    args = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={out}",
        f"--memPoolSize=workspace:{max(1, workspace >> 20)}M",
        *(f"--{flag}Shapes={value}" for flag, value in shapes.items()),
    ]
    if timing_cache is not None:
        args.append(f"--timingCacheFile={timing_cache}")
    if card.precision in (Precision.FP16, Precision.INT8):
        args.append("--stronglyTyped")  # TensorRT 10; a no-op (always on) in 11
    elif wanted is Precision.FP16:  # TensorRT <= 10 only; the fragile layers pinned as to_engine does
        names = ",".join(f"{name}:fp32" for name in sorted(float_fp32_nodes(load_onnx(onnx_path))))
        args += ["--fp16", "--precisionConstraints=obey", f"--layerPrecisions={names}"]
        args.append(f"--layerOutputTypes={names}")
    else:
        args.append("--noTF32")
    if dla_core is not None:
        args += [f"--useDLACore={dla_core}", "--allowGPUFallback"]
    return " ".join(shlex.quote(a) for a in args)


def check_dla_request(dla_core: int | None, precision: Precision, profile: BatchProfile) -> None:
    """Refuse DLA builds DLA cannot run, before any TensorRT work (see the module docstring).

    Raises:
        ConfigError: a negative core, an FP32 engine, or a batch profile that is not fixed.
    """
    if dla_core is None:
        return
    if not isinstance(dla_core, int) or isinstance(dla_core, bool) or dla_core < 0:
        raise ConfigError(f"dla_core must be a DLA core index (0, 1, ...), got {dla_core!r}")
    if precision is Precision.FP32:
        raise ConfigError(
            "DLA runs FP16 or INT8 only: build from the .fp16.onnx or .int8.onnx "
            "(`vireid export CHECKPOINT --to fp16,engine --dla-core K`)"
        )
    if not profile.min == profile.opt == profile.max:
        raise ConfigError(
            f"DLA has no dynamic shapes, got the batch profile {profile.min},{profile.opt},{profile.max}: "
            "pass one fixed batch, e.g. --batch 8,8,8 (the backend pads smaller batches, splits larger ones)"
        )


def _refuse_unavailable_dla(trt: Any, builder: Any, dla_core: int) -> None:
    problem = _dla_problem(str(trt.__version__), int(builder.num_DLA_cores), dla_core)
    if problem:
        raise DeviceError(f"{problem}; build for the GPU (no --dla-core) instead")


def _dla_problem(version: str, available: int, dla_core: int) -> str | None:
    """Why this TensorRT / device cannot build for DLA core `dla_core`, or None."""
    parts = [int(p) for p in str(version).split(".")[:3] if p.isdigit()]
    release = tuple(parts + [0] * (3 - len(parts)))
    if (10, 8, 0) <= release < (11, 4, 1):
        return (
            f"TensorRT {version} has no DLA support on Jetson (10.7 is the last 10.x with DLA; "
            "11.4.1 restores it on AGX Orin with JetPack >= 7.2.2)"
        )
    if dla_core >= available:
        cores = f"cores 0..{available - 1}" if available else "no DLA cores"
        return f"DLA core {dla_core} requested, but this device has {cores}"
    return None


def _precision(card: ModelCard, requested: str | Precision | None, major: int | None) -> Precision:
    """The engine precision, refusing combinations the ONNX file or TensorRT version cannot give."""
    wanted = card.precision if requested is None else Precision.parse(requested)
    if card.precision is Precision.INT8:
        if wanted is not Precision.INT8:
            raise ConfigError(
                "this ONNX file is INT8 (QDQ); build from the FP32 or FP16 ONNX for that precision"
            )
        return wanted
    if wanted is Precision.INT8:
        raise ConfigError(
            "INT8 engines are built from an INT8 QDQ ONNX (explicit quantisation): run "
            "`vireid export CHECKPOINT --to int8,engine --int8-data DIR`, or pass the .int8.onnx"
        )
    if card.precision is Precision.FP16 and wanted is Precision.FP32:
        raise ConfigError(
            "this ONNX file is FP16; an FP32 engine must be built from the FP32 ONNX (the one to_fp16 read)"
        )
    if card.precision is Precision.FP32 and wanted is Precision.FP16 and major is not None and major >= 11:
        raise ConfigError(
            "TensorRT 11 builds FP16 engines only from an FP16 ONNX file: convert first with "
            "vireid.export.to_fp16 (or `vireid export CHECKPOINT --to fp16,engine`)"
        )
    return wanted


def attach_card(
    engine_path: str | Path,
    onnx_path: str | Path,
    *,
    batch: Sequence[int] | BatchProfile = DEFAULT_BATCH,
    precision: str | Precision | None = None,
    tensorrt_version: str | None = None,
    gpu_name: str | None = None,
    compute_capability: str | None = None,
    dla_core: int | None = None,
) -> Path:
    """Write `<engine>.json` for an engine built outside vireid (e.g. by `trtexec`) from `onnx_path`.

    TensorRT version and GPU left as None are not checked when the engine is opened (TensorRT's own
    deserialisation check still applies). Returns the sidecar path.
    """
    card = ModelCard.from_onnx(onnx_path)
    if not Path(engine_path).is_file():
        raise ArtifactError(
            f"{engine_path}: no such engine file; build it first with the trtexec line that "
            "`vireid export SOURCE --trtexec` prints (trtexec_command in Python)"
        )
    kind = other_format(Path(engine_path))
    if kind is not None:
        raise ArtifactError(
            f"{engine_path}: this is {kind}, not a TensorRT engine; give the file trtexec wrote with "
            f"--saveEngine (`vireid export SOURCE --trtexec` prints the line)"
        )
    wanted, profile = _precision(card, precision, major=None), batch_profile(batch)
    check_dla_request(dla_core, wanted, profile)
    engine_card = card.replace(
        precision=wanted,
        profile=profile,
        tensorrt_version=tensorrt_version,
        gpu_name=gpu_name,
        compute_capability=compute_capability,
        dla_core=dla_core,
    )
    return engine_card.write_sidecar(engine_path)


def _check_int8_for_tensorrt(onnx_path: Path) -> None:
    """Refuse, before any build, an INT8 file quantised for ONNX Runtime's CPU kernels."""
    import onnx

    from .int8 import tensorrt_incompatible_quantisation

    problem = tensorrt_incompatible_quantisation(onnx.load(str(onnx_path), load_external_data=False))
    if problem:
        raise ConfigError(
            f"{onnx_path}: {problem}. Quantise for TensorRT: `vireid export MODEL.onnx --to int8,engine "
            "--int8-data DIR` (the chain does it when it builds an engine), or to_int8(..., "
            "options=Int8Options(target='tensorrt'))"
        )


def attach_command(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    batch: Sequence[int] | BatchProfile = DEFAULT_BATCH,
    precision: str | Precision | None = None,
    dla_core: int | None = None,
) -> str:
    """The `vireid export ... --attach` line that writes the card of an engine `trtexec_command` built
    with the same settings (profile, precision, DLA core), so the card describes that engine."""
    profile = batch_profile(batch)
    args = ["vireid", "export", str(onnx_path), "--attach", str(engine_path)]
    if (profile.min, profile.opt, profile.max) != DEFAULT_BATCH:
        args.append(f"--batch={profile.min},{profile.opt},{profile.max}")
    wanted = _precision(ModelCard.from_onnx(onnx_path), precision, major=None)
    if precision is not None and wanted is not ModelCard.from_onnx(onnx_path).precision:
        args.append(f"--precision={wanted.value}")
    if dla_core is not None:
        args.append(f"--dla-core={dla_core}")
    return " ".join(shlex.quote(a) for a in args)


def _card_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: settings[key] for key in ("batch", "precision", "dla_core") if key in settings}


def _import_tensorrt(onnx_path: Path, out: Path, **settings: Any) -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        command = trtexec_command(onnx_path, out, **settings)
        attach = attach_command(onnx_path, out, **_card_settings(settings))
        raise MissingDependencyError(
            "tensorrt",
            "tensorrt",
            PURPOSE,
            hint=(
                "Or build the engine with NVIDIA's trtexec where TensorRT is installed:\n  "
                f"{command}\nthen write its card: {attach}"
            ),
        ) from None
    return trt


def _major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def _network_flags(trt: Any, major: int, strongly_typed: bool) -> int:
    flags = 0
    kinds = trt.NetworkDefinitionCreationFlag
    if major < 10:
        flags |= 1 << int(kinds.EXPLICIT_BATCH)
    elif major == 10 and strongly_typed:
        flags |= 1 << int(kinds.STRONGLY_TYPED)  # 11: always strongly typed, flag not needed
    return flags


def _parser_errors(parser: Any) -> list[str]:
    """Parser errors as `node 'NAME' (OP): description` lines (node names from TensorRT ≥ 8.6)."""
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        name = _call(error, "node_name")
        operator = _call(error, "node_operator")
        where = f"node '{name}'" if name else f"node #{_call(error, 'node')}"
        what = f" ({operator})" if operator else ""
        lines.append(f"{where}{what}: {_call(error, 'desc') or error}")
    return lines


def _call(obj: Any, method: str) -> Any:
    fn = getattr(obj, method, None)
    return fn() if callable(fn) else None


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path, flags: int) -> Any:
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with timed(f"TensorRT: parse {onnx_path.name}"):
        ok = parser.parse_from_file(str(onnx_path))
    if not ok:
        errors = "\n  ".join(_parser_errors(parser)) or "(no parser errors reported)"
        raise ArtifactError(
            f"{onnx_path}: TensorRT {trt.__version__} could not parse the ONNX model:\n  {errors}\n"
            "Export with the default opset 17 (`vireid export --opset 17`), which every supported "
            "TensorRT parses, or upgrade TensorRT."
        )
    return network, parser


def _add_profile(builder: Any, config: Any, network: Any, card: ModelCard, profile: BatchProfile) -> None:
    shapes = builder.create_optimization_profile()
    names = []
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        rest = tuple(int(d) for d in tensor.shape)[1:]
        names.append(tensor.name)
        shapes.set_shape(tensor.name, (profile.min, *rest), (profile.opt, *rest), (profile.max, *rest))
    if sorted(names) != sorted(card.input_names):
        raise ArtifactError(f"network inputs are {names}, the card promises {list(card.input_names)}")
    config.add_optimization_profile(shapes)


def _pin_fp32(trt: Any, network: Any, keep: set[str]) -> int:
    """Weakly typed FP16 build: force the kept layers (by ONNX node name) to FP32. Returns the count.

    Only layers whose outputs are all floating point: a precision constraint on a layer that computes
    no float (a Shape) has nothing to keep in FP32, and under OBEY could only fail the build.
    """
    pinned = 0
    floats = {trt.float32, trt.float16}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        outputs = [layer.get_output(out) for out in range(layer.num_outputs)]
        if layer.name not in keep or not all(tensor.dtype in floats for tensor in outputs):
            continue
        layer.precision = trt.float32
        for out in range(layer.num_outputs):
            layer.set_output_type(out, trt.float32)
        pinned += 1
    return pinned


def float_fp32_nodes(model: Any) -> set[str]:
    """The ONNX nodes a weakly typed FP16 build keeps in FP32 (`fp32_node_names`) whose outputs are all
    floating point (by ONNX shape inference): what `_pin_fp32` pins, named for trtexec."""
    import onnx

    keep = fp32_node_names(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    return {
        node.name
        for node in model.graph.node
        if node.name in keep and all(types.get(out) in floats for out in node.output)
    }


@dataclass(frozen=True)
class _Settings:
    card: ModelCard
    precision: Precision
    major: int
    profile: BatchProfile
    workspace: int
    tf32: bool
    dla_core: int | None = None


def _configure(trt: Any, builder: Any, network: Any, onnx_path: Path, settings: _Settings) -> Any:
    card, precision, major = settings.card, settings.precision, settings.major
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace))
    flag = trt.BuilderFlag
    if card.precision is Precision.FP16 and major < 10:
        config.set_flag(flag.FP16)  # no strong typing before 10: let FP16 kernels run
    elif card.precision is Precision.INT8 and major < 10:
        config.set_flag(flag.INT8)  # explicit quantisation (Q/DQ scales) on 8.x needs the flag
        config.set_flag(flag.FP16)
    elif card.precision is Precision.FP32 and precision is Precision.FP16:
        config.set_flag(flag.FP16)
        config.set_flag(flag.OBEY_PRECISION_CONSTRAINTS)
        pinned = _pin_fp32(trt, network, fp32_node_names(load_onnx(onnx_path)))
        log.info("TensorRT: FP16 flag, %d fragile layers pinned to FP32", pinned)
    if precision is Precision.FP32 and not settings.tf32 and hasattr(flag, "TF32"):
        config.clear_flag(flag.TF32)
    _add_profile(builder, config, network, card, settings.profile)
    if settings.dla_core is not None:
        _target_dla(trt, config, network, settings.dla_core)
    return config


def _target_dla(trt: Any, config: Any, network: Any, core: int) -> None:
    """Put the layers DLA can run on DLA core `core`; the rest fall back to the GPU."""
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    on_dla = sum(bool(config.can_run_on_DLA(layer)) for layer in layers)
    log.info(
        "TensorRT: %d of %d layers can run on DLA core %d, the rest on the GPU", on_dla, len(layers), core
    )


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    if data:
        log.info("TensorRT: reusing timing cache %s (%d bytes)", path, len(data))
    cache = config.create_timing_cache(data)
    if config.set_timing_cache(cache, False) is False:  # ignore_mismatch=False: another GPU's is refused
        log.warning(
            "TensorRT did not take the timing cache %s (another GPU or version?); building afresh", path
        )
    return cache


def _save_timing_cache(config: Any, path: Path | None) -> None:
    """Keep the build's timing cache for the next build; a failure costs only time, so it is a warning."""
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is None:
        log.warning("TensorRT returned no timing cache; the next build times its tactics again")
        return
    try:
        write_artifact(path, cache.serialize())
    except ArtifactError as exc:
        log.warning("timing cache not saved (%s); the engine is fine. Pass a writable --timing-cache", exc)


def _make_builder(trt: Any, logger: Any) -> Any:
    try:
        return trt.Builder(logger)
    except TypeError as exc:  # "...factory function returned nullptr" when CUDA cannot start
        said = "; ".join(logger.lines[-3:]) or str(exc)
        raise DeviceError(
            f"TensorRT could not create a builder ({said}); check the GPU with nvidia-smi"
        ) from None


def _gpu(device_id: int) -> tuple[Any, str, str]:
    from vireid.backends.cuda import load_cuda

    cuda = load_cuda()
    name, capability = cuda.open(device_id)
    return cuda, name, capability


def to_engine(
    onnx_path: str | Path,
    out: str | Path | None = None,
    *,
    batch: Sequence[int] | BatchProfile = DEFAULT_BATCH,
    precision: str | Precision | None = None,
    workspace: int = DEFAULT_WORKSPACE,
    timing_cache: str | Path | None = None,
    device_id: int = 0,
    tf32: bool = False,
    dla_core: int | None = None,
) -> Path:
    """Build a TensorRT engine from an exported ONNX file and write its `<engine>.json` card.

    Args:
        onnx_path: `.onnx` (FP32) or `.fp16.onnx` written by vireid.
        out: engine path; default `<onnx stem>.engine` beside the ONNX file.
        batch: optimisation profile `(min, opt, max)` on the batch axis of both inputs.
        precision: `fp16` or `fp32`; default = the ONNX file's precision.
        workspace: builder workspace limit in bytes.
        timing_cache: file read before the build (when present) and rewritten after it; reuse it to
            make later builds on the same GPU and TensorRT version much faster.
        device_id: CUDA device to build on (engines are specific to its type).
        tf32: allow TF32 kernels in an FP32 engine (off by default so FP32 means FP32).
        dla_core: build for this DLA core (Jetson) with GPU fallback; needs an FP16/INT8 file and a
            fixed batch (`batch=(8, 8, 8)`). None (default) builds for the GPU.

    Returns:
        The engine path. The sidecar card records the engine's SHA-256, TensorRT version, GPU name,
        compute capability, profile and precision.

    Raises:
        MissingDependencyError: TensorRT (or cuda-python) is not installed; the message holds the
            equivalent trtexec command line.
        ArtifactError: unreadable ONNX, parser errors (with node names), or a failed build.
        ConfigError: a precision the file or TensorRT version cannot give, or a bad profile.
        DeviceError: no usable GPU.
    """
    onnx_path = Path(onnx_path)
    out = Path(out) if out is not None else engine_path_for(onnx_path)
    card = ModelCard.from_onnx(onnx_path)
    profile = batch_profile(batch)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    check_dla_request(dla_core, _precision(card, precision, major=None), profile)
    if card.precision is Precision.INT8:
        _check_int8_for_tensorrt(onnx_path)
    trt = _import_tensorrt(
        onnx_path,
        out,
        batch=profile,
        precision=precision,
        workspace=workspace,
        timing_cache=cache_path,
        dla_core=dla_core,
    )
    major = _major(trt)
    settings = _Settings(card, _precision(card, precision, major), major, profile, workspace, tf32, dla_core)
    from vireid.backends.trt_engine import make_logger

    cuda, gpu_name, capability = _gpu(device_id)
    try:
        logger = make_logger(trt)
        builder = _make_builder(trt, logger)
        if dla_core is not None:
            _refuse_unavailable_dla(trt, builder, dla_core)
        strongly_typed = card.precision in (Precision.FP16, Precision.INT8)
        network, _parser = _parse(trt, builder, logger, onnx_path, _network_flags(trt, major, strongly_typed))
        config = _configure(trt, builder, network, onnx_path, settings)
        _load_timing_cache(config, cache_path)
        with timed(f"TensorRT {trt.__version__}: build {settings.precision.value} engine on {gpu_name}"):
            plan = builder.build_serialized_network(network, config)
        if plan is None:
            said = "\n  ".join(logger.lines[-10:]) or "(TensorRT logged nothing)"
            raise ArtifactError(f"{onnx_path}: TensorRT could not build an engine. TensorRT said:\n  {said}")
        write_artifact(out, plan)
        engine_card = card.replace(
            precision=settings.precision,
            profile=profile,
            tensorrt_version=str(trt.__version__),
            gpu_name=gpu_name,
            compute_capability=capability,
            dla_core=dla_core,
        )
        engine_card.write_sidecar(out)  # before anything else can fail: an engine is useless without it
        _save_timing_cache(config, cache_path)
    finally:
        cuda.release()
    return out
