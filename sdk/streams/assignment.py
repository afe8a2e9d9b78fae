"""Box overlap and optimal assignment in numpy (no scipy, no lap).

`assign(cost, limit)` is what ByteTrack gets from `lap.lapjv(cost, extend_cost=True, cost_limit=limit)`:
the minimum-cost matching in which a pair is used only when its cost is below `limit` (leaving a row
and a column unmatched costs `limit / 2` each). It splits the matrix into the groups of rows and
columns the allowed pairs link, and solves each alone: directly when it is one row or one column, else
with the Hungarian algorithm (shortest augmenting paths with potentials, O(n³), vectorised over
columns) on that group's rows and columns only. A tracker's groups are a person or a few who overlap,
so a crowded camera costs about in proportion to its people, not to their number cubed.
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

    Returns `(matches [K, 2], unmatched_rows, unmatched_cols)`, matches sorted by row. The matching
    minimises the cost of its pairs plus `limit / 2` per row and per column left unmatched.

    The pairs under the limit link rows and columns into groups that share nothing (in a tracker, one
    per person or per knot of people who overlap), and the optimum is the union of the groups' own
    optima. So each group is solved alone: one row or one column with all its partners directly, a
    larger group with the Hungarian algorithm on its own rows and columns, not padded to a square.
    The work grows with the number of groups and the cube of the largest, not with (n + m) cubed as
    one square problem over the whole matrix did (a tracker's 50 x 50 matrix: ~30 ms then, ~1 ms now).

    Ties: between pairs of equal cost for one row (or one column), the first column (row) wins; in a
    larger group, ties fall as the Hungarian algorithm meets them. Either way they depend on that
    group alone, not on who else is in the matrix.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64), np.arange(n), np.arange(m)
    pair_rows, pair_cols = np.nonzero(cost < limit)
    found_rows: list[int] = []
    found_cols: list[int] = []
    for rows, cols in _groups(pair_rows, pair_cols):
        if len(rows) == 1:  # every pair saves something: the cheapest column, the first of equals
            found_rows.append(rows[0])
            found_cols.append(cols[int(np.argmin(cost[rows[0], cols]))])
        elif len(cols) == 1:
            found_rows.append(rows[int(np.argmin(cost[rows, cols[0]]))])
            found_cols.append(cols[0])
        else:
            local_rows, local_cols = _group_optimum(cost[np.ix_(rows, cols)], limit)
            found_rows += [rows[i] for i in local_rows]
            found_cols += [cols[j] for j in local_cols]
    order = np.argsort(found_rows)
    matches = np.stack([np.asarray(found_rows, np.int64)[order], np.asarray(found_cols, np.int64)[order]], 1)
    unmatched_rows = np.setdiff1d(np.arange(n), matches[:, 0])
    unmatched_cols = np.setdiff1d(np.arange(m), matches[:, 1])
    return matches, unmatched_rows, unmatched_cols


def _groups(pair_rows: np.ndarray, pair_cols: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Connected groups of the bipartite graph of allowed pairs: `(rows, cols)`, each sorted.

    Union-find over the pairs (a few per row in a tracker): linear in their number, where a dense
    labelling would be quadratic in the matrix size.
    """
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def root(node: tuple[int, int]) -> tuple[int, int]:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for i, j in zip(pair_rows.tolist(), pair_cols.tolist(), strict=True):
        a, b = (0, i), (1, j)
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra
    groups: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for node in sorted(parent):
        groups.setdefault(root(node), ([], []))[node[0]].append(node[1])
    return list(groups.values())


def _group_optimum(cost: np.ndarray, limit: float) -> tuple[list[int], list[int]]:
    """The pairs `assign` keeps for one group of at least two rows and two columns.

    Minimising the sum of `cost - limit` over the pairs used is the extended problem less a constant
    (`limit / 2` per row and per column), and setting refused pairs to 0 lets the rectangular solver
    use them freely, as leaving the row and the column unmatched: no padding to a square is needed.
    """
    saving = np.where(cost < limit, cost - limit, 0.0)
    rows, cols = linear_sum_assignment(saving)
    keep = cost[rows, cols] < limit
    return rows[keep].tolist(), cols[keep].tolist()
