"""The model card: what every exported artifact says about itself.

The runtime never guesses input size, colour order or normalisation from a file name: it reads the
card, stored in ONNX `metadata_props["vireid.card"]` and in a JSON sidecar `<engine>.json` beside a
TensorRT engine (with the engine's SHA-256, so a wrong pairing is caught).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from . import jsonio
from ._version import __version__
from .atomic import write_atomic
from .choices import Choice
from .errors import ArtifactError, CardError, InputSpecError
from .frozen import read_only
from .modality import Modality
from .text import has_invisible

SCHEMA_VERSION = 1

FINGERPRINT_MODEL_KEYS = frozenset(
    {"name", "backbone", "parts", "last_stride", "width", "input_size", "pretrained", "gem_p", "reduction"}
    | {"gate", "specific_stages", "share_convs", "patterns"}
)
"""The model-config keys vireid's models had when the embedding-space fingerprint was frozen
(2026-12): they enter `ModelCard.embedding_space()` as they are."""

LATER_MODEL_KEY_DEFAULTS: dict[str, Any] = {}
"""A model-config key added after that goes here with the value that reproduces the model as it was
without it: it then enters the fingerprint only when it differs from that value, so re-exporting a
checkpoint with a newer vireid keeps its fingerprint (and every gallery enrolled with the earlier
export). A test fails on a new key that is missing here."""
_WRITTEN_WHEN_SET = frozenset({"dla_core", "match_threshold_within"})
CARD_KEY = "vireid.card"
_SHA256 = re.compile(r"[0-9a-f]{64}")  # used with fullmatch: `$` would let a final newline in


class Precision(Choice):
    """Numeric precision of an artifact's weights and compute (I/O stays uint8/int32/float32)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"

    @classmethod
    def error_type(cls) -> type[CardError]:
        return CardError


@dataclass(frozen=True)
class BatchProfile:
    """An optimisation profile on the batch dimension: min ≤ opt ≤ max."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not (isinstance(self.min, int) and isinstance(self.opt, int) and isinstance(self.max, int)):
            raise CardError(f"batch profile values must be integers, got {self}")
        if not 1 <= self.min <= self.opt <= self.max:
            raise CardError(
                f"batch profile must satisfy 1 <= min <= opt <= max, got "
                f"min={self.min} opt={self.opt} max={self.max}"
            )


def _within_names(within: Mapping[Any, float]) -> dict[Any, float]:
    """`Modality` keys as the card's words (`Modality.VISIBLE` → "visible"); other keys stay as given."""
    return {str(k) if isinstance(k, Modality) else k: v for k, v in within.items()}


def _within_problems(within: Mapping[str, float] | None) -> list[str]:
    if within is None:
        return []
    if not isinstance(within, Mapping):
        return [f"match_threshold_within must map modality to threshold, got {within!r}"]
    names = [str(m) for m in Modality]
    problems = [
        f"match_threshold_within: unknown modality {k!r} (one of {names})" for k in within if k not in names
    ]
    problems += [
        f"match_threshold_within[{k!r}] is a cosine in [-1, 1], got {v!r}"
        for k, v in within.items()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1.0 <= v <= 1.0
    ]
    return problems


TRITON_CARD = "vireid_card.json"  # the card's file in a Triton model folder (`vireid export --to triton`)
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_NESTED = ("model_config", "match_threshold_within", "match_threshold_data", "calibration")


