"""Writer of a synthetic RegDB folder.

Folders as in the real dataset: `ROOT/Visible/{pid}/`, `ROOT/Thermal/{pid}/` and
`ROOT/idx/{train,test}_{visible,thermal}_{1..10}.txt` with one `RELATIVE/PATH LABEL` line per image
(label = person id). The file names are this generator's own, `v_{pid:04d}_{n:02d}.jpg` and
`t_{pid:04d}_{n:02d}.jpg` (thermal images are single-channel JPEGs); the real RegDB's are `.bmp` files
such as `Thermal/1/male_front_t_00007_1.bmp`. The reader takes either, as it follows the idx/ lines.
Each of the 10 splits puts a seeded random half of the identities in train and the rest in test. One
camera pair, front and back views, as in the real RegDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vireid.modality import Modality

from .cameras import REGDB_CAMERAS
from .config import RegDBConfig
from .person import sample_identity
from .render import render_crop
from .seeding import rng_for
from .writer import SynthResult, prepare_out_dir, reused_result, run_tasks, write_image, write_meta

NUM_SPLITS = 10
CROP_SIZE = (128, 64)  # H, W as in the real RegDB
FOLDER = {Modality.VISIBLE: "Visible", Modality.INFRARED: "Thermal"}
WORD = {Modality.VISIBLE: "visible", Modality.INFRARED: "thermal"}
OWNED = ("Visible", "Thermal", "idx")


@dataclass(frozen=True)
class _Task:
    root: str
    seed: int
    difficulty: float
    pid: int
    modality: Modality
    count: int


def image_path(modality: Modality, pid: int, n: int) -> str:
    """Path of image `n` (1-based) of `pid`, relative to the dataset root, with `/` separators."""
    prefix = "v" if modality is Modality.VISIBLE else "t"
    return f"{FOLDER[modality]}/{pid}/{prefix}_{pid:04d}_{n:02d}.jpg"


def _render_task(task: _Task) -> int:
    camera = REGDB_CAMERAS[task.modality].at(task.difficulty)
    identity = sample_identity(task.seed, task.pid)
    for n in range(1, task.count + 1):
        rng = rng_for(task.seed, "regdb", task.pid, int(task.modality), n)
        image = render_crop(
            task.seed, identity, camera, task.difficulty, rng, CROP_SIZE, front_back_only=True
        )
        write_image(Path(task.root) / image_path(task.modality, task.pid, n), image)
    return task.count


def split_ids(seed: int, ids: int, trial: int) -> tuple[list[int], list[int]]:
    """(train, test) identities of split `trial` (1..10): a seeded random half each."""
    order = [int(i) for i in rng_for(seed, "regdb-split", ids, trial).permutation(ids) + 1]
    half = ids // 2
    return sorted(order[:half]), sorted(order[half:])


def _write_index(root: Path, config: RegDBConfig) -> int:
    (root / "idx").mkdir(exist_ok=True)
    count = 0
    for trial in range(1, NUM_SPLITS + 1):
        for part, ids in zip(("train", "test"), split_ids(config.seed, config.ids, trial), strict=True):
            for modality in Modality:
                lines = [
                    f"{image_path(modality, pid, n)} {pid}"
                    for pid in ids
                    for n in range(1, config.images_per_modality + 1)
                ]
                (root / "idx" / f"{part}_{WORD[modality]}_{trial}.txt").write_text("\n".join(lines) + "\n")
                count += 1
    return count


def generate_regdb(
    out: str | Path,
    config: RegDBConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> SynthResult:
    """Write a synthetic RegDB dataset to `out`.

    Args:
        out: output folder (created; must be empty, hold this very dataset, or `overwrite` must be set).
        config: settings; `RegDBConfig()` defaults when omitted.
        workers: processes rendering in parallel (default: available CPUs); never changes the output.
        overwrite: replace what a previous run (or anything else) left in the generator's folders.
        show_progress: show a progress bar on stderr.

    Raises:
        ConfigError: invalid settings.
        DatasetError: the folder cannot be used.
    """
    config = config or RegDBConfig()
    root = Path(out)
    meta = config.to_meta()
    if prepare_out_dir(root, meta, OWNED, overwrite):
        return reused_result(root)
    tasks = [
        _Task(str(root), config.seed, config.difficulty, pid, modality, config.images_per_modality)
        for pid in range(1, config.ids + 1)
        for modality in Modality
    ]
    images = run_tasks(_render_task, tasks, workers, "synth regdb", show_progress)
    files = images + _write_index(root, config)
    write_meta(root, meta, files=files)
    return SynthResult(root, files, reused=False)
