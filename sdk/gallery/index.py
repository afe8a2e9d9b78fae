"""In-memory search over a gallery: a contiguous float32 matrix of every vector, kept in step with SQLite.

`RowTable` mirrors the `embeddings` table. Before a search it compares the store's change counters with
the ones it last saw (one tiny query): after pure appends (enrolments, imports, by any process) it loads
only the new rows; after removals or renames it drops vanished rows in place and loads what is missing.
Embedding ids are never reused, so an id it holds always names the same vector.

`NumpyBackend` scores with one float32 matrix product and picks the top k with `np.argpartition`;
per-identity search takes the best score of each identity with `np.maximum.reduceat` over rows grouped
by identity. Ties rank the older embedding (smaller id) first.

Centroids (per-identity unit means, one set per filter) survive appends: the rows a sync adds are merged
into the cached groups and only the identities they touch are recomputed, from all their rows, with
the same arithmetic a full build uses, so an updated set equals a fresh one bit for bit. Rows moving or
vanishing (a compaction) drops them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import GalleryError
from ..modality import Modality
from .store import GalleryStore, RowColumns
from .types import Match

_GROWTH = 1.5
_SPARE_SHARE = 32  # a buffer sized from scratch gets max(minimum, 1/32) spare rows: appends do not copy
_SUBSET_FRACTION = 0.25  # below this share of selected rows, gather them instead of masking scores
_CENTROID_CACHE = 8  # filters whose centroids are kept (a matcher uses one per modality)
_BLOCK_BYTES = 8 << 20  # rows of the matrix multiplied per BLAS call: a block stays in cache
_TRANSPOSE_ROWS = 2048  # rows of a score block transposed at once (a whole 8 MiB block is 3x slower)
_LOOP_ELEMENTS = 8192  # an identity with at least this many rows x dim is summed by itself (see _group_sums)
_ACCUMULATOR_BYTES = 256 << 10  # float64 sums of this many bytes of identities are built at once


@dataclass(frozen=True)
class Groups:
    """Rows grouped by identity: `order` lists row positions identity by identity from `starts`."""

    order: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, identity_ids: np.ndarray) -> Groups:
        """Group positions `0..len-1` by identity id (stable within an identity)."""
        order = np.argsort(identity_ids, kind="stable")
        sorted_ids = identity_ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]) if len(order) else order
        return cls(order=order, starts=starts)

    def members(self, group: int) -> np.ndarray:
        """Row positions of one group."""
        end = self.starts[group + 1] if group + 1 < len(self.starts) else len(self.order)
        return self.order[self.starts[group] : end]


class Centroids:
    """Unit mean vector of each identity's selected rows, for the first `covered` rows of a table.

    `identity_ids` (ascending) are the identities with at least one selected row; identity `g`'s
    selected table rows, in table order, are `members[starts[g] : starts[g] + sizes[g]]` and its
    centroid is `vectors[g]`: its float32 rows summed in float64 in table order, rounded to float32
    and divided by the float32 norm. `extend` takes in appended rows; the result equals a fresh build.
    """

    def __init__(self, table: RowTable, mask: np.ndarray | None) -> None:
        rows = np.arange(table.n) if mask is None else np.flatnonzero(mask)
        owners = table.identity_ids[rows]
        order = np.argsort(owners, kind="stable")
        self.members = rows[order]
        owners = owners[order]
        self.starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]]) if len(rows) else rows
        self.identity_ids = owners[self.starts]
        self.sizes = np.diff(np.r_[self.starts, len(rows)])
        self.covered = table.n
        count = len(self.starts)
        self._buffer = np.empty((_with_spare(count, 64), table.dim), dtype=np.float32)
        _unit_means(table.vectors, self.members, self.starts, self.sizes, self._buffer[:count])

    @property
    def vectors(self) -> np.ndarray:
        """`(identities, dim)` float32 C-contiguous view of the centroids, in `identity_ids` order."""
        return self._buffer[: len(self.starts)]

    def members_of(self, group: int) -> np.ndarray:
        """Table rows of one identity (by its position in `identity_ids`)."""
        start = int(self.starts[group])
        return self.members[start : start + int(self.sizes[group])]

    def extend(self, table: RowTable, mask: np.ndarray | None) -> None:
        """Take in the rows `covered..table.n` that `mask` selects (rows before `covered` must be the ones
        this was built from, unmoved). Only the identities that gain rows are recomputed, from all their
        rows: an enrolment costs its identity's rows, not a rebuild of every centroid."""
        start = self.covered
        new = np.arange(start, table.n) if mask is None else start + np.flatnonzero(mask[start:])
        self.covered = table.n
        if len(new) == 0:
            return
        owners = table.identity_ids[new]
        order = np.argsort(owners, kind="stable")
        new, owners = new[order], owners[order]
        # a new row goes after its identity's rows, or, for an identity new here, where its id sorts
        bounds = np.r_[self.starts, len(self.members)]
        place = bounds[np.searchsorted(self.identity_ids, owners, side="right")]
        self.members = np.insert(self.members, place, new)
        gaining, gained = np.unique(owners, return_counts=True)
        added = gaining[~np.isin(gaining, self.identity_ids, assume_unique=True)]
        old_count = len(self.identity_ids)
        ids = np.insert(self.identity_ids, np.searchsorted(self.identity_ids, added), added)
        sizes = np.zeros(len(ids), dtype=np.int64)
        sizes[np.searchsorted(ids, self.identity_ids)] = self.sizes
        touched = np.searchsorted(ids, gaining)
        sizes[touched] += gained
        if old_count and len(added) and added[0] < self.identity_ids[-1]:
            # an identity sorts among the old ones (e.g. its first row of this modality): shift rows
            grown = np.empty((_with_spare(len(ids), 64), table.dim), dtype=np.float32)
            grown[: len(ids)][np.isin(ids, self.identity_ids, assume_unique=True)] = self.vectors
            self._buffer = grown
        elif len(ids) > len(self._buffer):
            grown = np.empty((max(len(ids), int(len(self._buffer) * _GROWTH)), table.dim), dtype=np.float32)
            grown[:old_count] = self.vectors
            self._buffer = grown
        self.identity_ids, self.sizes = ids, sizes
        self.starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
        fresh = np.empty((len(touched), table.dim), dtype=np.float32)
        _unit_means(table.vectors, self.members, self.starts[touched], sizes[touched], fresh)
        self._buffer[touched] = fresh


