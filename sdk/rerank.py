"""k-reciprocal re-ranking of query–gallery distances (Zhong et al., CVPR 2017).

Offline search over a fixed set of queries (a recording, an evaluation protocol) can rank better than
plain nearest neighbours: two images are more likely the same person when each is among the other's
nearest neighbours and their neighbourhoods overlap. `k_reciprocal_distance` replaces the cosine
distance with a blend of the Jaccard distance between k-reciprocal neighbourhoods, computed over
queries and gallery together, and the original distance. It needs every query up front, so it suits
batch search and evaluation, not a live stream; with n = queries + gallery it needs about 34·n² bytes
(1.6 GB at 7,000, SYSU-MM01's multi-shot protocol) and time growing with n³ (5 s at 4,000 on 2 cores),
so it refuses sets above `MAX_ITEMS`.

Papers in the field report results with and without it; the protocol numbers in vireid's docs are
without it unless they say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputSpecError

MAX_ITEMS = 12_000
"""Largest queries + gallery `k_reciprocal_distance` accepts (about 5 GB of n×n matrices, measured)."""


@dataclass(frozen=True)
class Rerank:
    """Parameters of k-reciprocal re-ranking; the defaults are the paper's and the field's usual ones.

    Attributes:
        k1: neighbourhood size of the k-reciprocal sets.
        k2: neighbours averaged in the local query expansion (1: none).
        weight: share of the original distance in the result (the paper's λ); 1 - weight goes to the
            Jaccard distance.
    """

    k1: int = 20
    k2: int = 6
    weight: float = 0.3

    def __post_init__(self) -> None:
        if not (isinstance(self.k1, int) and self.k1 >= 1 and isinstance(self.k2, int) and self.k2 >= 1):
            raise InputSpecError(
                f"re-ranking needs integers k1 >= 1 and k2 >= 1, got k1={self.k1}, k2={self.k2}"
            )
        if not 0.0 <= self.weight <= 1.0:
            raise InputSpecError(f"re-ranking weight (λ) must lie in [0, 1], got {self.weight}")

    @classmethod
    def parse(cls, text: str) -> Rerank:
        """`"K1,K2,WEIGHT"` (e.g. `"20,6,0.3"`), as the CLI takes it."""
        parts = [p.strip() for p in text.split(",")]
        try:
            if len(parts) != 3:
                raise ValueError
            k1, k2, weight = int(parts[0]), int(parts[1]), float(parts[2])
        except ValueError:
            raise InputSpecError(
                f"re-ranking parameters must be K1,K2,WEIGHT such as 20,6,0.3; got {text!r}"
            ) from None
        return cls(k1, k2, weight)  # out of range: its own message (λ must lie in [0, 1], ...)

    def describe(self) -> str:
        return f"k-reciprocal re-ranking (k1 {self.k1}, k2 {self.k2}, λ {self.weight:g})"


def k_reciprocal_distance(queries: np.ndarray, gallery: np.ndarray, params: Rerank = Rerank()) -> np.ndarray:
    """Re-ranked distances `[num_queries, num_gallery]` (smaller is closer) of L2-normalised features.

    Raises:
        InputSpecError: the features are not `(N, D)` and `(M, D)`, or N + M exceeds `MAX_ITEMS`.
    """
    q, g = np.asarray(queries, np.float32), np.asarray(gallery, np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise InputSpecError(f"features must be (N, D) and (M, D), got {q.shape} and {g.shape}")
    num_q, n = len(q), len(q) + len(g)
    if n > MAX_ITEMS:
        raise InputSpecError(
            f"re-ranking {num_q} queries against {len(g)} gallery items needs {n}x{n} matrices (about "
            f"{34 * n * n / 1e9:.0f} GB); the limit is {MAX_ITEMS} items together: rank without re-ranking "
            "(batches of queries would change the result: it depends on all of them)"
        )
    if num_q == 0 or len(g) == 0:
        return np.zeros((num_q, len(g)), np.float32)
    feats = np.concatenate([q, g])
    dist = np.maximum(2.0 - 2.0 * (feats @ feats.T), 0.0)  # squared Euclidean distance of unit vectors
    dist /= np.maximum(dist.max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    order = np.argsort(dist, axis=1, kind="stable")
    neighbours = _expanded_neighbourhoods(order, params.k1)
    weights: np.ndarray = np.where(neighbours, np.exp(-dist), 0.0).astype(np.float32)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    expansion = min(params.k2, n)  # the reference's slice [:k2] takes every item when k2 exceeds them
    if expansion > 1:  # local query expansion: average over each item's k2 nearest
        weights = sum((weights[order[:, j]] for j in range(expansion)), np.zeros_like(weights)) / expansion
    jaccard = _jaccard_distance(weights[:num_q], weights[num_q:])
    return ((1.0 - params.weight) * jaccard + params.weight * dist[:num_q, num_q:]).astype(np.float32)


def _reciprocal(order: np.ndarray, k: int) -> np.ndarray:
    """`[n, n]` bool: j is among i's k+1 nearest (i itself included) and i among j's."""
    n = len(order)
    near = np.zeros((n, n), bool)
    near[np.arange(n)[:, None], order[:, : k + 1]] = True
    return near & near.T


def _expanded_neighbourhoods(order: np.ndarray, k1: int) -> np.ndarray:
    """Each item's k1-reciprocal set, joined by the k1/2-reciprocal set of any member that shares more
    than two thirds of its own set with it (the paper's robust expansion)."""
    sets = _reciprocal(order, k1).astype(np.float32)
    halves = _reciprocal(order, int(np.around(k1 / 2))).astype(np.float32)
    overlap = sets @ halves.T  # [i, c] = |halves[c] ∩ sets[i]|; exact in float32 for counts < 2**24
    joins = (sets > 0) & (overlap > (2.0 / 3.0) * halves.sum(axis=1)[None, :])
    return (sets > 0) | ((joins.astype(np.float32) @ halves) > 0)


def _jaccard_distance(query_weights: np.ndarray, gallery_weights: np.ndarray) -> np.ndarray:
    """`1 - Σ min / Σ max` of neighbourhood weight vectors (rows sum to 1, so Σ max = 2 - Σ min)."""
    out = np.empty((len(query_weights), len(gallery_weights)), np.float32)
    for i, row in enumerate(query_weights):
        support = np.flatnonzero(row)
        shared = np.minimum(row[support][None, :], gallery_weights[:, support]).sum(axis=1)
        out[i] = 1.0 - shared / (2.0 - shared)
    return out
