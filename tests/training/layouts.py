"""Tiny real dataset folders in the SYSU-MM01 and RegDB layouts, for reader tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def _write(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 4, 3), value % 256, np.uint8))


def make_sysu(
    root: Path, train=(1, 2, 3), val=(4,), test=(5, 6, 7, 8), per_cam: int = 3, seed: int = 0
) -> Path:
    """Write a small SYSU-style folder; a few (id, camera) folders are left out on purpose."""
    rng = np.random.default_rng(seed)
    for pid in (*train, *val, *test):
        for cam in range(1, 7):
            if pid % 4 == 0 and cam == 4:  # gaps like the real dataset
                continue
            for n in range(1, int(rng.integers(1, per_cam + 1)) + 1):
                _write(root / f"cam{cam}" / f"{pid:04d}" / f"{n:04d}.jpg", pid * 10 + cam)
    (root / "exp").mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", train), ("val", val), ("test", test)):
        (root / "exp" / f"{name}_id.txt").write_text(",".join(str(i) for i in ids) + "\n")
    return root


def make_regdb(root: Path, ids=range(1, 9), per_id: int = 2) -> Path:
    """Write a small RegDB-style folder with 10 splits (half the ids train, half test)."""
    for pid in ids:
        for n in range(per_id):
            _write(root / "Visible" / str(pid) / f"v_{pid}_{n}.jpg", pid)
            _write(root / "Thermal" / str(pid) / f"t_{pid}_{n}.jpg", pid)
    (root / "idx").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for trial in range(1, 11):
        order = rng.permutation(list(ids))
        half = len(order) // 2
        for part, chosen in (("train", order[:half]), ("test", order[half:])):
            for word, folder, prefix in (("visible", "Visible", "v"), ("thermal", "Thermal", "t")):
                lines = [
                    f"{folder}/{p}/{prefix}_{p}_{n}.jpg {p}" for p in sorted(chosen) for n in range(per_id)
                ]
                (root / "idx" / f"{part}_{word}_{trial}.txt").write_text("\n".join(lines) + "\n")
    return root
