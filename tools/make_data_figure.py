"""Render docs/images/synth_grid.png: the same synthetic identities in every SYSU-style camera.

Usage: python tools/make_data_figure.py [--out docs/images/synth_grid.png] [--ids 6] [--seed 0]
Generates a small SYSU-style dataset in a temporary folder and tiles one image per (identity, camera):
rows are identities, columns cameras 1, 2, 4, 5 (visible) then 3, 6 (infrared).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from vireid.atomic import write_atomic
from vireid.imageio import read_image
from vireid.training.data.synth import SysuConfig, generate_sysu

REPO = Path(__file__).resolve().parents[1]
CAMERAS = (1, 2, 4, 5, 3, 6)
TILE = (128, 64)  # H, W


def _tile(root: Path, cam: int, pid: int) -> np.ndarray:
    files = sorted((root / f"cam{cam}" / f"{pid:04d}").glob("*.jpg"))
    if not files:
        return np.full((*TILE, 3), 255, np.uint8)
    return cv2.resize(read_image(files[0]), TILE[::-1], interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "docs" / "images" / "synth_grid.png",
        help="default: the docs' figure",
    )
    parser.add_argument("--ids", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sysu"
        config = SysuConfig(ids=max(args.ids, 3), seed=args.seed, images_per_camera=1, camera_gap=0.0)
        generate_sysu(root, config, workers=1, show_progress=False)
        gap = np.full((TILE[0], 4, 3), 255, np.uint8)
        rows = [
            np.hstack([piece for cam in CAMERAS for piece in (_tile(root, cam, pid), gap)])
            for pid in range(1, args.ids + 1)
        ]
    grid = np.vstack([np.vstack([row, np.full((4, row.shape[1], 3), 255, np.uint8)]) for row in rows])
    header = np.full((22, grid.shape[1], 3), 255, np.uint8)
    for i, cam in enumerate(CAMERAS):
        label = f"cam{cam} {'IR' if cam in (3, 6) else 'RGB'}"
        cv2.putText(header, label, (i * (TILE[1] + 4) + 2, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.vstack([header, grid]), cv2.COLOR_RGB2BGR))
    if not ok:
        raise SystemExit(f"OpenCV could not encode the figure for {args.out}")
    write_atomic(args.out, png.tobytes())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
