"""Re-identification metrics (CMC, mAP, mINP) with the standard visible–infrared protocol rules.

`evaluate_sysu` and `evaluate_regdb` reproduce the reference evaluation used across the VI-ReID
literature (the AGW / DDAG code base) exactly, ties included (gallery order is `np.argsort(distmat)`,
numpy's default sort, as in the reference), but vectorised over queries:

- SYSU-MM01: for a query from camera 3, *every* gallery image from camera 2 is discarded (the reference
  code drops the camera regardless of identity, although its comment says otherwise). The CMC counts each
  gallery identity once, at its first occurrence in the ranking; mAP and mINP use the full ranked list.
- RegDB: plain CMC over the ranked list, no removal.
- Queries with no positive left in the gallery are skipped (not counted in any average).
- mINP = (number of positives) / (rank of the last positive).

`distmat` is a distance: smaller is closer (use `1 - cosine` or `-cosine`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputSpecError


@dataclass(frozen=True, eq=False)  # numpy fields: == would be ambiguous
class RankMetrics:
    """Ranking quality of a query set against a gallery.

    Attributes:
        cmc: float array of length `max_rank` (fractions); `cmc[0]` is Rank-1.
        mAP: mean average precision, a fraction.
        mINP: mean inverse negative penalty, a fraction.
        num_queries: queries that had at least one positive in the gallery (the ones averaged).
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_queries: int = 0

    def rank(self, k: int) -> float:
        """Rank-k accuracy (k starts at 1); the last CMC value when k exceeds its length."""
        if k < 1:
            raise InputSpecError(f"rank k starts at 1, got {k}")
        return float(self.cmc[min(k, len(self.cmc)) - 1])

    def as_dict(self) -> dict[str, float]:
        """`{"R1", "R5", "R10", "R20", "mAP", "mINP"}` as fractions."""
        out = {f"R{k}": self.rank(k) for k in (1, 5, 10, 20)}
        out.update(mAP=float(self.mAP), mINP=float(self.mINP))
        return out


def _check_inputs(
    distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, max_rank: int, what: str = "pids"
) -> np.ndarray:
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise InputSpecError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    if np.shape(q_pids) != (num_q,) or np.shape(g_pids) != (num_g,):
        raise InputSpecError(
            f"{what} must match distmat {distmat.shape}: got {np.shape(q_pids)} for the queries, "
            f"{np.shape(g_pids)} for the gallery"
        )
    if num_q == 0 or num_g == 0:
        raise InputSpecError(f"need at least one query and one gallery item, got {distmat.shape}")
    if max_rank < 1:
        raise InputSpecError(f"max_rank must be >= 1, got {max_rank}")
    if not np.isfinite(distmat).all():  # argsort would rank NaN last and score it as a weak model
        raise InputSpecError(
            f"distmat holds {int(np.size(distmat) - np.isfinite(distmat).sum())} NaN or infinite "
            "distances; check the embeddings for non-finite values"
        )
    return distmat


