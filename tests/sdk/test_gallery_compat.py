"""Files from other vireid versions: exports of a newer format are refused with "upgrade vireid", and
galleries an older vireid wrote with unnormalised tiny vectors still search and export."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_gallery import DIM, SPACE, unit

from vireid import GalleryError
from vireid.cli.main import main
from vireid.gallery import Gallery
from vireid.gallery.store import checked_unit_rows
from vireid.gallery.transfer import FORMAT_VERSION


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(23)


# ----- exports of a newer format --------------------------------------------------------------------
def _export(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A real export of a two-identity gallery, as `vireid gallery export` writes it."""
    out = tmp_path / "export.npz"
    with Gallery(tmp_path / "source.db", SPACE, DIM) as gallery:
        gallery.enroll("alice", unit(rng, 2), "ir")
        gallery.enroll("bob", unit(rng, 1), "visible")
        gallery.export_npz(out)
    return out


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _rewrite(
    export: Path, out: Path, version: int | None = None, extra: dict[str, np.ndarray] | None = None
) -> Path:
    """Copy `export` to `out` with the manifest's `format_version` set to `version` and `extra` members
    added: what a newer vireid's export looks like to this one."""
    with zipfile.ZipFile(export) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "manifest.npy" and version is not None:
                manifest = json.loads(np.load(io.BytesIO(data)).tobytes())
                manifest["format_version"] = version
                data = _npy(np.frombuffer(json.dumps(manifest).encode(), np.uint8))
            dst.writestr(name, data)
        for name, array in (extra or {}).items():
            dst.writestr(f"{name}.npy", _npy(array))
    return out


NEWER = (
    rf"newer vireid export format, version {FORMAT_VERSION + 1}.*; this vireid .* reads up to version "
    rf"{FORMAT_VERSION}\. Upgrade vireid"
)


def test_an_export_of_a_newer_format_version_says_upgrade_vireid(tmp_path: Path, rng, capsys) -> None:
    """It used to say "invalid export manifest (format_version 2, expected 1)"."""
    newer = _rewrite(_export(tmp_path, rng), tmp_path / "newer.npz", version=FORMAT_VERSION + 1)
    with Gallery(tmp_path / "target.db", SPACE, DIM) as target:
        with pytest.raises(GalleryError, match=NEWER):
            target.import_npz(newer)
        assert target.info().num_embeddings == 0
    # the CLI reads the manifest first to create the target gallery: the same message, no gallery made
    assert main(["gallery", "import", "--gallery", str(tmp_path / "new.db"), str(newer)]) == 1
    assert "Upgrade vireid" in capsys.readouterr().err
    assert not (tmp_path / "new.db").exists() or (tmp_path / "new.db").stat().st_size == 0


def test_an_export_of_a_newer_format_with_a_new_member_says_upgrade_vireid(tmp_path: Path, rng) -> None:
    """It used to say "not a vireid gallery export: members [...]", which hides the fix."""
    export = _export(tmp_path, rng)
    newer = _rewrite(
        export, tmp_path / "newer.npz", version=FORMAT_VERSION + 1, extra={"quality": np.ones(3, np.float32)}
    )
    with Gallery(tmp_path / "target.db", SPACE, DIM) as target, pytest.raises(GalleryError, match=NEWER):
        target.import_npz(newer)


def test_foreign_or_damaged_archives_are_still_refused_as_such(tmp_path: Path, rng) -> None:
    export = _export(tmp_path, rng)
    added = _rewrite(export, tmp_path / "added.npz", extra={"quality": np.ones(3, np.float32)})
    older = _rewrite(export, tmp_path / "older.npz", version=0)
    with Gallery(tmp_path / "target.db", SPACE, DIM) as target:
        with pytest.raises(GalleryError, match=r"not a vireid gallery export: members \[.*'quality'"):
            target.import_npz(added)  # same version, unknown member: not something vireid wrote
        with pytest.raises(GalleryError, match=r"invalid export manifest.*format_version 0, expected 1"):
            target.import_npz(older)
        assert target.import_npz(export) == 3  # the untouched export still imports


def test_a_foreign_manifest_claiming_a_large_version_is_not_called_newer(tmp_path: Path, rng) -> None:
    """Only a vireid manifest earns "upgrade vireid": another format's member set is what is wrong."""
    foreign = tmp_path / "foreign.npz"
    manifest = {"format": "something-else", "format_version": 9}
    np.savez(foreign, manifest=np.frombuffer(json.dumps(manifest).encode(), np.uint8), data=np.ones(2))
    with (
        Gallery(tmp_path / "target.db", SPACE, DIM) as target,
        pytest.raises(GalleryError, match="not a vireid gallery export: members") as info,
    ):
        target.import_npz(foreign)
    assert "newer" not in str(info.value)


