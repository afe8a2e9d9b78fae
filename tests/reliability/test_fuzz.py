"""Property-based fuzzing of every entry point that reads user files or arrays (hypothesis).

Each property feeds generated bad (and occasionally valid) input and accepts exactly two outcomes: a
valid result, or a `VireidError` subclass whose message names the file. Anything else (an exception
from OpenCV, ONNX Runtime, SQLite, PyYAML or numpy, a hang, a changed input file) fails the test: a
property that runs longer than `TIME_LIMIT_S` (60 s plus 0.1 s per example, generous for a decode that
is only slow) is stopped by an alarm and fails as a hang.

The default suite runs 1,000 examples per entry point (10–20 s in all on 2 cores; `VIREID_FUZZ_EXAMPLES=N`
changes it, `VIREID_FUZZ_REPORT=counts.json` writes the counts docs/reliability.md quotes). Examples are
derandomised, so a failure found once is found again on every run.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sdk"))

from contract_model import build_contract_model  # noqa: E402

from vireid import Gallery, ModelCard  # noqa: E402
from vireid.backends import open_backend  # noqa: E402
from vireid.errors import VireidError  # noqa: E402
from vireid.imageio import read_image  # noqa: E402
from vireid.preprocess import preprocess_crops  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("VIREID_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # a slow decode is not a failure; a hang is caught by `TIME_LIMIT_S`
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples every run: CI failures reproduce
)
TIME_LIMIT_S = 60 + int(0.1 * FUZZ_EXAMPLES)
WORK = Path(tempfile.mkdtemp(prefix="vireid-fuzz-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
OUTCOMES: dict[str, dict[str, int]] = {}
"""Per entry point: how many inputs were accepted and how many were refused with a VireidError."""


@pytest.fixture(autouse=True)
def _hang_alarm():
    """Fail a property that hangs (a decoder in an endless loop) instead of blocking the suite."""

    def hung(signum, frame):
        raise TimeoutError(f"a fuzz property ran longer than {TIME_LIMIT_S} s: an input made it hang")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(TIME_LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True, scope="module")
def _every_property_hit_its_refusal_path():
    """After the properties that ran (all, or those `-k` picked, in any order): each one really
    reached its refusal path; the counts are written where `VIREID_FUZZ_REPORT` says."""
    yield
    report = os.environ.get("VIREID_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(OUTCOMES, indent=2) + "\n")
    never_refused = {entry: counts for entry, counts in OUTCOMES.items() if counts["refused"] == 0}
    assert not never_refused, f"properties that never reached their refusal path: {never_refused}"


def _count(entry: str, outcome: str) -> None:
    OUTCOMES.setdefault(entry, {"accepted": 0, "refused": 0})[outcome] += 1


def _valid_files() -> dict[str, bytes]:
    """Real files whose corrupted versions the properties try: a PNG, an ONNX model, a gallery."""
    import cv2

    files = {}
    _, png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (24, 12, 3), dtype=np.uint8))
    files["png"] = png.tobytes()
    files["onnx"] = build_contract_model(WORK / "valid.onnx").read_bytes()
    # A fixed clock: with the real one the file's creation and enrolment times, so its bytes and the
    # derandomised examples derived from them, changed from run to run, and a failure found once was not
    # always found again.
    with (
        mock.patch("time.time", return_value=1.7e9),
        Gallery(WORK / "valid.db", embedding_space="fuzz", dim=16) as gallery,
    ):
        gallery.enroll("alice", np.eye(16, dtype=np.float32)[:2], "visible")
    files["db"] = (WORK / "valid.db").read_bytes()
    return files


VALID = _valid_files()


def corrupted(kind: str) -> st.SearchStrategy[bytes]:
    """Random bytes, a truncated valid file, or a valid file with a few bytes overwritten."""
    valid = VALID[kind]
    truncated = st.integers(0, len(valid)).map(lambda n: valid[:n])
    flipped = st.lists(
        st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ).map(lambda edits: _apply(valid, edits))
    return st.one_of(st.binary(max_size=4096), truncated, flipped)


def _apply(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for offset, value in edits:
        buf[offset] = value
    return bytes(buf)


def _write(name: str, data: bytes) -> Path:
    path = WORK / name
    path.write_bytes(data)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _expect_clean_failure(exc: BaseException, path: Path, entry: str) -> None:
    assert isinstance(exc, VireidError), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert str(path.name) in str(exc), f"message does not name the file: {exc}"
    _count(entry, "refused")


@FUZZ
@given(corrupted("png"))
def test_fuzz_read_image(data: bytes) -> None:
    path = _write("crop.png", data)
    try:
        image = read_image(path)
    except Exception as exc:
        _expect_clean_failure(exc, path, "read_image")
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        _count("read_image", "accepted")


def _png_with_size(width: int, height: int) -> bytes:
    """The valid PNG with its IHDR claiming `width` x `height` (CRC recomputed, so decoders believe it)."""
    import struct
    import zlib

    data = bytearray(VALID["png"])
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


@FUZZ
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_fuzz_images_claiming_huge_dimensions(width: int, height: int) -> None:
    path = _write("huge.png", _png_with_size(width, height))
    try:
        image = read_image(path)
    except Exception as exc:
        _expect_clean_failure(exc, path, "read_image, PNG header claiming any size")
    else:
        assert image.shape[:2] == (height, width)  # only tiny claims can decode at all
        _count("read_image, PNG header claiming any size", "accepted")


@FUZZ
@given(st.integers(-3, 10**6), st.sampled_from(["fp32", "fp16", "int8", "fp64", ""]), st.integers(-5, 5000))
def test_fuzz_card_versions_precisions_and_sizes(schema: int, precision: str, dim: int) -> None:
    from contract_model import contract_card

    data = contract_card().to_dict()
    data.update(schema_version=schema, precision=precision, embedding_dim=dim)
    try:
        card = ModelCard.from_dict(data, source="model.onnx")
    except Exception as exc:
        _expect_clean_failure(exc, Path("model.onnx"), "model card fields (schema version, precision, size)")
    else:  # only a card that is valid in every field may be accepted
        assert card.schema_version == 1 and card.precision.value in {"fp32", "fp16", "int8"}
        assert card.embedding_dim >= 1
        _count("model card fields (schema version, precision, size)", "accepted")


json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=6)


@FUZZ
@given(
    st.fixed_dictionaries(  # both fields a file needs, each a fitting number or anything else
        {
            "threshold_for_target": st.floats(-1.5, 1.5) | json_leaves,
            "impostor_pairs": st.integers(0, 10**6) | json_leaves,
        }
    )
    | st.dictionaries(st.text(max_size=6), json_leaves, max_size=3)
    | json_leaves,
    st.floats(1e-6, 0.5) | json_leaves,
)
def test_fuzz_track_mean_threshold_of_a_card(track: object, fmr: object) -> None:
    """The stream pipeline's default threshold comes from a card's track-mean estimate: whatever a
    card file holds there, a card it is read from gives None or a cosine no lower than its own
    single-image threshold, never an exception."""
    from contract_model import contract_card

    data = contract_card().to_dict()  # match_threshold 0.5
    data.update(match_threshold_fmr=fmr, match_threshold_data={"track_means": track})
    try:
        card = ModelCard.from_json(json.dumps(data), source="model.onnx")
    except Exception as exc:
        _expect_clean_failure(exc, Path("model.onnx"), "model card track-mean threshold")
    else:
        value = card.track_mean_threshold
        assert value is None or 0.5 <= value <= 1.0, value
        _count("model card track-mean threshold", "accepted")


@FUZZ
@given(corrupted("onnx"))
def test_fuzz_onnx_model_files(data: bytes) -> None:
    path = _write("model.onnx", data)
    before = _digest(path)
    try:
        ModelCard.from_onnx(path)
        with open_backend(path, "cpu", threads=1) as backend:
            backend.infer(np.zeros((1, 32, 16, 3), np.uint8), np.zeros(1, np.int32))
    except Exception as exc:
        _expect_clean_failure(exc, path, "onnx model (card + backend + inference)")
    else:
        _count("onnx model (card + backend + inference)", "accepted")
    assert _digest(path) == before  # reading never writes


@FUZZ
@given(corrupted("db"))
def test_fuzz_gallery_databases(data: bytes) -> None:
    path = _write("gallery.db", data)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    before = _digest(path)
    try:
        with Gallery.open(path) as gallery:
            gallery.search(np.eye(16, dtype=np.float32)[:1], k=2)
            gallery.identities()
    except Exception as exc:
        _expect_clean_failure(exc, path, "gallery database (open + search)")
        assert _digest(path) == before  # a refused file is left exactly as it was
    else:
        _count("gallery database (open + search)", "accepted")


@FUZZ
@given(
    st.one_of(
        st.text(max_size=400),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
            ),
            max_leaves=12,
        ).map(json.dumps),
    )
)
def test_fuzz_model_card_json(text: str) -> None:
    try:
        card = ModelCard.from_json(text, source="model.engine.json")
    except Exception as exc:
        _expect_clean_failure(exc, Path("model.engine.json"), "model card JSON (engine sidecar)")
    else:  # an accepted card is a whole, valid one: it survives its own round trip
        assert ModelCard.from_json(card.to_json(), source="again.json") == card
        _count("model card JSON (engine sidecar)", "accepted")


SECTIONS = ("model", "data", "sampler", "augment", "loss", "optim", "run")
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=300),
        st.dictionaries(
            st.sampled_from(SECTIONS) | st.text(max_size=8),
            st.dictionaries(st.text(max_size=12), yaml_values, max_size=4) | yaml_values,
            max_size=4,
        ).map(json.dumps),  # JSON is YAML
    )
)
def test_fuzz_training_configs(text: str) -> None:
    pytest.importorskip("yaml")
    from vireid.training.config import TrainConfig

    path = _write("train.yaml", text.encode("utf-8", "surrogatepass"))
    try:
        TrainConfig.from_yaml(path)
    except Exception as exc:
        assert isinstance(exc, VireidError), f"{type(exc).__name__}: {exc}"
        _count("training config YAML", "refused")
    else:
        _count("training config YAML", "accepted")


@FUZZ
@given(
    st.sampled_from([np.uint8, np.uint16, np.float32, np.int64, np.bool_]),
    st.lists(st.integers(0, 6), min_size=0, max_size=5),
    st.one_of(st.none(), st.just("percentile:1:99"), st.just("window:0:1000")),
)
def test_fuzz_preprocessing_arrays(dtype, shape: list[int], thermal) -> None:
    image = np.zeros(shape, dtype=dtype)
    try:
        batch = preprocess_crops([image], (8, 4), thermal=thermal)
    except Exception as exc:
        assert isinstance(exc, VireidError), f"{type(exc).__name__}: {exc}"
        _count("preprocess_crops arrays", "refused")
    else:
        assert batch.shape == (1, 8, 4, 3) and batch.dtype == np.uint8
        _count("preprocess_crops arrays", "accepted")


def _tiny_video() -> bytes:
    import cv2

    path = WORK / "valid.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (32, 24))
    rng = np.random.default_rng(1)
    for _ in range(6):
        writer.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    writer.release()
    return path.read_bytes()


VALID["mp4"] = _tiny_video()


@FUZZ
@given(corrupted("mp4"))
def test_fuzz_video_files(data: bytes) -> None:
    from vireid.streams import VideoSource

    path = _write("clip.mp4", data)
    source = VideoSource(path, "infrared", "cam", realtime=False)
    try:
        source.start()
    except Exception as exc:
        _expect_clean_failure(exc, path, "video file (VideoSource)")
        return
    deadline = 10.0
    frames = 0
    while (frame := source.read(timeout=deadline)) is not None:
        assert frame.image.dtype == np.uint8
        frames += 1
    source.stop(timeout=5)
    assert source.finished, "the reader thread did not end"  # no hang on a broken file
    _count("video file (VideoSource)", "accepted" if frames else "refused")


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["train_id.txt", "val_id.txt", "test_id.txt"]),
        st.text(alphabet="0123456789,; \n-abx", max_size=40),
        max_size=3,
    ),
    st.lists(st.sampled_from(["cam1", "cam2", "cam3", "cam4", "cam5", "cam6", "exp"]), unique=True),
    st.lists(st.tuples(st.integers(1, 6), st.integers(0, 12)), max_size=6),
)
def test_fuzz_sysu_dataset_layouts(id_files: dict[str, str], folders: list[str], people: list) -> None:
    import shutil

    from vireid.training.data.protocols import run_protocol

    root = WORK / "sysu"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for name in folders:
        (root / name).mkdir(exist_ok=True)
    if id_files:
        (root / "exp").mkdir(exist_ok=True)
        for name, text in id_files.items():
            (root / "exp" / name).write_text(text)
    for cam, pid in people:
        person = root / f"cam{cam}" / f"{pid:04d}"
        person.mkdir(parents=True, exist_ok=True)
        (person / "0001.jpg").write_bytes(VALID["png"])
    try:
        run_protocol(lambda paths, modality: np.ones((len(paths), 4), np.float32), root, "sysu-all", trials=1)
    except Exception as exc:
        assert isinstance(exc, VireidError), f"{type(exc).__name__}: {exc}"
        _count("SYSU-MM01 dataset folder (reader + protocol)", "refused")
    else:
        _count("SYSU-MM01 dataset folder (reader + protocol)", "accepted")
