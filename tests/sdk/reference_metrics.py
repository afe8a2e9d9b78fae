"""The reference VI-ReID evaluation, written as the literature's code does it (a loop per query).

Used only by tests to check that `vireid.metrics` (vectorised) behaves identically on any input.
"""

from __future__ import annotations

import numpy as np


def _ap_inp(raw: np.ndarray) -> tuple[float, float]:
    cmc = raw.cumsum()
    last = np.max(np.where(raw == 1))
    inp = cmc[last] / (last + 1.0)
    precision = np.asarray([x / (i + 1.0) for i, x in enumerate(cmc)]) * raw
    return precision.sum() / raw.sum(), inp


def reference_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    pred_label = g_pids[indices]
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp, valid = [], [], [], 0.0
    for q in range(num_q):
        keep = np.invert((q_camids[q] == 3) & (g_camids[indices[q]] == 2))
        labels = pred_label[q][keep]
        first = np.unique(labels, return_index=True)[1]
        dedup = np.asarray([labels[i] for i in sorted(first)])
        new_cmc = (dedup == q_pids[q]).astype(np.int32).cumsum()[:max_rank]
        if len(new_cmc) < max_rank:  # the reference assumes enough identities; pad like a CMC does
            new_cmc = np.concatenate([new_cmc, np.full(max_rank - len(new_cmc), new_cmc[-1])])
        all_cmc.append(new_cmc)
        raw = matches[q][keep]
        if not np.any(raw):
            continue
        valid += 1
        ap, inp = _ap_inp(raw)
        all_ap.append(ap)
        all_inp.append(inp)
    cmc = np.asarray(all_cmc).astype(np.float32).sum(0) / valid
    return cmc, np.mean(all_ap), np.mean(all_inp)


def reference_regdb(distmat, q_pids, g_pids, max_rank=20):
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp, valid = [], [], [], 0.0
    for q in range(num_q):
        raw = matches[q]
        if not np.any(raw):
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        valid += 1
        ap, inp = _ap_inp(raw)
        all_ap.append(ap)
        all_inp.append(inp)
    cmc = np.asarray(all_cmc).astype(np.float32).sum(0) / valid
    return cmc, np.mean(all_ap), np.mean(all_inp)