def _unit_means(
    vectors: np.ndarray, members: np.ndarray, starts: np.ndarray, sizes: np.ndarray, out: np.ndarray
) -> None:
    """`out[g]` = unit mean of `vectors[members[starts[g] : starts[g] + sizes[g]]]` (see `_group_sums`)."""
    _group_sums(vectors, members, starts, sizes, out)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _group_sums(
    vectors: np.ndarray, members: np.ndarray, starts: np.ndarray, sizes: np.ndarray, out: np.ndarray
) -> None:
    """`out[g]` = sum of the rows `members[starts[g] : starts[g] + sizes[g]]` of `vectors`, added one
    after another in float64 and rounded to float32 (so a group's sum never depends on the others).

    One Python call per identity dominated small vectors (~6 us each: 0.6 s for 100k identities at 64-d),
    and `np.add.reduceat` along rows is slower still. So identities are summed rank by rank: the first
    rows of a batch of identities, then their second rows, ... (largest identities first, so the ones
    still adding rows are a prefix), in a float64 accumulator small enough to stay in cache. Identities
    with many rows x dim are summed one by one (`sum(axis=0)` adds rows in order too: same bits), which
    at 2048-d reads as fast and bounds the rank loop when one identity holds thousands of rows.
    """
    dim = vectors.shape[1]
    alone = sizes * dim >= _LOOP_ELEMENTS
    for g in np.flatnonzero(alone):
        start = int(starts[g])
        out[g] = vectors[members[start : start + int(sizes[g])]].sum(axis=0, dtype=np.float64)
    ranked = np.flatnonzero(~alone)
    if len(ranked) == 0:
        return
    ranked = ranked[np.argsort(-sizes[ranked], kind="stable")]
    batch = max(1, min(len(ranked), _ACCUMULATOR_BYTES // (8 * max(dim, 1))))
    accumulator = np.empty((batch, dim), dtype=np.float64)
    gathered = np.empty((batch, dim), dtype=np.float32)
    for first in range(0, len(ranked), batch):
        groups = ranked[first : first + batch]
        heads, counts = starts[groups], sizes[groups]
        np.take(vectors, members[heads], axis=0, out=gathered[: len(groups)])
        accumulator[: len(groups)] = gathered[: len(groups)]
        for rank in range(1, int(counts[0])):
            adding = int(np.count_nonzero(counts > rank))
            np.take(vectors, members[heads[:adding] + rank], axis=0, out=gathered[:adding])
            accumulator[:adding] += gathered[:adding]
        out[groups] = accumulator[: len(groups)]


def top_centroids(
    table: RowTable, queries: np.ndarray, k: int, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """`[Q, k]` identities by cosine to their centroid (descending) and, per result, the identity's
    closest row (so a `Match` still names one stored embedding); row -1 / score -inf pad."""
    cents = table.centroids(mask)
    top, chosen = top_k(blocked_scores(queries, cents.vectors), k)
    rows = np.full(chosen.shape, -1, dtype=np.int64)
    for q, g in zip(*np.nonzero(np.isfinite(top)), strict=True):
        members = cents.members_of(int(chosen[q, g]))
        rows[q, g] = members[np.argmax(table.vectors[members] @ queries[q])]
    return top, rows


class RowTable:
    """Vectors and tags of every stored embedding, row-aligned, synchronised from a `GalleryStore`."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self._buffer = np.empty((0, dim), dtype=np.float32)
        self.ids = np.zeros(0, dtype=np.int64)
        self.identity_ids = np.zeros(0, dtype=np.int64)
        self.modalities = np.zeros(0, dtype=np.int8)
        self.camera_codes = np.zeros(0, dtype=np.int32)
        self.camera_names: list[str | None] = []
        self._camera_code: dict[str | None, int] = {}
        self.names: dict[int, str] = {}
        self.counters = (-1, -1)
        self.compactions = 0  # bumped whenever rows move or vanish (backends rebuild then)
        self._groups: Groups | None = None
        # (rows covered, selection over them) -> centroids; kept across appends, dropped by compactions
        self._centroids: dict[tuple[int, bytes | None], Centroids] = {}

    @property
    def vectors(self) -> np.ndarray:
        """`(n, dim)` float32 C-contiguous view of the stored unit vectors."""
        return self._buffer[: self.n]

    # ----- synchronisation ------------------------------------------------------------------------
    def sync(self, store: GalleryStore) -> bool:
        """Catch up with every commit since the last sync; returns whether anything changed."""
        if store.counters() == self.counters:
            return False
        with store.snapshot() as conn:
            counters = store.counters()
            if self.counters[0] >= 0 and counters[1] == self.counters[1]:
                columns = store.row_columns(conn, int(self.ids.max(initial=0)))
                self._append(store, conn, columns)
                self.names.update((r[0], r[1]) for r in store.identity_rows(conn, max(self.names, default=0)))
                # names only grow here and the rows held before were checked: the new ones suffice
                self._check_owners(store, columns.identity_ids)
            else:
                self._reconcile(store, conn)
                self.names = {r[0]: r[1] for r in store.identity_rows(conn)}
                self._check_owners(store, self.identity_ids)
            self.counters = counters
        self._groups = None
        return True

    def _check_owners(self, store: GalleryStore, owners: np.ndarray) -> None:
        """Every embedding belongs to a listed identity; vireid's transactions never leave one without,
        but a damaged file can, and `matches` would then fail on a missing name."""
        orphans = [i for i in np.unique(owners).tolist() if i not in self.names]
        if orphans:
            self.counters = (-1, -1)  # nothing half-read is kept: the next call reads everything again
            raise GalleryError(
                f"{store.path}: the gallery is damaged: embeddings belong to identity ids "
                f"{orphans[:5]} that its identities table lacks; restore the file from a backup "
                "(one `vireid gallery backup` wrote) or an export (`vireid gallery import`)"
            )

    def _reconcile(self, store: GalleryStore, conn: sqlite3.Connection) -> None:
        columns = store.row_columns(conn)
        keep = np.flatnonzero(np.isin(self.ids, columns.ids))
        if len(keep) != self.n:
            self._compact(keep)
        missing = ~np.isin(columns.ids, self.ids)
        self._append(store, conn, _select(columns, missing))

    def _compact(self, keep: np.ndarray) -> None:
        # In place, chunk by chunk: keep[i] >= i, so a chunk never overwrites rows later chunks read.
        # Rows before the first removed one stay where they are.
        moved = np.flatnonzero(keep != np.arange(len(keep)))
        for start in range(int(moved[0]) if len(moved) else len(keep), len(keep), 4096):
            part = keep[start : start + 4096]
            self._buffer[start : start + len(part)] = self._buffer[part]
        self.n = len(keep)
        self.ids = self.ids[keep]
        self.identity_ids = self.identity_ids[keep]
        self.modalities = self.modalities[keep]
        self.camera_codes = self.camera_codes[keep]
        self.compactions += 1
        self._centroids = {}  # their rows moved

    def _append(self, store: GalleryStore, conn: sqlite3.Connection, columns: RowColumns) -> None:
        count = len(columns.ids)
        if count == 0:
            return
        self._reserve(self.n + count)
        store.read_vectors(conn, columns.ids, self._buffer[self.n : self.n + count])
        self.n += count
        self.ids = np.concatenate([self.ids, columns.ids])
        self.identity_ids = np.concatenate([self.identity_ids, columns.identity_ids])
        self.modalities = np.concatenate([self.modalities, columns.modalities])
        codes = np.array([self._code(c) for c in columns.cameras], dtype=np.int32)
        self.camera_codes = np.concatenate([self.camera_codes, codes])

    def _reserve(self, rows: int) -> None:
        if rows <= len(self._buffer):
            return
        # headroom from the start: the first enrolment after loading a large gallery used to copy the
        # whole matrix (capacity == rows), with a transient 2.5x of its memory
        capacity = _with_spare(rows, 1024)
        if self.n:
            capacity = max(capacity, int(len(self._buffer) * _GROWTH))
        grown = np.empty((capacity, self.dim), dtype=np.float32)
        grown[: self.n] = self._buffer[: self.n]
        self._buffer = grown

    def _code(self, camera: str | None) -> int:
        code = self._camera_code.get(camera)
        if code is None:
            code = self._camera_code[camera] = len(self.camera_names)
            self.camera_names.append(camera)
        return code

    # ----- queries --------------------------------------------------------------------------------
    def mask(
        self,
        modality: Modality | None = None,
        cameras: tuple[str, ...] | None = None,
        identity_ids: list[int] | None = None,
    ) -> np.ndarray | None:
        """Boolean row mask of the filters, or None when there is no filter."""
        if modality is None and cameras is None and identity_ids is None:
            return None
        mask = np.ones(self.n, dtype=bool)
        if modality is not None:
            mask &= self.modalities == int(modality)
        if cameras is not None:
            codes = [self._camera_code[c] for c in cameras if c in self._camera_code]
            mask &= np.isin(self.camera_codes, codes)
        if identity_ids is not None:
            mask &= np.isin(self.identity_ids, identity_ids)
        return mask

    def groups(self) -> Groups:
        """Rows grouped by identity (cached until the next change)."""
        if self._groups is None:
            self._groups = Groups.of(self.identity_ids)
        return self._groups

    def centroids(self, mask: np.ndarray | None) -> Centroids:
        """Each identity's unit mean over the rows `mask` selects. Cached per selection: a set built
        before rows were appended is found by what `mask` selects among the rows it covers (that never
        changes while rows do not move) and extended with the new rows instead of rebuilt."""
        keys: dict[int, tuple[int, bytes | None]] = {}
        for key, found in list(self._centroids.items()):
            if key[0] not in keys:
                keys[key[0]] = _selection(mask, key[0])
            if key == keys[key[0]]:
                if found.covered < self.n:
                    del self._centroids[key]
                    found.extend(self, mask)
                    self._centroids[_selection(mask, self.n)] = found
                return found
        if len(self._centroids) >= _CENTROID_CACHE:
            self._centroids.pop(next(iter(self._centroids)))
        found = self._centroids[_selection(mask, self.n)] = Centroids(self, mask)
        return found

    def matches(self, scores: np.ndarray, rows: np.ndarray) -> list[list[Match]]:
        """Typed results from `[Q, k]` scores and row positions (row -1 marks "no result")."""
        out = []
        for query_scores, query_rows in zip(scores.tolist(), rows.tolist(), strict=True):
            out.append(
                [
                    Match(
                        identity=self.names[int(self.identity_ids[r])],
                        score=s,
                        embedding_id=int(self.ids[r]),
                        modality=Modality(int(self.modalities[r])),
                        camera=self.camera_names[self.camera_codes[r]],
                    )
                    for s, r in zip(query_scores, query_rows, strict=True)
                    if r >= 0
                ]
            )
        return out


class SearchBackend(Protocol):
    """How top-k rows and top-k identities are found over a `RowTable`."""

    name: str  # what `Gallery.backend` reports: `numpy`, `faiss`

    def top_rows(
        self, table: RowTable, queries: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`[Q, k]` scores (descending) and row positions; row -1 / score -inf pad missing results."""
        ...

    def top_groups(
        self, table: RowTable, queries: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like `top_rows` with at most one row per identity: each identity's best row."""
        ...


class NumpyBackend:
    """Exact search with one float32 matrix product (BLAS) per call."""

    name = "numpy"

    def top_rows(
        self, table: RowTable, queries: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """See `SearchBackend.top_rows`."""
        scores, rows = _scores(table, queries, mask)
        top, pos = top_k(scores, k)
        return top, _positions(rows, pos, top)

    def top_groups(
        self, table: RowTable, queries: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """See `SearchBackend.top_groups`."""
        scores, rows = _scores(table, queries, mask)
        groups = table.groups() if rows is None else Groups.of(table.identity_ids[rows])
        if len(groups.order) == 0:
            return top_k(scores, k)
        best = np.maximum.reduceat(scores[:, groups.order], groups.starts, axis=1)
        top, chosen = top_k(best, k)
        pos = np.full(chosen.shape, -1, dtype=np.int64)
        for q, g in zip(*np.nonzero(np.isfinite(top)), strict=True):
            members = groups.members(int(chosen[q, g]))
            pos[q, g] = members[np.argmax(scores[q, members])]
        return top, _positions(rows, pos, top)


def _scores(
    table: RowTable, queries: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores of the selected rows: `[Q, n]` with -inf where masked out, or `[Q, m]` of gathered rows."""
    vectors = table.vectors
    if mask is None:
        return blocked_scores(queries, vectors), None
    selected = np.flatnonzero(mask)
    if len(selected) < _SUBSET_FRACTION * table.n:
        return blocked_scores(queries, vectors[selected]), selected
    scores = blocked_scores(queries, vectors)
    scores[:, ~mask] = -np.inf
    return scores, None


def blocked_scores(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """`queries @ vectors.T` as a C-contiguous `[Q, n]` float32 array, computed block by block of rows.

    One BLAS call over a 100k x 2048 matrix with a handful of queries streams the matrix through the
    cache badly; blocks of ~8 MiB of rows cut the time by about a third on a 2-core x86-64 CPU. Each
    block's `[rows, Q]` product is transposed into place while it is still in cache: returning the
    transposed view instead made `argpartition` along a query's scores (a strided row) 1.75x slower.
    """
    n, dim = vectors.shape
    out = np.empty((len(queries), n), dtype=np.float32)
    transposed = np.ascontiguousarray(queries.T, dtype=np.float32)
    step = max(256, _BLOCK_BYTES // (4 * max(dim, 1)))
    block = np.empty((min(step, n), len(queries)), dtype=np.float32)
    for start in range(0, n, step):
        part = block[: min(step, n - start)]
        np.matmul(vectors[start : start + step], transposed, out=part)  # the same products as before
        for sub in range(0, len(part), _TRANSPOSE_ROWS):
            end = min(sub + _TRANSPOSE_ROWS, len(part))
            out[:, start + sub : start + end] = part[sub:end].T
    return out


def _positions(rows: np.ndarray | None, pos: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Map positions within the scored columns back to table rows; -1 where the score is -inf."""
    mapped = pos if rows is None else rows[np.maximum(pos, 0)]
    return np.where(np.isfinite(top), mapped, -1).astype(np.int64)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` highest scores of each row, descending (ties: smaller position first), and positions."""
    num_queries, n = scores.shape
    k = min(k, n)
    if k == 0:
        return np.full((num_queries, 0), -np.inf, dtype=np.float32), np.zeros(
            (num_queries, 0), dtype=np.int64
        )
    if k < n:
        part = np.argpartition(scores, n - k, axis=1)[:, n - k :]
        _prefer_older_at_the_cut(scores, part)
    else:
        part = np.broadcast_to(np.arange(n), (num_queries, n))
    top = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -top), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(part, order, axis=1).astype(np.int64)


def _prefer_older_at_the_cut(scores: np.ndarray, part: np.ndarray) -> None:
    """Where scores tie at the k-th place, `argpartition` keeps arbitrary ones; redo those rows so the
    smaller positions (older embeddings) are kept, as the ordering rule promises (in place)."""
    k = part.shape[1]
    kept = np.take_along_axis(scores, part, axis=1)
    cut = kept.min(axis=1, keepdims=True)
    tied = (scores == cut).sum(axis=1) > (kept == cut).sum(axis=1)
    for row in np.flatnonzero(tied):
        candidates = np.flatnonzero(scores[row] >= cut[row, 0])
        order = np.lexsort((candidates, -scores[row, candidates]))[:k]
        part[row] = candidates[order]


def _with_spare(rows: int, minimum: int) -> int:
    """Rows to allocate for `rows`: a few percent more, at least `minimum` more (pages never written to
    cost no memory)."""
    return rows + max(minimum, rows // _SPARE_SHARE)


def _selection(mask: np.ndarray | None, rows: int) -> tuple[int, bytes | None]:
    """Cache key of the rows `mask` selects among the first `rows` (None: every row)."""
    return rows, None if mask is None else np.packbits(mask[:rows]).tobytes()


def _select(columns: RowColumns, mask: np.ndarray) -> RowColumns:
    return RowColumns(
        ids=columns.ids[mask],
        identity_ids=columns.identity_ids[mask],
        modalities=columns.modalities[mask],
        cameras=[c for c, keep in zip(columns.cameras, mask.tolist(), strict=True) if keep],
    )
