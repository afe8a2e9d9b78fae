"""ONNX Runtime CPU backend vs PyTorch eager on the same model, Embedder overhead, runtime RSS. A script.

    .venv/bin/python tests/perf/bench_runtime.py [--backbone resnet50] [--size 288 144] [--threads 2]

Builds the model (random weights: speed does not depend on them), exports it with `vireid.export`,
then times, in one process, torch eager (`inference_mode`) and the ORT backend at batch 1 and 32 on
ready uint8 batches (for each batch size all torch calls, then all ORT calls; `vireid bench` interleaves
them in rounds); then `Embedder.embed` on 32 crops of a different size
(preprocessing + batching) against the backend alone. A fresh subprocess that imports only the runtime
opens the CPU backend and a 10k-identity gallery and reports its RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RSS_CHILD = """
import sys, numpy as np, vireid
emb = vireid.Embedder(sys.argv[1], device="cpu")
gallery = vireid.Gallery(sys.argv[2], emb.embedding_space, emb.card.embedding_dim)
rng = np.random.default_rng(0)
for i in range(10_000):  # one identity at a time: the harness holds no 80 MB array of its own
    vec = rng.standard_normal((1, emb.card.embedding_dim)).astype(np.float32)
    gallery.enroll(f"id{i}", vec / np.linalg.norm(vec), "visible")
crops = rng.integers(0, 256, (8, *emb.card.input_size, 3), dtype=np.uint8)
gallery.search(emb.embed(crops, "infrared"), k=5)
for line in open("/proc/self/status"):
    if line.startswith(("VmRSS", "VmHWM")):
        print(line.strip())
"""


def _time(fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, nargs=2, default=(288, 144))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    import vireid
    from vireid.export import to_onnx
    from vireid.training.models.build import build_model

    torch.set_num_threads(args.threads)
    model = build_model(
        "mspac", 395, backbone=args.backbone, input_size=list(args.size), with_pretrained=False
    )
    model.eval()
    h, w = args.size
    rng = np.random.default_rng(0)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = to_onnx(model, Path(tmp) / "model.onnx")
        embedder = vireid.Embedder(onnx_path, device="cpu", batch_size=32, threads=args.threads)
        for batch in (1, 32):
            images = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
            modality = np.zeros(batch, np.int32)
            x, m = torch.from_numpy(images), torch.from_numpy(modality)
            with torch.inference_mode():
                t_torch = _time(lambda x=x, m=m: model(x, m), args.repeats)
            t_ort = _time(lambda i=images, m=modality: embedder.backend.infer(i, m), args.repeats)
            results[f"torch_b{batch}_img_s"] = batch / t_torch
            results[f"ort_b{batch}_img_s"] = batch / t_ort
            results[f"speedup_b{batch}"] = t_torch / t_ort
        crops = [rng.integers(0, 256, (int(h * 1.4), int(w * 1.3), 3), dtype=np.uint8) for _ in range(32)]
        ready = rng.integers(0, 256, (32, h, w, 3), dtype=np.uint8)
        t_embed = _time(lambda: embedder.embed(crops, "visible"), args.repeats)
        t_infer = _time(lambda: embedder.backend.infer(ready, np.zeros(32, np.int32)), args.repeats)
        results["embedder_overhead_pct_b32"] = 100.0 * (t_embed - t_infer) / t_infer
        out = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, str(onnx_path), str(Path(tmp) / "g.db")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            key, value = line.split(":")
            results[f"{key.strip()}_MB"] = int(value.split()[0]) / 1024
    for key, value in results.items():
        print(f"{key:28s} {value:10.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
