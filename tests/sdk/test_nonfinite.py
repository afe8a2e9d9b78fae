"""Bad numbers (NaN, infinities, zero vectors, values whose squares underflow) never pass silently into
results, files or persistent state: they are refused with a typed error or written as JSON null."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from vireid import Embeddings, Gallery, jsonio
from vireid.embeddings import normalise_rows, unit_model_output
from vireid.errors import ArtifactError, GalleryError, InputSpecError
from vireid.streams import Frame, Matcher

RNG = np.random.default_rng(0)


def _unit(n: int, dim: int = 8) -> np.ndarray:
    v = RNG.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_rows_too_small_or_too_large_to_square_in_float32_still_come_out_unit_length() -> None:
    v = _unit(3)
    for scale in (1e-22, 1e-40, 1e20, 3e37):  # squares underflow / overflow float32
        unit, bad = normalise_rows(v * np.float32(scale))
        assert len(bad) == 0
        np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(unit, v, atol=1e-4)  # 1e-40 is subnormal: a few digits are lost


def test_zero_nan_and_infinite_rows_are_reported_by_index() -> None:
    v = _unit(5)
    v[1], v[3, 2], v[4, 0] = 0.0, np.nan, np.inf
    assert normalise_rows(v)[1].tolist() == [1, 3, 4]
    with pytest.raises(
        ArtifactError, match=r"model\.onnx: .*zero or non-finite embeddings for items \[1, 3, 4\]"
    ):
        unit_model_output(v, "model.onnx")


def test_gallery_stores_tiny_and_huge_finite_vectors_as_unit_ones(tmp_path: Path) -> None:
    v = _unit(2)
    with Gallery(tmp_path / "g.db", embedding_space="x", dim=8) as gallery:
        gallery.enroll("tiny", v[:1] * np.float32(1e-22), "visible")
        gallery.enroll("huge", v[1:] * np.float32(1e20), "visible")
        scores = {m.identity: m.score for m in gallery.search(v[0], k=2)[0]}
        assert scores["tiny"] == pytest.approx(1.0, abs=1e-5)
        gallery.export_npz(tmp_path / "backup.npz")  # a backup of it must restore (unit vectors)
    with Gallery(tmp_path / "copy.db", embedding_space="x", dim=8) as copy:
        copy.import_npz(tmp_path / "backup.npz")
        assert {i.name for i in copy.identities()} == {"tiny", "huge"}


def test_a_nan_vector_in_the_file_is_refused_naming_its_identity_not_hidden(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with Gallery(path, embedding_space="x", dim=8) as gallery:
        for name in ("a", "b", "c"):
            gallery.enroll(name, _unit(2), "visible")
    with sqlite3.connect(path) as conn:  # damage one of b's vectors, as a bad disk or another writer could
        (row,) = conn.execute(
            "SELECT e.id FROM embeddings e JOIN identities i ON i.id = e.identity_id "
            "WHERE i.name = 'b' LIMIT 1"
        ).fetchall()
        conn.execute(
            "UPDATE vectors SET data = ? WHERE embedding_id = ?",
            (np.full(8, np.nan, "<f4").tobytes(), row[0]),
        )
    conn.close()
    with Gallery(path) as gallery:
        with pytest.raises(GalleryError, match=r"g\.db: 1 stored embeddings of \['b'\] are not finite unit"):
            gallery.search(_unit(1), k=3)
        with pytest.raises(GalleryError, match="not finite unit"):
            gallery.export_npz(tmp_path / "backup.npz")  # the damage is not copied into a backup
        gallery.remove("b")  # the way out the message gives
        assert {m.identity for m in gallery.search(_unit(1), k=3)[0]} == {"a", "c"}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_gallery_metadata_refuses_numbers_json_cannot_hold(tmp_path: Path, value: float) -> None:
    with Gallery(tmp_path / "g.db", embedding_space="x", dim=8) as gallery:
        with pytest.raises(InputSpecError, match="without NaN or infinities"):
            gallery.enroll("a", _unit(1), "visible", metadata={"height": value})
        assert gallery.identities() == []


def test_track_ids_that_do_not_fit_int64_are_refused_not_wrapped() -> None:
    with pytest.raises(InputSpecError, match=r"track_ids must fit in int64 \(below 2\*\*63\)"):
        Embeddings(_unit(2), "visible", track_ids=[2**63, 2**64 - 1])
    assert Embeddings(_unit(1), "visible", track_ids=[2**63 - 1]).track_ids.tolist() == [2**63 - 1]


@pytest.mark.parametrize("field", ["timestamp", "pts", "monotonic"])
def test_frames_with_non_finite_times_are_refused(field: str) -> None:
    times = {"timestamp": 1.0, "pts": 0.0, "monotonic": 5.0, field: math.nan}
    with pytest.raises(InputSpecError, match=f"Frame.{field} must be a finite number"):
        Frame(np.zeros((8, 8, 3), np.uint8), "cam", "visible", 0, **times)
    Frame(np.zeros((8, 8, 3), np.uint8), "cam", "visible", 0, 1.0, 0.0, None)  # monotonic may be unknown


@pytest.mark.parametrize(
    ("setting", "value"),
    [("margin", math.nan), ("margin", -0.1), ("min_quality", math.nan), ("min_quality", 1.5),
     ("improve", -1.0), ("cross_window", math.inf), ("cross_window", -1.0)],
)  # fmt: skip
def test_matcher_settings_outside_their_range_or_nan_are_refused(setting: str, value: float) -> None:
    with pytest.raises(InputSpecError, match=f"Matcher {setting} must be in"):
        Matcher(0.5, **{setting: value})


def test_json_writes_null_for_nan_and_infinities_never_invalid_tokens() -> None:
    payload = {"a": math.nan, "b": [np.float32(np.inf), 1.5, np.float64(-np.inf)], "c": (np.int64(3),)}
    text = jsonio.dumps(payload)
    assert json.loads(text) == {"a": None, "b": [None, 1.5, None], "c": [3]}
    assert "NaN" not in text and "Infinity" not in text


def test_json_cleans_arrays_and_what_a_default_hook_returns() -> None:
    """A checkpoint description goes through a `default=` hook (tensors to lists): a NaN there raised
    ValueError and aborted the save."""
    assert json.loads(jsonio.dumps({"a": np.array([np.nan, 1.0])})) == {"a": [None, 1.0]}
    text = jsonio.dumps({"t": object()}, default=lambda _: [math.inf, 2])
    assert json.loads(text) == {"t": [None, 2]}