# ----- galleries with unnormalised vectors from an older vireid --------------------------------------
def _overwrite_vector(db: Path, name: str, row: np.ndarray) -> None:
    """Store `row` for `name`'s first embedding as is, the way an older vireid (or damage) left it."""
    with sqlite3.connect(db) as conn:
        (embedding_id,) = conn.execute(
            "SELECT min(e.id) FROM embeddings e JOIN identities i ON i.id = e.identity_id WHERE i.name = ?",
            (name,),
        ).fetchone()
        blob = np.ascontiguousarray(row, dtype="<f4").tobytes()
        conn.execute("UPDATE vectors SET data = ? WHERE embedding_id = ?", (blob, embedding_id))
    conn.close()


def _legacy_gallery(tmp_path: Path, rng: np.random.Generator, row_scale: float) -> tuple[Path, np.ndarray]:
    """A gallery whose `bob` vector is stored as `row_scale` times a unit vector."""
    db, bob = tmp_path / "old.db", unit(rng, 1)[0]
    with Gallery(db, SPACE, DIM) as gallery:
        gallery.enroll("alice", unit(rng, 2), "ir")
        gallery.enroll("bob", bob, "visible")
    _overwrite_vector(db, "bob", (bob.astype(np.float64) * row_scale).astype(np.float32))
    return db, bob


@pytest.mark.parametrize("scale", [1e-22, 1e-30, 3.0])
def test_a_finite_non_unit_stored_vector_is_renormalised_and_searchable_with_one_warning(
    tmp_path: Path, rng, caplog, scale: float
) -> None:
    """Older vireid stored tiny embeddings unnormalised; every search refused the whole gallery."""
    db, bob = _legacy_gallery(tmp_path, rng, scale)
    stored = np.frombuffer(sqlite3.connect(db).execute("SELECT data FROM vectors").fetchall()[2][0], "<f4")
    assert np.isfinite(stored).all() and stored.any()
    assert abs(float(np.linalg.norm(stored.astype(np.float64))) - 1.0) > 1e-3  # really stored non-unit
    caplog.set_level(logging.WARNING, logger="vireid.gallery")
    with Gallery.open(db, SPACE) as gallery:
        best = gallery.search(bob[None, :], k=1)[0][0]
        assert best.identity == "bob" and best.score == pytest.approx(1.0, abs=1e-5)
        gallery.search(bob[None, :], k=1)
        vectors = gallery.embeddings("bob").vectors
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if "not unit length" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "1 stored embeddings of 1 identities (bob)" in warnings[0]
    assert "vireid gallery export" in warnings[0] and "vireid gallery import" in warnings[0]


def test_a_gallery_with_tiny_unnormalised_vectors_exports_and_the_import_rewrites_them(
    tmp_path: Path, rng, caplog
) -> None:
    """The backup path the old refusal recommended was refused too."""
    db, bob = _legacy_gallery(tmp_path, rng, 1e-30)
    out = tmp_path / "backup.npz"
    assert main(["gallery", "export", "-g", str(db), "--out", str(out), "--allow-biometric-export"]) == 0
    assert main(["gallery", "import", "-g", str(tmp_path / "new.db"), str(out)]) == 0
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="vireid.gallery")
    with Gallery.open(tmp_path / "new.db", SPACE) as new:
        assert new.search(bob[None, :], k=1)[0][0].identity == "bob"
        np.testing.assert_allclose(new.embeddings("bob").vectors[0], bob, atol=1e-6)
    assert not [r for r in caplog.records if "not unit length" in r.getMessage()]  # rewritten as unit


@pytest.mark.parametrize(
    ("row", "what"), [(np.zeros(DIM, np.float32), "zeros"), (np.full(DIM, np.nan, np.float32), "NaN")]
)
def test_non_finite_or_zero_stored_vectors_are_still_refused(tmp_path: Path, rng, row, what: str) -> None:
    db, bob = _legacy_gallery(tmp_path, rng, 1.0)
    _overwrite_vector(db, "bob", row)
    with Gallery.open(db, SPACE) as gallery:
        with pytest.raises(
            GalleryError,
            match=r"1 stored embeddings of \['bob'\] are not finite unit vectors and cannot be "
            r"renormalised \(non-finite or all zeros\)",
        ):
            gallery.search(bob[None, :], k=1)
        with pytest.raises(GalleryError, match="non-finite or all zeros"):
            gallery.export_npz(tmp_path / "out.npz")


def test_renormalising_stored_rows_is_exact_across_magnitudes() -> None:
    """Scaled by the largest magnitude first: squares of 1e-40 (subnormal) rows underflow float32."""
    base = np.linspace(-1.0, 1.0, DIM)
    base /= np.linalg.norm(base)
    rows = np.stack([base * s for s in (1e-40, 1e-30, 1e-20, 1.0, 1e20, 1e30)]).astype(np.float32)
    fixed = checked_unit_rows(rows, "g.db", lambda bad: [])
    assert fixed.tolist() == [0, 1, 2, 4, 5]  # the unit row is left as it was
    np.testing.assert_allclose(np.linalg.norm(rows.astype(np.float64), axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(rows[1], base, atol=1e-6)
