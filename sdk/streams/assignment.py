"""Box overlap and optimal assignment in numpy (no scipy, no lap).

`assign(cost, limit)` is what ByteTrack gets from `lap.lapjv(cost, extend_cost=True, cost_limit=limit)`:
the minimum-cost matching in which a pair is used only when its cost is below `limit` (leaving a row
and a column unmatched costs `limit / 2` each). It solves the extended square problem with the
Hungarian algorithm (shortest augmenting paths with potentials, O(n³), vectorised over columns), which
is quick for the tens of tracks and boxes a camera sees.
"""

from __future__ import annotations

import numpy as np

_FORBIDDEN = 1e9


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (`[N, 4]` xyxy) with every box in `b` (`[M, 4]`): float64 `[N, M]`."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a rectangular matrix: every row of the smaller side gets a column.

    Returns `(rows, cols)` index arrays sorted by row, like `scipy.optimize.linear_sum_assignment`.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {cost.shape}")
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, np.int64)  # owner[j]: 1-based row matched to column j (0: none)
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            done = np.flatnonzero(used)
            u[owner[done]] += delta
            v[done] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    cols = np.flatnonzero(owner[1:])
    rows = owner[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def assign(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match rows to columns, using only pairs whose cost is below `limit`.

    Returns `(matches [K, 2], unmatched_rows, unmatched_cols)`.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64), np.arange(n), np.arange(m)
    # Extended square problem: [[C, L/2 on the diagonal], [L/2 on the diagonal, 0]].
    size = n + m
    big = np.full((size, size), _FORBIDDEN)
    big[:n, :m] = np.where(cost < limit, cost, _FORBIDDEN)
    big[n:, m:] = 0.0
    big[np.arange(n), m + np.arange(n)] = limit / 2
    big[n + np.arange(m), np.arange(m)] = limit / 2
    rows, cols = linear_sum_assignment(big)
    pairs = (rows < n) & (cols < m)
    matches = np.stack([rows[pairs], cols[pairs]], axis=1)
    matches = matches[cost[matches[:, 0], matches[:, 1]] < limit]
    unmatched_rows = np.setdiff1d(np.arange(n), matches[:, 0])
    unmatched_cols = np.setdiff1d(np.arange(m), matches[:, 1])
    return matches.astype(np.int64), unmatched_rows, unmatched_cols
