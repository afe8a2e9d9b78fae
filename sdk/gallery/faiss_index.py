"""Optional faiss backend (`IndexFlatIP`): exact inner-product search, same results as numpy.

faiss is imported when the backend is created, never at module level; without it the error names the
pip extra. The flat index holds its own copy of the vectors (twice the memory of the numpy backend) and
is extended in place after appends, rebuilt after removals. Filters become an `IDSelectorBitmap`.
Per-identity search asks faiss for more rows until every query has `k` distinct identities (exact: an
identity's best row is its first row in the ranking).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import require
from .index import RowTable


class FaissBackend:
    """Search with a faiss `IndexFlatIP` mirroring a `RowTable`."""

    name = "faiss"

    def __init__(self) -> None:
        self._faiss: Any = require("faiss", "faiss", "The faiss gallery backend")
        self._index: Any = None
        self._state = (-1, 0)  # (table compactions, rows indexed)

    def _synced(self, table: RowTable) -> Any:
        compactions, indexed = self._state
        if self._index is None or compactions != table.compactions or indexed > table.n:
            self._index = self._faiss.IndexFlatIP(table.dim)
            indexed = 0
        if indexed < table.n:
            self._index.add(table.vectors[indexed:])
        self._state = (table.compactions, table.n)
        return self._index

    def top_rows(
        self, table: RowTable, queries: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """See `SearchBackend.top_rows`."""
        index = self._synced(table)
        k = min(k, table.n)
        if k == 0:
            return np.full((len(queries), 0), -np.inf, np.float32), np.zeros((len(queries), 0), np.int64)
        params = None
        if mask is not None:
            bitmap = np.packbits(mask, bitorder="little")
            params = self._faiss.SearchParameters(sel=self._faiss.IDSelectorBitmap(bitmap))
        scores, rows = self._search(index, np.ascontiguousarray(queries, dtype=np.float32), k, params)
        rows = rows.astype(np.int64)
        scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
        return scores, rows

    def _search(self, index: Any, queries: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, np.ndarray]:
        # faiss scores fewer queries than `distance_compute_blas_threshold` one by one, reading the
        # whole matrix per query; a re-identification batch is small, so force the BLAS path.
        cvar: Any = getattr(self._faiss, "cvar", None)  # faiss's SWIG globals, untyped
        saved = getattr(cvar, "distance_compute_blas_threshold", None)
        if saved is not None:
            cvar.distance_compute_blas_threshold = 1
        try:
            return index.search(queries, k, params=params)
        finally:
            if saved is not None:
                cvar.distance_compute_blas_threshold = saved

    def top_groups(
        self, table: RowTable, queries: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """See `SearchBackend.top_groups`."""
        available = table.n if mask is None else int(mask.sum())
        fetch = min(available, max(4 * k, 32))
        while True:
            scores, rows = self.top_rows(table, queries, fetch, mask)
            picked = [_first_per_identity(table, r, k) for r in rows]
            if fetch >= available or all(len(p) == k for p in picked):
                break
            fetch = min(available, fetch * 4)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        for q, positions in enumerate(picked):
            out_scores[q, : len(positions)] = scores[q, positions]
            out_rows[q, : len(positions)] = rows[q, positions]
        return out_scores, out_rows


def _first_per_identity(table: RowTable, rows: np.ndarray, k: int) -> np.ndarray:
    """Positions in a ranked row list of each identity's first (best) row, at most `k`."""
    valid = rows[rows >= 0]
    _, first = np.unique(table.identity_ids[valid], return_index=True)
    return np.sort(first)[:k]