def _finite_number(value: Any) -> TypeGuard[float]:
    """A real, finite number (not a bool, a string or NaN), as card fields read from JSON must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rounded_up(threshold: float) -> float:
    """A threshold rounded up to 4 decimals for display and use: rounding down could let an impostor
    back in."""
    return math.ceil(threshold * 1e4 - 1e-9) / 1e4


@dataclass(frozen=True)
class ModelCard:
    """Self-description of an exported model artifact (schema-versioned, JSON round trip)."""

    model_name: str
    embedding_dim: int
    input_height: int = 288
    input_width: int = 144
    color_order: str = "RGB"
    modalities: tuple[Modality, ...] = (Modality.VISIBLE, Modality.INFRARED)
    normalized: bool = True
    precision: Precision = Precision.FP32
    model_config: Mapping[str, Any] = field(default_factory=dict)
    input_names: tuple[str, str] = ("images", "modality")
    output_name: str = "embeddings"
    opset: int | None = None
    profile: BatchProfile | None = None
    tensorrt_version: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None
    dla_core: int | None = None  # engines built for a Jetson DLA core; None = GPU (written only when set)
    source_checkpoint_sha256: str | None = None
    engine_sha256: str | None = None
    # Recommended cosine threshold, calibrated at export for a target false-match rate (`..._fmr`) on
    # cross-modal validation pairs; `..._fmr_achieved` is the rate measured there, `..._data` says on what.
    match_threshold: float | None = None
    # The same false-match rate for pairs within one modality, per modality (`{"visible": t, ...}`):
    # same-modality pairs score higher, so the cross-modal threshold would let far more impostors through.
    match_threshold_within: Mapping[str, float] | None = None
    match_threshold_fmr: float | None = None
    match_threshold_fmr_achieved: float | None = None
    match_threshold_data: Mapping[str, Any] | None = None
    calibration: Mapping[str, Any] | None = None
    vireid_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "precision", Precision.parse(self.precision))
        if isinstance(self.modalities, (str, bytes)):  # "visible" is not the list ["visible"]
            raise CardError(f"invalid model card: modalities must be a list, got {self.modalities!r}")
        set_(self, "modalities", tuple(Modality.parse(m) for m in self.modalities))
        set_(self, "input_names", tuple(self.input_names))
        if isinstance(self.profile, Mapping):
            try:
                set_(self, "profile", BatchProfile(**self.profile))
            except TypeError:
                raise CardError(
                    f"invalid model card: profile must be {{min, opt, max}}, got {dict(self.profile)!r}"
                ) from None
        elif self.profile is not None and not isinstance(self.profile, BatchProfile):
            raise CardError(
                f"invalid model card: profile must be {{min, opt, max}} or null, got {self.profile}"
            )
        if isinstance(self.match_threshold_within, Mapping):
            set_(self, "match_threshold_within", _within_names(self.match_threshold_within))
        for name in _NESTED:  # frozen all the way down: model_config decides embedding_space()
            value = getattr(self, name)
            if isinstance(value, Mapping):
                set_(self, name, read_only(value))
        self._validate()

    def _validate(self) -> None:
        problems = []
        if not self.model_name or not isinstance(self.model_name, str):
            problems.append(f"model_name must be a non-empty string, got {self.model_name!r}")
        problems.extend(_type_problems(self))
        for name in ("embedding_dim", "input_height", "input_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.color_order != "RGB":  # every preprocessing path makes RGB: a BGR model would see swaps
            problems.append(f"color_order must be 'RGB' (vireid feeds RGB), got {self.color_order!r}")
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            problems.append(f"modalities must be non-empty and unique, got {self.modalities}")
        if len(self.input_names) != 2 or len(set(self.input_names)) != 2:
            problems.append(f"input_names must be two distinct names (images, modality): {self.input_names}")
        elif self.output_name in self.input_names:
            problems.append(f"output_name {self.output_name!r} must differ from the input names")
        if not isinstance(self.model_config, Mapping):
            problems.append(f"model_config must be a mapping, got {type(self.model_config).__name__}")
        for name in ("source_checkpoint_sha256", "engine_sha256"):
            value = getattr(self, name)
            if value is not None and not _SHA256.fullmatch(str(value)):
                problems.append(f"{name} must be 64 lowercase hex digits, got {value!r}")
        if self.dla_core is not None and (
            not isinstance(self.dla_core, int) or isinstance(self.dla_core, bool) or self.dla_core < 0
        ):
            problems.append(f"dla_core must be a non-negative integer or null, got {self.dla_core!r}")
        threshold = self.match_threshold
        if (
            isinstance(threshold, (int, float))
            and not isinstance(threshold, bool)
            and not -1.0 <= threshold <= 1.0
        ):
            problems.append(f"match_threshold is a cosine in [-1, 1], got {self.match_threshold}")
        problems.extend(_within_problems(self.match_threshold_within))
        for name in ("match_threshold_fmr", "match_threshold_fmr_achieved"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                problems.append(f"{name} is a false-match rate in [0, 1], got {value}")
        if self.schema_version != SCHEMA_VERSION:
            problems.append(f"schema_version must be {SCHEMA_VERSION}, got {self.schema_version}")
        if problems:
            raise CardError("invalid model card: " + "; ".join(problems))

    # ----- identity ---------------------------------------------------------------------------
    def threshold_for(self, query: Modality | str, entry: Modality | str) -> float | None:
        """The calibrated threshold for comparing a `query` embedding with an `entry` one.

        Cross-modal pairs use `match_threshold`; same-modality pairs use `match_threshold_within` for that
        modality, or None when the card has none (cards exported before vireid calibrated them; the
        pipeline then falls back to the cross-modal threshold and warns).
        """
        query, entry = Modality.parse(query), Modality.parse(entry)
        if query is not entry:
            return self.match_threshold
        within = self.match_threshold_within or {}
        return within.get(str(query))

    @property
    def track_mean_threshold(self) -> float | None:
        """The cross-modal threshold that gives `match_threshold_fmr` where the stream pipeline uses
        it, on means of several infrared images against visible enrolment centroids (means of
        impostors score higher than their single images do), rounded up to 4 decimals, and never
        below `match_threshold` (an estimate from a few identities that asks for less is not trusted).

        Export estimates it at calibration (`match_threshold_data["track_means"]`). None when the card
        has no such estimate (exported before vireid made it), no single-image threshold, or too few
        impostor comparisons to resolve the target rate."""
        track = (self.match_threshold_data or {}).get("track_means")
        fmr, single = self.match_threshold_fmr, self.match_threshold
        if not isinstance(track, Mapping) or fmr is None or single is None:
            return None
        value, comparisons = track.get("threshold_for_target"), track.get("impostor_pairs")
        if not (_finite_number(value) and _finite_number(comparisons)):
            return None
        if not -1.0 <= value <= 1.0 or comparisons * fmr < 1:
            return None
        return max(rounded_up(float(value)), single)

    @property
    def input_size(self) -> tuple[int, int]:
        """Input `(height, width)` in pixels."""
        return self.input_height, self.input_width

    def embedding_space(self) -> str:
        """Fingerprint of the embedding space: vectors are comparable only when it is equal.

        Precision is left out on purpose: FP16 and INT8 artifacts of one checkpoint embed into the
        same space as their FP32 parent. Model-config keys added in later vireid versions are left out
        while they hold their neutral value (`LATER_MODEL_KEY_DEFAULTS`), so an upgrade that re-exports
        a checkpoint does not orphan its galleries.
        """
        config = {
            key: value
            for key, value in self.model_config.items()
            if key not in LATER_MODEL_KEY_DEFAULTS or value != LATER_MODEL_KEY_DEFAULTS[key]
        }
        key = json.dumps(
            [self.model_name, self.embedding_dim, self.source_checkpoint_sha256, config], sort_keys=True
        )
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ----- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in _WRITTEN_WHEN_SET:
                continue  # so cards without it stay readable by vireid versions that predate the key
            if isinstance(value, Precision):
                value = value.value
            elif f.name == "modalities":
                value = [str(m) for m in value]
            elif isinstance(value, BatchProfile):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys); a NaN (a rate with nothing to measure) is written as null,
        which every JSON reader takes."""
        return jsonio.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "card") -> ModelCard:
        """Build a card from a dict, refusing unknown schema versions and unknown keys."""
        if not isinstance(data, Mapping):
            raise CardError(f"{source}: a model card must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise CardError(f"{source}: model card has no integer 'schema_version'")
        if version > SCHEMA_VERSION:
            raise CardError(
                f"{source}: model card schema version {version} is newer than this vireid "
                f"({__version__}) understands (up to {SCHEMA_VERSION}); upgrade vireid: "
                "pip install -U vireid"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            written_by = data.get("vireid_version")
            hint = (
                f"; the card was written by vireid {written_by}, newer than this {__version__}, which may "
                "have added them (upgrade vireid: pip install -U vireid)"
                if _newer_version(written_by, __version__)
                else ""
            )
            raise CardError(f"{source}: unknown model card keys {unknown}; known keys: {sorted(known)}{hint}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise CardError(f"{source}: model card lacks {', '.join(missing)}; re-export the model")
        try:
            return cls(**dict(data))
        except TypeError as exc:  # a field of the wrong JSON type met a comparison or a conversion
            raise CardError(
                f"{source}: a model card field has the wrong type ({exc}); re-export the model rather than "
                "editing its card"
            ) from exc
        except (CardError, InputSpecError) as exc:  # e.g. a modality name no vireid writes
            raise CardError(f"{source}: {exc}") from exc

    @classmethod
    def from_json(cls, text: str, source: str = "card") -> ModelCard:
        """Parse a card from JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CardError(f"{source}: model card is not valid JSON ({exc})") from exc
        return cls.from_dict(data, source)

    # ----- files ------------------------------------------------------------------------------
    @classmethod
    def from_onnx(cls, path: str | Path) -> ModelCard:
        """Read the card from an ONNX file's `metadata_props` (no `onnx` import)."""
        from .onnx_metadata import read_onnx_metadata

        props = read_onnx_metadata(path)
        if CARD_KEY not in props:
            raise CardError(
                f"{path}: ONNX file has no '{CARD_KEY}' metadata; it was not exported by vireid. "
                "Export it with `vireid export CHECKPOINT --to onnx`."
            )
        return cls.from_json(props[CARD_KEY], source=str(path))

    @staticmethod
    def sidecar_path(engine_path: str | Path) -> Path:
        """Where the card of an engine lives: `<engine>.json`."""
        engine_path = Path(engine_path)
        return engine_path.with_name(engine_path.name + ".json")

    def write_sidecar(self, engine_path: str | Path) -> Path:
        """Write this card beside an engine, recording the engine's SHA-256."""
        card = self.replace(engine_sha256=sha256_file(engine_path))
        return write_atomic(self.sidecar_path(engine_path), card.to_json() + "\n")

    @classmethod
    def from_engine(cls, engine_path: str | Path, check_hash: bool = True) -> ModelCard:
        """Read an engine's sidecar card and, by default, check the engine's SHA-256 against it."""
        engine_path = Path(engine_path)
        sidecar = cls.sidecar_path(engine_path)
        if not sidecar.is_file():
            raise CardError(
                f"{engine_path}: no model card sidecar at {sidecar}; engines built by "
                "`vireid export --to engine` carry one. Rebuild the engine with vireid."
            )
        card = cls.from_json(sidecar.read_text(encoding="utf-8"), source=str(sidecar))
        if check_hash:
            if not engine_path.is_file():
                raise CardError(f"{engine_path}: engine file not found beside its card {sidecar}")
            actual = sha256_file(engine_path)
            if card.engine_sha256 != actual:
                raise CardError(
                    f"{engine_path}: SHA-256 {actual[:12]}… does not match its card {sidecar} "
                    f"({str(card.engine_sha256)[:12]}…); the engine and card do not belong together. "
                    "Rebuild the engine or restore the matching card."
                )
        return card

    @classmethod
    def from_artifact(cls, path: str | Path) -> ModelCard:
        """Read the card of any artifact: `.onnx` from metadata, a Triton model folder from its
        `vireid_card.json`, anything else from its sidecar."""
        path = Path(path)
        if path.is_dir() and (path / TRITON_CARD).is_file():
            return cls.from_json((path / TRITON_CARD).read_text(encoding="utf-8"), str(path / TRITON_CARD))
        if path.is_dir():
            raise ArtifactError(
                f"{path}: is a folder without a {TRITON_CARD}; give an .onnx file, a TensorRT engine, or a "
                f"Triton model folder (e.g. {path / 'NAME'} inside a repository written by vireid export)"
            )
        if path.suffix.lower() == ".onnx":
            return cls.from_onnx(path)
        if path.suffix.lower() in _CHECKPOINT_SUFFIXES:
            raise ArtifactError(
                f"{path}: a training checkpoint, not an exported model; cards belong to .onnx files and "
                f"TensorRT engines. Export it first: vireid export {path}"
            )
        if path.is_file():
            from .backends.trt_engine import other_format  # light: tensorrt itself is imported lazily

            kind = other_format(path)
            if kind is not None:
                raise ArtifactError(
                    f"{path}: this is {kind}, not a model; give an .onnx file, a TensorRT engine (with its "
                    ".json card beside it) or a Triton model folder"
                )
        return cls.from_engine(path)


def _type_problems(card: ModelCard) -> list[str]:
    """Fields a hand-edited card may carry with the wrong type (they fail later, far from the cause)."""
    problems = []
    if not isinstance(card.normalized, bool):
        problems.append(f"normalized must be true or false, got {card.normalized!r}")
    if card.opset is not None and (
        not isinstance(card.opset, int) or isinstance(card.opset, bool) or card.opset < 1
    ):
        problems.append(f"opset must be a positive integer or null, got {card.opset!r}")
    if not all(isinstance(name, str) and name for name in (*card.input_names, card.output_name)):
        problems.append(
            f"input and output names must be non-empty strings: {card.input_names}, {card.output_name!r}"
        )
    threshold = card.match_threshold
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        problems.append(f"match_threshold must be a number or null, got {threshold!r}")
    for name in ("calibration", "match_threshold_data"):
        value = getattr(card, name)
        if value is not None and not isinstance(value, Mapping):
            problems.append(f"{name} must be an object or null, got {type(value).__name__}")
    for name in ("tensorrt_version", "gpu_name", "compute_capability"):
        value = getattr(card, name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name} must be a string or null, got {value!r}")
    if not isinstance(card.vireid_version, str):
        problems.append(f"vireid_version must be a string, got {card.vireid_version!r}")
    return problems + _text_problems(card)


def _text_problems(card: ModelCard) -> list[str]:
    """Card text reaches terminals and logs (`vireid info`, warnings): a downloaded model whose name
    carries `\x1b[2J` or a newline would clear the screen or forge a log line. Refused."""
    texts = {
        "model_name": card.model_name,
        "input_names": " ".join(map(str, card.input_names)),
        "output_name": card.output_name,
        "tensorrt_version": card.tensorrt_version,
        "gpu_name": card.gpu_name,
        "compute_capability": card.compute_capability,
        "vireid_version": card.vireid_version,
    }
    for section in ("model_config", "calibration"):
        value = getattr(card, section)
        if isinstance(value, Mapping):
            texts.update({f"{section}.{k}": v for k, v in value.items() if isinstance(v, str)})
    return [
        f"{name} holds control characters ({value!r})"
        for name, value in texts.items()
        if isinstance(value, str) and has_invisible(value)
    ]


def _newer_version(version: object, than: str) -> bool:
    """Whether `version` ("1.2.3", suffixes ignored) is a later release than `than`; False when either
    cannot be read (a hint must not claim what it cannot tell)."""

    def release(text: object) -> tuple[int, ...] | None:
        numbers = re.match(r"(\d+(?:\.\d+)*)", text) if isinstance(text, str) else None
        return tuple(int(part) for part in numbers[1].split(".")) if numbers else None

    mine, theirs = release(than), release(version)
    return mine is not None and theirs is not None and theirs > mine
