"""Constant-velocity Kalman filter on boxes as (centre x, centre y, aspect w/h, height), as in ByteTrack.

The state is 8-D (the four box values and their velocities); noise scales with the box height, so the
filter behaves the same for near (large) and far (small) people.
"""

from __future__ import annotations

import numpy as np

_POSITION = 1.0 / 20
_VELOCITY = 1.0 / 160


def xyxy_to_xyah(box: np.ndarray) -> np.ndarray:
    """`x1, y1, x2, y2` → `cx, cy, w/h, h`."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    w, h = x2 - x1, y2 - y1
    return np.array([x1 + w / 2, y1 + h / 2, w / max(h, 1e-6), h])


def xyah_to_xyxy(state: np.ndarray) -> np.ndarray:
    """`cx, cy, w/h, h` (first four state values) → `x1, y1, x2, y2`."""
    cx, cy, a, h = state[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class KalmanFilter:
    """The ByteTrack/DeepSORT box filter (unit time step = one frame)."""

    def __init__(self) -> None:
        self._motion = np.eye(8)
        self._motion[:4, 4:] = np.eye(4)
        self._update = np.eye(4, 8)

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of a new track from its first `xyah` measurement."""
        h = measurement[3]
        mean = np.r_[measurement, np.zeros(4)]
        std = [
            2 * _POSITION * h,
            2 * _POSITION * h,
            1e-2,
            2 * _POSITION * h,
            10 * _VELOCITY * h,
            10 * _VELOCITY * h,
            1e-5,
            10 * _VELOCITY * h,
        ]
        return mean, np.diag(np.square(std))

    def predict(self, means: np.ndarray, covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step ahead for a batch: `means [N, 8]`, `covariances [N, 8, 8]`."""
        h = means[:, 3]
        std = np.stack(
            [
                _POSITION * h,
                _POSITION * h,
                np.full_like(h, 1e-2),
                _POSITION * h,
                _VELOCITY * h,
                _VELOCITY * h,
                np.full_like(h, 1e-5),
                _VELOCITY * h,
            ],
            axis=1,
        )
        noise = np.einsum("ni,ij->nij", np.square(std), np.eye(8))
        means = means @ self._motion.T
        covariances = self._motion @ covariances @ self._motion.T + noise
        return means, covariances

    def update(
        self, mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct one track with an `xyah` measurement."""
        h = mean[3]
        std = [_POSITION * h, _POSITION * h, 1e-1, _POSITION * h]
        projected_mean = self._update @ mean
        projected_cov = self._update @ covariance @ self._update.T + np.diag(np.square(std))
        gain = np.linalg.solve(projected_cov, (covariance @ self._update.T).T).T
        innovation = measurement - projected_mean
        new_mean = mean + innovation @ gain.T
        new_covariance = covariance - gain @ projected_cov @ gain.T
        return new_mean, new_covariance
