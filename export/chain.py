"""The export chain `vireid export` runs: each step's artifact verified against the previous one.

```
checkpoint ─to_onnx─► NAME.onnx ─to_fp16─► NAME.fp16.onnx ─to_engine─► NAME[.fp16].engine (+ .json)
   (PyTorch)   verify vs PyTorch    verify vs FP32 ONNX      verify vs its ONNX (GPU)
                                                                    └─to_triton─► triton/NAME/...
```

With calibration data, every ONNX/engine artifact gets its own match threshold (an FP16 artifact is
calibrated on FP16 embeddings). The chain may also start from an exported `.onnx` (e.g. on a Jetson
without PyTorch, to build the engine there).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vireid.card import ModelCard, Precision
from vireid.errors import ConfigError

from .artifact import update_card
from .calibrate import Calibration, calibrate_threshold
from .parity import ParityReport, verify

STEPS = ("onnx", "fp16", "int8", "engine", "triton")


@dataclass
class ChainResult:
    """Artifacts written, parity reports and calibrations per step, and each step's seconds."""

    artifacts: dict[str, Path] = field(default_factory=dict)
    reports: dict[str, ParityReport] = field(default_factory=dict)
    calibrations: dict[str, Calibration] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every parity report passed."""
        return all(self.reports.values())


@dataclass(frozen=True)
class ChainOptions:
    """Settings of `export_chain` beyond the steps (see its docstring)."""

    name: str | None = None
    opset: int = 17
    batch: tuple[int, int, int] = (1, 8, 32)
    workspace: int = 1 << 30
    timing_cache: Path | None = None
    dla_core: int | None = None
    calibrate: Path | None = None
    fmr: float = 1e-3
    triton_name: str | None = None
    triton_max_batch: int | None = None
    identities: int = 32
    verify: bool = True
    int8_data: Path | None = None
    int8: Any = None  # vireid.export.int8.Int8Options; None = its defaults
    overwrite: bool = False  # replace artifacts an earlier export left in out_dir


def parse_steps(text: str | Sequence[str]) -> list[str]:
    """`"onnx,fp16"` → ordered step list; unknown names raise `ConfigError` listing the options."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = sorted(set(names) - set(STEPS))
    if unknown or not names:
        raise ConfigError(f"--to takes a comma-separated list of {', '.join(STEPS)}; got {names or text!r}")
    return [s for s in STEPS if s in names]


class _Chain:
    def __init__(
        self, out_dir: Path, options: ChainOptions, emit: Callable[[str], None], builds_engine: bool = False
    ) -> None:
        self.out, self.opt, self.emit = out_dir, options, emit
        self.builds_engine = builds_engine
        self.result = ChainResult()

    def timed_step(self, step: str, fn: Callable[[], Path]) -> Path:
        start = time.perf_counter()
        path = fn()
        self.result.seconds[step] = time.perf_counter() - start
        self.result.artifacts[step] = path
        self.emit(f"{step}: wrote {path} in {self.result.seconds[step]:.1f} s")
        return path

    def check(self, step: str, reference: Any, candidate: Path, device: str) -> None:
        if not self.opt.verify:
            return
        report = verify(reference, candidate, device=device, identities=self.opt.identities)
        self.result.reports[step] = report
        self.emit(str(report))

    def calibrate(self, step: str, path: Path, device: str) -> None:
        if self.opt.calibrate is None:
            return
        report = self.result.reports.get(step)
        if report is not None and not report.passed:
            self.emit(f"{step}: not calibrated: its parity check failed")
            return
        from vireid.backends import open_backend

        with open_backend(path, device=device) as backend:
            calibration = calibrate_threshold(
                backend.infer, self.opt.calibrate, backend.card.input_size, self.opt.fmr, source=path
            )
            card = calibration.apply(backend.card)
        if path.suffix == ".onnx":
            update_card(path, card)
        else:
            card.write_sidecar(path)
        self.result.calibrations[step] = calibration
        self.emit(f"{step}: {calibration}")
        for warning in calibration.warnings():
            self.emit(f"{step}: warning: {warning}")


