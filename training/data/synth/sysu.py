"""Writer of a synthetic SYSU-MM01 folder.

Layout (the real dataset's): `ROOT/cam{1..6}/{pid:04d}/{n:04d}.jpg` with cameras 1, 2 (visible,
indoor), 4, 5 (visible, outdoor), 3 (infrared, indoor), 6 (infrared, outdoor); `ROOT/exp/train_id.txt`,
`val_id.txt`, `test_id.txt` with comma-separated ids on one line; plus `ROOT/meta.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vireid.modality import Modality

from .cameras import SYSU_CAMERAS
from .config import SysuConfig
from .person import sample_identity
from .render import render_crop
from .seeding import rng_for
from .writer import SynthResult, prepare_out_dir, reused_result, run_tasks, write_image, write_meta

CAMERAS = tuple(sorted(SYSU_CAMERAS))
OWNED = (*(f"cam{c}" for c in CAMERAS), "exp")


@dataclass(frozen=True)
class _Task:
    root: str
    seed: int
    difficulty: float
    pid: int
    cam: int
    count: int


def identity_cameras(seed: int, pid: int, gap: float) -> tuple[int, ...]:
    """Cameras that saw identity `pid`: each is missed with probability `gap`, keeping both modalities."""
    rng = rng_for(seed, "cameras", pid)
    present = [c for c in CAMERAS if rng.random() >= gap]
    for modality in Modality:
        of_kind = [c for c in CAMERAS if SYSU_CAMERAS[c].modality is modality]
        if not any(c in present for c in of_kind):
            present.append(of_kind[int(rng.integers(len(of_kind)))])
    return tuple(sorted(present))


def split_ids(config: SysuConfig) -> dict[str, list[int]]:
    """Train, val and test identity lists (sorted), drawn from the seed."""
    order = [int(i) for i in rng_for(config.seed, "split", config.ids).permutation(config.ids) + 1]
    test, val = config.split_sizes()
    return {
        "train": sorted(order[test + val :]),
        "val": sorted(order[test : test + val]),
        "test": sorted(order[:test]),
    }


def _render_task(task: _Task) -> int:
    camera = SYSU_CAMERAS[task.cam].at(task.difficulty)
    identity = sample_identity(task.seed, task.pid)
    folder = Path(task.root) / f"cam{task.cam}" / f"{task.pid:04d}"
    for n in range(1, task.count + 1):
        rng = rng_for(task.seed, "sysu", task.pid, task.cam, n)
        image = render_crop(task.seed, identity, camera, task.difficulty, rng)
        write_image(folder / f"{n:04d}.jpg", image)
    return task.count


def generate_sysu(
    out: str | Path,
    config: SysuConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> SynthResult:
    """Write a synthetic SYSU-MM01 dataset to `out`.

    Args:
        out: output folder (created; must be empty, hold this very dataset, or `overwrite` must be set).
        config: settings; `SysuConfig()` defaults when omitted.
        workers: processes rendering in parallel (default: available CPUs); never changes the output.
        overwrite: replace what a previous run (or anything else) left in the generator's folders.
        show_progress: show a progress bar on stderr.

    Returns:
        The folder, its file count, and whether an identical existing dataset was reused.

    Raises:
        ConfigError: invalid settings.
        DatasetError: the folder cannot be used (see `writer.prepare_out_dir`).
    """
    config = config or SysuConfig()
    root = Path(out)
    meta = config.to_meta()
    if prepare_out_dir(root, meta, OWNED, overwrite):
        return reused_result(root)
    tasks = [
        _Task(str(root), config.seed, config.difficulty, pid, cam, config.images_per_camera)
        for pid in range(1, config.ids + 1)
        for cam in identity_cameras(config.seed, pid, config.camera_gap)
    ]
    images = run_tasks(_render_task, tasks, workers, "synth sysu", show_progress)
    splits = split_ids(config)
    (root / "exp").mkdir(exist_ok=True)
    for name, ids in splits.items():
        (root / "exp" / f"{name}_id.txt").write_text(",".join(map(str, ids)) + "\n", encoding="utf-8")
    write_meta(root, meta, files=images + 3, split_sizes={k: len(v) for k, v in splits.items()})
    return SynthResult(root, images + 3, reused=False)