def _ranked(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(distmat, axis=1)
    matches = g_pids[order] == np.asarray(q_pids)[:, None]
    return order, matches


def _ap_and_inp(matches: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-query AP and INP over the kept part of each ranked row; also the valid-query mask."""
    hits = matches & keep
    kept_rank = np.cumsum(keep, axis=1)  # 1-based rank among kept items
    hit_count = np.cumsum(hits, axis=1)
    num_rel = hit_count[:, -1]
    valid = num_rel > 0
    precision_at_hits = np.where(hits, hit_count / np.maximum(kept_rank, 1), 0.0)
    ap = precision_at_hits.sum(axis=1) / np.maximum(num_rel, 1)
    last_hit = hits.shape[1] - 1 - np.argmax(hits[:, ::-1], axis=1)
    rank_of_last = kept_rank[np.arange(len(hits)), last_hit]
    inp = num_rel / np.maximum(rank_of_last, 1)
    return ap, inp, valid


def _plain_cmc(matches: np.ndarray, keep: np.ndarray, max_rank: int) -> np.ndarray:
    """Per-query CMC rows: 1 from the rank of the first kept positive on."""
    hits = matches & keep
    kept_rank = np.cumsum(keep, axis=1)
    first = np.where(hits.any(axis=1), kept_rank[np.arange(len(hits)), np.argmax(hits, axis=1)], 0)
    ranks = np.arange(1, max_rank + 1)
    return (first[:, None] >= 1) & (first[:, None] <= ranks[None, :])


def _dedup_cmc(
    order: np.ndarray, matches: np.ndarray, keep: np.ndarray, g_pids: np.ndarray, max_rank: int
) -> np.ndarray:
    """Per-query CMC rows where each gallery identity counts once, at its first kept occurrence."""
    num_q, num_g = order.shape
    _, ids = np.unique(g_pids, return_inverse=True)
    ranked_ids = ids[order]
    position = np.where(keep, np.arange(num_g)[None, :], num_g)
    first_pos = np.full((num_q, ids.max() + 1), num_g)
    np.minimum.at(first_pos, (np.repeat(np.arange(num_q), num_g), ranked_ids.ravel()), position.ravel())
    hits = matches & keep
    has_hit = hits.any(axis=1)
    query_first = np.where(has_hit, position[np.arange(num_q), np.argmax(hits, axis=1)], num_g)
    dedup_rank = (first_pos < query_first[:, None]).sum(axis=1) + 1
    ranks = np.arange(1, max_rank + 1)
    return has_hit[:, None] & (dedup_rank[:, None] <= ranks[None, :])


def _summarise(cmc_rows: np.ndarray, ap: np.ndarray, inp: np.ndarray, valid: np.ndarray) -> RankMetrics:
    count = int(valid.sum())
    if count == 0:
        raise InputSpecError("no query has a positive in the gallery; check the ids of query and gallery")
    cmc = cmc_rows[valid].sum(axis=0, dtype=np.float64) / count
    return RankMetrics(cmc=cmc, mAP=float(ap[valid].mean()), mINP=float(inp[valid].mean()), num_queries=count)


SYSU_EXCLUDED = ((3, 2),)
"""(query camera, gallery camera) pairs SYSU-MM01 removes: camera 2 for camera-3 queries (the same room)."""


def evaluate_sysu(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 20,
    excluded: tuple[tuple[int, int], ...] = SYSU_EXCLUDED,
) -> RankMetrics:
    """SYSU-MM01 evaluation (camera-2 removal for camera-3 queries, identity-deduplicated CMC).

    `excluded` lists the (query camera, gallery camera) pairs whose gallery images a query never sees;
    the reverse direction (visible queries) passes `((2, 3),)`.
    """
    distmat = _check_inputs(distmat, q_pids, g_pids, max_rank)
    _check_inputs(distmat, q_camids, g_camids, max_rank, what="camids")
    g_pids, q_camids, g_camids = np.asarray(g_pids), np.asarray(q_camids), np.asarray(g_camids)
    max_rank = min(max_rank, distmat.shape[1])
    order, matches = _ranked(distmat, q_pids, g_pids)
    keep = np.ones(order.shape, dtype=bool)
    for q_cam, g_cam in excluded:
        keep &= ~((q_camids[:, None] == q_cam) & (g_camids[order] == g_cam))
    ap, inp, valid = _ap_and_inp(matches, keep)
    cmc_rows = _dedup_cmc(order, matches, keep, g_pids, max_rank)
    return _summarise(cmc_rows, ap, inp, valid)


def evaluate_regdb(
    distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, max_rank: int = 20
) -> RankMetrics:
    """RegDB evaluation (standard CMC over the full ranking, no removal)."""
    distmat = _check_inputs(distmat, q_pids, g_pids, max_rank)
    g_pids = np.asarray(g_pids)
    max_rank = min(max_rank, distmat.shape[1])
    _, matches = _ranked(distmat, q_pids, g_pids)
    keep = np.ones_like(matches)
    ap, inp, valid = _ap_and_inp(matches, keep)
    return _summarise(_plain_cmc(matches, keep, max_rank), ap, inp, valid)


def cosine_distance(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """`1 - cosine` between L2-normalised rows of `queries` and `gallery` (float32 matmul)."""
    q = np.asarray(queries, dtype=np.float32)
    g = np.asarray(gallery, dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise InputSpecError(f"features must be (N, D) and (M, D), got {q.shape} and {g.shape}")
    return 1.0 - q @ g.T