def export_chain(
    source: str | Path,
    steps: str | Sequence[str],
    out_dir: str | Path,
    options: ChainOptions | None = None,
    emit: Callable[[str], None] = print,
) -> ChainResult:
    """Run the requested steps from a checkpoint (or an exported `.onnx`) into `out_dir`.

    Args:
        source: checkpoint (`.safetensors`/`.json`) or an exported `.onnx`.
        steps: any of `onnx, fp16, int8, engine, triton` (a later step implies the ONNX it is built from;
            `int8` needs `options.int8_data`).
        out_dir: folder for the artifacts (`NAME.onnx`, `NAME.fp16.onnx`, `NAME.int8.onnx`,
            `NAME[.fp16].engine`, `triton/`).
        options: `ChainOptions` (name, opset, engine profile/workspace/timing cache/DLA core, calibration data
            and false-match rate, Triton name/max batch, synthetic gallery size, verification on/off).
        emit: where progress lines and parity reports go (default `print`).
    """
    source, out = Path(source), Path(out_dir)
    opt = options or ChainOptions()
    wanted = parse_steps(steps)
    if _is_engine(source):
        _check_engine_source(source, wanted, opt)
    _check_data_folders(wanted, opt)
    if opt.dla_core is not None:
        _check_dla_plan(source, wanted, opt)
    name = _check_name(opt.name) if opt.name is not None else artifact_stem(source)
    _check_late_options(wanted, opt, name)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; the output (--out) of an export is a folder for its artifacts")
    _refuse_replacing(planned_outputs(source, wanted, out, name, opt), opt.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    chain = _Chain(out, opt, emit, builds_engine="engine" in wanted)
    if opt.calibrate is not None and (warning := seen_calibration_identities(source, opt.calibrate)):
        emit(warning)
    if _is_engine(source):  # built elsewhere (trtexec + --attach): only a Triton entry can follow
        _triton_stage(chain, source, name)
        return chain.result
    onnx_path, fp16_path = _onnx_stage(chain, source, wanted, name)
    if "fp16" in wanted:
        if fp16_path is not None:
            raise ConfigError(f"{source} is already FP16; drop 'fp16' from --to")
        from .fp16 import to_fp16

        fp16_path = chain.timed_step("fp16", lambda: to_fp16(onnx_path, out / f"{name}.fp16.onnx"))
        chain.check("fp16", onnx_path, fp16_path, "cpu")
        chain.calibrate("fp16", fp16_path, "cpu")
    int8_path = _int8_stage(chain, onnx_path, name) if "int8" in wanted else None
    final = int8_path or fp16_path or onnx_path  # the most compressed file is what deploys
    if "engine" in wanted:
        final = _engine_stage(chain, final)
    if "triton" in wanted:
        _triton_stage(chain, final, name)
    return chain.result


def _check_name(name: str) -> str:
    """`--name`: a plain file-name stem (`../x` wrote outside --out; an empty one fell back unseen)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(f"--name {name!r}: give a plain file name for the artifacts, e.g. 'model'")
    return name


def planned_outputs(source: Path, wanted: list[str], out: Path, name: str, opt: ChainOptions) -> list[Path]:
    """The files `export_chain` would write into `out` (what an earlier export may hold)."""
    is_onnx = source.suffix.lower() == ".onnx"
    paths = []
    if _is_engine(source):
        final = source.name
    else:
        if not is_onnx:
            paths.append(out / f"{name}.onnx")
        elif opt.calibrate is not None and (out / source.name).resolve() != source.resolve():
            paths.append(out / source.name)
        paths += [out / f"{name}.{step}.onnx" for step in ("fp16", "int8") if step in wanted]
        final = paths[-1].name if paths else source.name
        if "engine" in wanted:
            engine = out / f"{final.removesuffix('.onnx')}.engine"
            paths += [engine, engine.with_name(engine.name + ".json")]
    return paths  # a Triton entry is not listed: `to_triton` updates an entry (its version) by design


def _refuse_replacing(paths: list[Path], overwrite: bool) -> None:
    earlier = [p for p in paths if p.exists()]
    if earlier and not overwrite:
        shown = ", ".join(str(p) for p in earlier[:4]) + (", ..." if len(earlier) > 4 else "")
        raise ConfigError(
            f"an earlier export left {shown}; pass --overwrite to replace it (a failed check would then "
            "leave the new, failing file in its place), or choose another --out or --name"
        )


def _check_engine_source(source: Path, wanted: list[str], opt: ChainOptions) -> None:
    """An engine can only be packaged for Triton: refuse what would otherwise be skipped silently."""
    if wanted != ["triton"]:
        raise ConfigError(
            f"{source} is a TensorRT engine; the only step from an engine is triton (--to triton). "
            "The other steps start from a checkpoint or an .onnx"
        )
    if opt.calibrate is not None:
        raise ConfigError(
            f"--calibrate: {source} is an engine, which this machine may not run; calibrate the .onnx it "
            "was built from (vireid export MODEL.onnx --to triton --calibrate DIR --out OUT writes "
            "OUT/MODEL.onnx with the threshold) and attach that card to the engine again (--attach)"
        )


_MODEL_SUFFIXES = (".safetensors", ".json", ".onnx", ".engine", ".plan", ".trt")
_PRECISION_TAGS = (".fp32", ".fp16", ".int8")


def artifact_stem(source: Path) -> str:
    """The name artifacts exported from `source` share: its file name without the format suffix and a
    precision tag (`run/model.best.safetensors` -> `model.best`, `last.fp16.onnx` -> `last`)."""
    name = source.name
    for suffixes in (_MODEL_SUFFIXES, _PRECISION_TAGS):
        for suffix in suffixes:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return name


def triton_safe(name: str) -> str:
    """A default Triton model name from an artifact name: characters Triton refuses become `_`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return "_" + safe if safe.startswith(".") else safe


def _is_engine(path: Path) -> bool:
    from vireid.backends.registry import FORMATS

    return path.suffix.lower() in FORMATS["tensorrt"].suffixes


def _triton_stage(chain: _Chain, artifact: Path, name: str) -> None:
    from .triton import to_triton

    opt = chain.opt
    model = to_triton(
        artifact, chain.out / "triton", opt.triton_name or triton_safe(name), opt.triton_max_batch
    )
    chain.result.artifacts["triton"] = model.directory
    chain.emit(f"triton: wrote {model.config} ({model.platform}, max_batch_size {model.max_batch_size})")


def _check_late_options(wanted: list[str], opt: ChainOptions, name: str) -> None:
    """Options only the engine and Triton steps read, checked before the first step runs."""
    if "engine" in wanted:
        from .tensorrt import batch_profile

        batch_profile(opt.batch)
        if "int8" in wanted and getattr(opt.int8, "target", None) == "onnxruntime":
            raise ConfigError(
                "--int8-target onnxruntime cannot become a TensorRT engine (its parser takes int8 symmetric "
                "Q/DQ only); drop --int8-target (the chain then quantises for TensorRT) or drop 'engine'"
            )
    if "triton" in wanted:
        from .triton import check_model_name

        check_model_name(opt.triton_name or triton_safe(name))


def _check_data_folders(wanted: list[str], opt: ChainOptions) -> None:
    """The folders later steps read, checked before the first step spends minutes."""
    if "int8" in wanted and opt.int8_data is None:
        raise ConfigError(
            "the int8 step needs calibration images: pass --int8-data DIR (a SYSU-MM01 or RegDB folder; "
            "its training identities are used, never its test identities)"
        )
    for flag, folder, kind in (
        ("--int8-data", opt.int8_data if "int8" in wanted else None, "a SYSU-MM01 or RegDB dataset folder"),
        ("--calibrate", opt.calibrate, "a SYSU-MM01-layout dataset folder"),
    ):
        if folder is not None and not Path(folder).is_dir():
            raise ConfigError(f"{flag} {folder}: no such folder; give {kind}")
    if opt.calibrate is not None:
        from vireid.training.data.layouts import layout_of

        if (layout := layout_of(opt.calibrate)) != "sysu":
            seen = " (it looks like RegDB, which has no val identities)" if layout == "regdb" else ""
            raise ConfigError(
                f"--calibrate {opt.calibrate}: threshold calibration reads the val identities of a "
                f"SYSU-MM01-layout folder (cam1..cam6, exp/); this is not one{seen}. `vireid synth sysu "
                "--out DIR` makes a synthetic one"
            )
        _check_calibration_identities(Path(opt.calibrate))


def _check_calibration_identities(root: Path) -> None:
    """Impostor pairs need two val identities with images in both modalities: found out after the ONNX
    step, the export stopped half-way and left a file without a threshold."""
    from vireid.training.data.sysu import SysuMM01

    data = SysuMM01(root)
    images = data.train_set()
    val = images.select(np.isin(images.pids, data.ids("val")))
    both = [p for p in set(val.pids.tolist()) if len(set(val.modalities[val.pids == p].tolist())) == 2]
    if len(both) < 2:
        raise ConfigError(
            f"--calibrate {root}: {len(both)} val identities with images in both modalities; the threshold "
            "needs at least 2 (impostor pairs). Use a folder with more, e.g. `vireid synth sysu --out DIR "
            "--val-ids 10` or the default `vireid synth sysu --out DIR`"
        )


def _engine_precision(source: Path, wanted: list[str]) -> Precision:
    """Precision of the file the engine step will build from: INT8 > FP16 > the source's own."""
    if "int8" in wanted:
        return Precision.INT8
    if "fp16" in wanted:
        return Precision.FP16
    return ModelCard.from_onnx(source).precision if source.suffix.lower() == ".onnx" else Precision.FP32


def _check_dla_plan(source: Path, wanted: list[str], opt: ChainOptions) -> None:
    """Refuse a `--dla-core` chain that cannot end in a DLA engine, before its first step runs."""
    from .tensorrt import batch_profile, check_dla_request

    if "engine" not in wanted:
        raise ConfigError("--dla-core applies to the engine step: add engine to --to")
    profile = batch_profile(opt.batch)
    check_dla_request(opt.dla_core, _engine_precision(source, wanted), profile)
    if "triton" in wanted and profile.max != 1:
        raise ConfigError(
            f"Triton sends batches from 1 up to max_batch_size, and a DLA engine has one fixed batch "
            f"({profile.max} here): serve it with --batch 1,1,1, or drop triton from --to"
        )


def seen_calibration_identities(source: Path, calibrate_dir: Path) -> str | None:
    """A warning when a checkpoint trained on the val identities of the data it is calibrated on.

    With `data.val_split: test` (the reference code's way) training uses the train *and* val
    identities, so a threshold fitted on those val pairs comes from identities the model has seen and
    reads optimistic false-match rates. The data is recognised by content (the checkpoint's training
    fingerprint, which ignores where the folder lives). None when the checkpoint held the val ids out,
    trained on other data, or the source is not a checkpoint (artifact cards carry no training record).
    """
    import json

    from vireid.training.checkpoint import paths_for

    if source.suffix.lower() not in (".safetensors", ".json"):
        return None
    meta_file = paths_for(source)[1]
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    trained = meta.get("data", {})
    split = meta.get("train_config", {}).get("data", {}).get("val_split", "test")
    if split == "val" or trained.get("dataset") != "sysu" or "sha256" not in trained:
        return None
    if _sysu_training_fingerprint(calibrate_dir) != trained["sha256"]:
        return None
    return (
        f"calibrate: warning: {source.name} trained on the val identities of {calibrate_dir} "
        "(data.val_split: test), so the threshold is fitted on identities the model has seen and its "
        "false-match rate is optimistic; train with data.val_split: val, or calibrate on other data"
    )


def _sysu_training_fingerprint(root: Path) -> str | None:
    """The fingerprint a `val_split: test` run on `root` records (train + val ids), or None."""
    from vireid.errors import DatasetError
    from vireid.training.data.sysu import SysuMM01
    from vireid.training.factory import data_fingerprint

    try:
        return data_fingerprint("sysu", root, SysuMM01(root).train_set(with_val=True))["sha256"]
    except DatasetError:
        return None  # not a SYSU folder: the calibration step itself says what is wrong


def _onnx_stage(chain: _Chain, source: Path, wanted: list[str], name: str) -> tuple[Path, Path | None]:
    """The FP32 ONNX (exported and checked, or the given file) and the given FP16 file, if any."""
    if source.suffix.lower() == ".onnx":
        if "onnx" in wanted:
            raise ConfigError(f"{source} is already ONNX; drop 'onnx' from --to (or pass the checkpoint)")
        card = ModelCard.from_onnx(source)
        if chain.opt.calibrate is not None:  # the given model is calibrated too, as a copy in --out
            source = _calibrated_copy(chain, source, card)
        return source, (source if card.precision is Precision.FP16 else None)
    from .onnx_export import to_onnx

    onnx_path = chain.timed_step(
        "onnx", lambda: to_onnx(source, chain.out / f"{name}.onnx", opset=chain.opt.opset)
    )
    chain.check("onnx", source, onnx_path, "cpu")
    chain.calibrate("onnx", onnx_path, "cpu")
    return onnx_path, None


def _calibrated_copy(chain: _Chain, source: Path, card: ModelCard) -> Path:
    """`source` copied into the output folder (unless it is there already) with a calibrated card."""
    copy = chain.out / source.name
    if copy.resolve() != source.resolve():
        shutil.copyfile(source, copy)
    step = "fp16" if card.precision is Precision.FP16 else "onnx"
    chain.calibrate(step, copy, "cpu")
    chain.result.artifacts[step] = copy
    return copy


def _int8_stage(chain: _Chain, onnx_path: Path, name: str) -> Path:
    """INT8 QDQ from the FP32 ONNX, calibrated on `int8_data`'s training images, checked against FP32."""
    from .int8 import Int8Options, to_int8

    options = chain.opt.int8 or Int8Options()
    if options.target is None:  # TensorRT parses signed symmetric QDQ only
        options = dataclasses.replace(options, target="tensorrt" if chain.builds_engine else "onnxruntime")
    data = chain.opt.int8_data
    if data is None:  # refused by `_check_data_folders` before the first step
        raise ConfigError("the int8 step needs calibration images: pass --int8-data DIR")
    start = time.perf_counter()
    result = to_int8(onnx_path, chain.out / f"{name}.int8.onnx", data=data, options=options)
    chain.result.seconds["int8"] = time.perf_counter() - start
    chain.result.artifacts["int8"] = result.path
    kept = ", ".join(result.kept_float) or "none"
    chain.emit(f"int8: wrote {result.path}; kept in float by the sensitivity pass: {kept}")
    chain.emit("int8: probe cosine to FP32 " + ", ".join(f"{k} {v:.4f}" for k, v in result.cosine.items()))
    chain.check("int8", onnx_path, result.path, "cpu")
    chain.calibrate("int8", result.path, "cpu")
    return result.path


def _engine_stage(chain: _Chain, onnx_path: Path) -> Path:
    from .tensorrt import to_engine

    opt = chain.opt
    engine = chain.out / f"{onnx_path.name.removesuffix('.onnx')}.engine"
    cache = opt.timing_cache or chain.out / "timing.cache"
    path = chain.timed_step(
        "engine",
        lambda: to_engine(
            onnx_path,
            engine,
            batch=opt.batch,
            workspace=opt.workspace,
            timing_cache=cache,
            dla_core=opt.dla_core,
        ),
    )
    chain.check("engine", onnx_path, path, "auto")  # auto: the ONNX on CUDA (or CPU), the engine on TensorRT
    chain.calibrate("engine", path, "auto")
    return path
