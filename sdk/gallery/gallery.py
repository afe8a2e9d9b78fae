"""`Gallery`: enrolled identities persisted in SQLite and searched in memory."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError, InputSpecError
from ..modality import Modality
from ..retention import cutoff
from . import inputs
from .crypto import resolve_key
from .index import NumpyBackend, RowTable, SearchBackend, top_centroids
from .store import GalleryStore, sqlite_errors
from .types import GalleryInfo, IdentityEmbeddings, IdentityInfo, IdentityScore, Match

BACKENDS = ("numpy", "faiss")


class Gallery:
    """Identities with many embeddings each, tagged with modality and camera, persisted in SQLite.

    Opening a path creates the gallery when the file does not exist yet (then `embedding_space` and
    `dim` are required); opening an existing one with an `embedding_space` refuses a gallery made for
    another model. Vectors are L2-normalised on enrolment and queries are too, so scores are cosines.

    One process may write while others read (SQLite WAL); searches see every committed change, from
    any process, because the in-memory index re-syncs when the file's change counter moves. A `Gallery`
    object may be shared between threads (calls are serialised by a lock).

    Example:
        >>> with Gallery("gallery.db", embedding_space=emb.embedding_space, dim=2048) as gallery:
        ...     gallery.enroll("alice", vectors, Modality.VISIBLE, camera="gate-1")
        ...     best = gallery.search_identities(query_vectors, k=5)

    Args:
        path: database file (`":memory:"` for a throw-away gallery).
        embedding_space: the model's fingerprint (`ModelCard.embedding_space()`, `Embedder.embedding_space`).
        dim: embedding dimension (required to create; checked when opening).
        backend: `numpy` (default) or `faiss` (needs `pip install 'vireid[faiss]'`).
        create: create the file when missing; `False` raises instead (see `Gallery.open`).
        timeout: seconds a write waits for another process's write lock.
        durable: fsync every commit (`synchronous=FULL`); `False` keeps atomicity but a power cut may
            lose the last commits (a crashed process never does).
        key_file: passphrase file of an encrypted gallery (SQLCipher, extra `crypto`); without it the
            key comes from `$VIREID_GALLERY_KEY` or `$VIREID_GALLERY_KEY_FILE`, and with neither the
            gallery is a plain SQLite file. See `vireid.gallery.crypto`.

    Raises:
        GalleryError: the file is corrupt, not a gallery, from a newer vireid, or bound to another
            embedding space or dimension.
    """

    def __init__(
        self,
        path: str | Path,
        embedding_space: str | None = None,
        dim: int | None = None,
        *,
        backend: str = "numpy",
        create: bool = True,
        timeout: float = 10.0,
        durable: bool = True,
        key_file: str | Path | None = None,
    ) -> None:
        self._backend = _make_backend(backend)
        key = resolve_key(key_file) if str(path) != ":memory:" else None
        self._store = GalleryStore(
            path,
            embedding_space=embedding_space,
            dim=dim,
            create=create,
            timeout=timeout,
            durable=durable,
            key=key,
        )
        self._lock = threading.RLock()
        self._closed = False
        try:
            self._check_binding(embedding_space, dim)
        except GalleryError:
            self._store.close()
            raise
        self._table = RowTable(self._store.meta.dim)

    @classmethod
    def open(
        cls,
        path: str | Path,
        embedding_space: str | None = None,
        dim: int | None = None,
        *,
        backend: str = "numpy",
        timeout: float = 10.0,
        durable: bool = True,
        key_file: str | Path | None = None,
    ) -> Gallery:
        """Open an existing gallery; never creates one (the other arguments as for `Gallery`)."""
        return cls(
            path, embedding_space, dim, backend=backend, create=False, timeout=timeout, durable=durable,
            key_file=key_file,
        )  # fmt: skip

    def _check_binding(self, embedding_space: str | None, dim: int | None) -> None:
        meta = self._store.meta
        if embedding_space is not None:
            self.check_embedding_space(embedding_space)
        if dim is not None and dim != meta.dim:
            raise GalleryError(
                f"{self.path}: gallery holds {meta.dim}-d embeddings, the caller expects {dim}-d; "
                "use the model the gallery was created for, or a new gallery path."
            )

    # ----- properties -----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The database file."""
        return self._store.path

    @property
    def embedding_space(self) -> str:
        """Fingerprint of the model whose vectors this gallery holds."""
        return self._store.meta.embedding_space

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._store.meta.dim

    @property
    def backend(self) -> str:
        """Search backend name (`numpy` or `faiss`)."""
        return self._backend.name

    def check_embedding_space(self, embedding_space: str) -> None:
        """Refuse vectors of another model.

        Raises:
            GalleryError: naming both fingerprints and the fix.
        """
        if str(embedding_space) != self.embedding_space:
            raise GalleryError(
                f"{self.path}: embeddings of model {embedding_space!r} cannot go into or be searched "
                f"against this gallery, which holds embeddings of model {self.embedding_space!r}; vectors "
                "of different models are not comparable. Use a new gallery for the new model, or "
                "re-enrol the identities with it."
            )

    # ----- lifecycle ------------------------------------------------------------------------------
    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise GalleryError(f"{self.path}: gallery is closed; open it again to {action}.")
            with sqlite_errors(self.path, action, self._store.timeout, self._store.encrypted):
                yield

    def close(self) -> None:
        """Close the database; further calls raise. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.dim}-d, space {self.embedding_space}"
        return f"Gallery({self.path!r}, {state})"

    # ----- writes ---------------------------------------------------------------------------------
    def enroll(
        self,
        name: str,
        vectors: Any,
        modality: Modality | str | int | Sequence[Any] | None = None,
        *,
        camera: str | int | Sequence[Any] | None = None,
        timestamps: float | Sequence[float] | np.ndarray | None = None,
        track_ids: int | Sequence[int | None] | None = None,
        sources: str | Path | Sequence[Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        embedding_space: str | None = None,
        replace: bool = False,
    ) -> np.ndarray:
        """Add N vectors to an identity (created when new) in one transaction: all of them or none.

        Args:
            name: identity name (unique in the gallery).
            vectors: float `[N, D]` (or one `[D]`), or a `vireid.Embeddings`: its `embedding_space` is
                checked against the gallery's and its modalities, camera ids and track ids are used
                where the matching argument is None.
            modality: one modality for every row, or one per row (required for plain arrays).
            camera: camera label (string or integer id) for every row, or one per row.
            timestamps: seconds since the epoch (UTC), one or N; default now.
            track_ids: non-negative tracker id(s) the crops came from.
            sources: where the crops came from (file paths, stream URLs).
            metadata: JSON-serialisable mapping; when given, replaces the identity's metadata.
            embedding_space: fingerprint of the model that produced `vectors`, checked when given.
            replace: re-enrol: the identity's existing embeddings are deleted in the same transaction
                that stores these, so readers see either the old set or the new one, never neither.

        Returns:
            int64 `[N]` ids of the new embeddings.

        Raises:
            InputSpecError: bad name, shape, dimension, values or tags.
            GalleryError: the vectors come from another embedding space.
        """
        name = inputs.check_name(name)
        carried = inputs.split_embeddings(vectors)
        for fingerprint in (embedding_space, carried.embedding_space):
            if fingerprint is not None:
                self.check_embedding_space(fingerprint)
        modality = carried.modalities if modality is None else modality
        if modality is None:
            raise InputSpecError(f"enroll({name!r}): pass the modality of the vectors (visible or infrared)")
        batch = inputs.build_batch(
            inputs.unit_rows(carried.vectors, self.dim, f"enroll({name!r}) vectors"),
            modality,
            camera=carried.cameras if camera is None else camera,
            timestamps=timestamps,
            track_ids=carried.track_ids if track_ids is None else track_ids,
            sources=sources,
        )
        stored_metadata = _json_object(metadata, name)
        with self._guard("enroll"):
            existing = "replace" if replace else "add"
            return self._store.enroll_many([(name, stored_metadata, batch)], existing=existing)[0]

    def remove(self, name: str) -> int:
        """Delete an identity and all its embeddings; returns how many embeddings were deleted.

        Raises:
            GalleryError: no identity has that name.
        """
        with self._guard("remove"):
            return self._store.remove_identity(inputs.lookup_name(name))

    def remove_embeddings(self, embedding_ids: Sequence[int] | np.ndarray) -> int:
        """Delete single embeddings by id (unknown ids are ignored); returns how many were deleted.

        The identity stays enrolled even when its last embedding goes.
        """
        ids = [int(i) for i in np.asarray(embedding_ids, dtype=np.int64).ravel()]
        with self._guard("remove embeddings"):
            return self._store.remove_embeddings(ids)

    def purge(
        self, older_than_days: float, *, drop_empty: bool = True, now: float | None = None
    ) -> tuple[int, int]:
        """Retention: delete every embedding recorded more than `older_than_days` ago, in one transaction.

        A gallery holds biometric data; keep it only as long as it is needed. Identities left with no
        embedding by this purge are removed too unless `drop_empty=False` (their names and metadata then
        stay); identities that held no embedding before it (kept empty on purpose) are left alone.
        Returns (embeddings, identities) deleted.

        Raises:
            InputSpecError: `older_than_days` is not a positive number.
        """
        before = cutoff(older_than_days, now)
        with self._guard("purge"):
            return self._store.purge(before, drop_empty)

    def rename(self, old: str, new: str) -> None:
        """Rename an identity.

        Raises:
            GalleryError: `old` is unknown or `new` is taken.
        """
        with self._guard("rename"):
            self._store.rename(inputs.lookup_name(old), inputs.check_name(new))

    # ----- reads ----------------------------------------------------------------------------------
    def identities(self) -> list[IdentityInfo]:
        """Every enrolled identity sorted by name, with its metadata and counts per modality."""
        with self._guard("list identities"):
            return self._store.list_identities()

    def embeddings(self, name: str) -> IdentityEmbeddings:
        """The stored embeddings of one identity (vectors and tags), ordered by id.

        Raises:
            GalleryError: no identity has that name.
        """
        with self._guard("read embeddings"):
            return self._store.identity_embeddings(inputs.lookup_name(name))

    def cameras(self) -> list[str]:
        """The camera labels the stored embeddings are tagged with, sorted (untagged ones aside)."""
        with self._guard("list cameras"):
            return self._store.cameras()

    def info(self) -> GalleryInfo:
        """What the file holds and what it is bound to."""
        with self._guard("read info"):
            meta = self._store.meta
            identities, embeddings = self._store.counts()
            return GalleryInfo(
                path=self.path,
                embedding_space=meta.embedding_space,
                dim=meta.dim,
                schema_version=meta.schema_version,
                created_at=meta.created_at,
                vireid_version=meta.vireid_version,
                num_identities=identities,
                num_embeddings=embeddings,
            )

    def __len__(self) -> int:
        """Number of enrolled identities."""
        return self.info().num_identities

    def __contains__(self, name: object) -> bool:
        with self._guard("look up"):
            return isinstance(name, str) and bool(self._store.identity_ids([name]))

    # ----- search ---------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Bring the in-memory index up to date now (searches do this themselves); True if it changed."""
        with self._guard("refresh"):
            return self._table.sync(self._store)

    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        modality: Modality | str | int | None = None,
        camera: str | int | Sequence[Any] | None = None,
        identities: Sequence[str] | str | None = None,
    ) -> list[list[Match]]:
        """The `k` most similar stored embeddings of each query, best first.

        Args:
            queries: float `[Q, D]` (or one `[D]`), or an `Embeddings` object (its space is checked).
            k: results per query (fewer when fewer embeddings pass the filters).
            modality: only embeddings of this modality (e.g. the other one, for cross-modal search).
            camera: only embeddings of this camera (or these cameras).
            identities: only these identities.

        Returns:
            One list of `Match` per query, by descending cosine similarity.

        Raises:
            InputSpecError: bad queries or k.
            GalleryError: queries from another embedding space, or an unknown identity name.
        """
        return self._search("search", self._backend.top_rows, queries, k, modality, camera, identities)

    def search_identities(
        self,
        queries: Any,
        k: int = 10,
        *,
        modality: Modality | str | int | None = None,
        camera: str | int | Sequence[Any] | None = None,
        identities: Sequence[str] | str | None = None,
        score: IdentityScore | str = IdentityScore.MAX,
    ) -> list[list[Match]]:
        """The `k` best identities of each query, each with its best-matching embedding.

        Same arguments as `search`; every identity appears at most once per query. This is the
        re-identification answer.

        Args:
            score: `max` (default): the highest cosine over the identity's embeddings that pass the
                filters. `centroid`: the cosine to the unit mean of those embeddings (steadier for
                identities enrolled from many images; see `IdentityScore`). Either way the match
                names the identity's closest embedding. Centroids are computed exactly with numpy
                whatever the backend (there is one per identity) and cached until the gallery changes.
        """
        if IdentityScore.parse(score) is IdentityScore.CENTROID:
            return self._search("search identities", top_centroids, queries, k, modality, camera, identities)
        finder = self._backend.top_groups
        return self._search("search identities", finder, queries, k, modality, camera, identities)

    def _search(
        self,
        action: str,
        find: Callable[[RowTable, np.ndarray, int, np.ndarray | None], tuple[np.ndarray, np.ndarray]],
        queries: Any,
        k: int,
        modality: Modality | str | int | None,
        camera: str | int | Sequence[Any] | None,
        identities: Sequence[str] | str | None,
    ) -> list[list[Match]]:
        carried = inputs.split_embeddings(queries)
        if carried.embedding_space is not None:
            self.check_embedding_space(carried.embedding_space)
        unit = inputs.unit_rows(carried.vectors, self.dim, "queries")
        k = inputs.check_k(k)
        modality = None if modality is None else Modality.parse(modality)
        cameras = inputs.parse_cameras(camera)
        names = inputs.parse_names(identities)
        with self._guard(action):
            self._table.sync(self._store)
            mask = self._table.mask(modality, cameras, self._identity_ids(names))
            scores, rows = find(self._table, unit, k, mask)
            return self._table.matches(scores, rows)

    def _identity_ids(self, names: tuple[str, ...] | None) -> list[int] | None:
        if names is None:
            return None
        found = self._store.identity_ids(names)
        unknown = [n for n in names if n not in found]
        if unknown:
            raise GalleryError(
                f"{self.path}: unknown identities {unknown} in the search filter; "
                f"`vireid gallery list --gallery {self.path}` shows the enrolled names."
            )
        return list(found.values())

    # ----- transfer -------------------------------------------------------------------------------
    def export_npz(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write every identity and embedding to one `.npz` (numeric/string arrays + JSON manifest).

        Raises:
            GalleryError: `path` does not end in `.npz`, is this gallery's own file, or exists and
                `overwrite` is false (an export must never replace a gallery, a model or an older
                export by accident).
        """
        from .transfer import export_npz

        target = Path(path)
        if target.suffix.lower() != ".npz":
            raise GalleryError(
                f"{target}: an export is a .npz file; name it e.g. {target.with_suffix('.npz')}"
            )
        if target.exists() and target.resolve() == Path(self.path).resolve():
            raise GalleryError(f"{target}: is the gallery being exported; choose another path")
        if target.exists() and not overwrite:
            raise GalleryError(
                f"{target}: exists; choose another path, or pass overwrite=True (CLI: --overwrite) to "
                "replace it"
            )
        with self._guard("export"):
            return export_npz(self._store, target)

    def backup(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write a consistent copy of the gallery database to `path`, also while other processes write.

        The copy is one committed state taken with SQLite's online backup API (WAL included; a writer
        such as `vireid run` goes on meanwhile), written to a temporary file beside `path`, checked and
        published atomically (a hard link, or a rename with `overwrite`): `path` is either the whole
        backup or untouched. It is owner-only (0600) and a gallery like this one (same identities,
        embeddings, ids, schema version and embedding space) that opens with `Gallery.open(path)`; an
        encrypted gallery's copy is encrypted with the same key.
        Restore by putting it in the gallery's place with no process using it (see docs/gallery.md).
        This object's other calls wait while the copy runs (about as long as reading the file).

        Raises:
            GalleryError: `path` is this gallery or one of its SQLite files, a folder, a symbolic link
                (the message names its real file), exists (or appears while the copy is written) and
                `overwrite` is false, is in use (its `-wal` exists, beside it or its real file), cannot
                be written, or the copy fails its checks (a damaged gallery); nothing is left at `path`
                then.
        """
        from .backup import backup

        with self._guard("back up"):
            return backup(self._store, Path(path), overwrite)

    def import_npz(self, path: str | Path, on_conflict: str = "error") -> int:
        """Add the identities of an exported `.npz` in one transaction; returns embeddings added.

        Args:
            path: a file written by `export_npz`.
            on_conflict: for a name already enrolled: `error` (nothing is imported), `merge` (add the
                vectors the existing identity does not hold yet, so a repeated import adds nothing;
                its metadata wins: the export adds only keys it lacks) or `skip`. New identities keep
                their exported creation time.

        Raises:
            GalleryError: another embedding space or dimension, a malformed or unsafe file, or a
                conflict under `error`.
        """
        from .transfer import import_npz

        with self._guard("import"):
            return import_npz(self._store, Path(path), on_conflict)


def _make_backend(name: str) -> SearchBackend:
    if name == "numpy":
        return NumpyBackend()
    if name == "faiss":
        from .faiss_index import FaissBackend

        return FaissBackend()
    raise InputSpecError(f"unknown gallery backend {name!r}; expected one of: {', '.join(BACKENDS)}")


def _json_object(metadata: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InputSpecError(f"metadata of {name!r} must be a mapping, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as exc:  # NaN and infinities too: they are not JSON
        raise InputSpecError(
            f"metadata of {name!r} must be JSON-serialisable, without NaN or infinities ({exc})"
        ) from exc
