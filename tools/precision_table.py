"""The precision table of docs/export.md: one checkpoint as PyTorch, ONNX FP32, FP16, INT8 (50/50
calibration) and INT8 (visible-only calibration), each evaluated in both directions on a held-out set,
with its lowest cosine to PyTorch on 64 held-out images (half per modality) and its throughput in one
`vireid bench` run.

    .venv/bin/python tools/precision_table.py CHECKPOINT --train TRAIN_DIR --heldout HELDOUT_DIR --out DIR

TRAIN_DIR calibrates INT8 (its training identities only); HELDOUT_DIR is a set generated with another
seed (e.g. `make demo`'s demo/data/sysu-train and demo/data/sysu-heldout). Prints a Markdown table and
writes it, with the raw numbers, to DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vireid import ModelCard, jsonio
from vireid.atomic import write_atomic
from vireid.bench import BenchConfig, run_bench
from vireid.bench.runtime import ModelSource
from vireid.card import sha256_file
from vireid.export import to_fp16, to_onnx
from vireid.export.int8 import Int8Options, calibration_set, to_int8
from vireid.training.evaluate import ArtifactEmbedder, TorchEmbedder, evaluate_any, load_model

KEYS = ("R1", "mAP", "mINP")


def _reusable(path: Path, checkpoint_sha: str) -> bool:
    """An artifact in `out` exported from this very checkpoint (another's would mix two models' rows)."""
    return path.is_file() and ModelCard.from_onnx(path).source_checkpoint_sha256 == checkpoint_sha


def artifacts(checkpoint: Path, train: Path, out: Path) -> dict[str, Path]:
    """Export every row's artifact into `out` (reused when present and made from this checkpoint)."""
    out.mkdir(parents=True, exist_ok=True)
    sha = sha256_file(checkpoint)
    fp32 = out / "model.onnx"
    if not _reusable(fp32, sha):
        to_onnx(checkpoint, fp32)
    fp16 = out / "model.fp16.onnx"
    if not _reusable(fp16, sha):
        to_fp16(fp32, fp16)
    rows = {"ONNX fp32": fp32, "ONNX fp16": fp16}
    for label, name, share in (
        ("ONNX int8 (50/50)", "model.int8.onnx", 0.5),
        ("ONNX int8 (visible only)", "vis.int8.onnx", 1.0),
    ):
        path = out / name
        if not _reusable(path, sha):
            to_int8(fp32, path, data=train, options=Int8Options(visible_fraction=share))
        rows[label] = path
    return rows


def cosine_to_torch(
    checkpoint: Path, rows: dict[str, Path], images: np.ndarray, modality: np.ndarray
) -> dict:
    model, size = load_model(checkpoint, "cpu")
    ref = TorchEmbedder(model, size).embed_arrays(images, modality)
    out = {}
    for label, path in rows.items():
        emb = ArtifactEmbedder(path, "cpu")
        vec = emb.embed_arrays(images, modality)
        emb.close()
        out[label] = float(
            np.min(np.sum(vec * ref, axis=1) / np.linalg.norm(vec, axis=1) / np.linalg.norm(ref, axis=1))
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (.safetensors)")
    parser.add_argument("--train", type=Path, required=True, help="training set (INT8 calibration)")
    parser.add_argument("--heldout", type=Path, required=True, help="held-out set (evaluation)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the artifacts and the table")
    parser.add_argument("--trials", type=int, default=10, help="SYSU gallery trials (default 10)")
    args = parser.parse_args()

    rows = artifacts(args.checkpoint, args.train, args.out)
    models = {"PyTorch": args.checkpoint, **rows}
    scores = {}
    for label, path in models.items():
        scores[label] = {
            result.direction: result.mean()
            for result in (
                evaluate_any(
                    path, args.heldout, "sysu-all", trials=args.trials, device="cpu", reverse=reverse
                )
                for reverse in (False, True)
            )
        }
        print(
            label, {d: {k: round(100 * v[k], 2) for k in KEYS} for d, v in scores[label].items()}, flush=True
        )
    size = ArtifactEmbedder(rows["ONNX fp32"], "cpu").input_size
    probe = calibration_set(args.heldout, size, 64, 0.5, seed=7)  # real images of both modalities
    cosines = cosine_to_torch(args.checkpoint, rows, probe.images, probe.modality)
    onnx = {"fp32": rows["ONNX fp32"], "fp16": rows["ONNX fp16"], "int8": rows["ONNX int8 (50/50)"]}
    source = ModelSource(str(args.checkpoint), checkpoint=args.checkpoint, onnx=onnx)
    bench = run_bench(source, BenchConfig(backends=("torch", "ort-cpu"), batches=(32,), seconds=4.0))
    speed = {("PyTorch" if r.backend == "torch" else f"ONNX {r.precision}"): r.throughput for r in bench.rows}
    speed["ONNX int8 (50/50)"] = speed.pop("ONNX int8", None)
    speed["ONNX int8 (visible only)"] = None  # the same graph with other scales: not timed apart
    directions = list(next(iter(scores.values())))
    header = (
        "| model | "
        + " | ".join(f"{d} {k}" for d in directions for k in KEYS)
        + " | min cosine to PyTorch | img/s (b32) |"
    )
    lines = [header, "|" + "---|" * (3 + len(directions) * len(KEYS))]
    for label in models:
        cells = [f"{100 * scores[label][d][k]:.2f}" for d in directions for k in KEYS]
        cos = "1" if label == "PyTorch" else f"{cosines[label]:.5f}"
        ips = "same graph as 50/50" if label == "ONNX int8 (visible only)" else f"{speed.get(label) or 0:.0f}"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {cos} | {ips} |")
    table = "\n".join(lines)
    print(table)
    write_atomic(args.out / "precision_table.md", table + "\n")
    write_atomic(
        args.out / "precision_table.json",
        jsonio.dumps({"scores": scores, "cosines": cosines, "speed": speed}, indent=2),
    )


if __name__ == "__main__":
    main()
