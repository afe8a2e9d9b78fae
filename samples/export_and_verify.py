"""Export a model to ONNX and FP16 ONNX, and check each file's embeddings against the one it came from.

Shows `vireid.export`: `to_onnx` (checkpoint or PyTorch model → ONNX with its model card), `to_fp16`
(FP16 compute, float32 inputs and outputs) and `verify` (a parity report: cosine similarity, max error,
agreement of cross-modal retrieval; truthy when within the thresholds for the file's precision).

Give a training checkpoint (`vireid train ...` writes `RUN/last.safetensors`, and
`RUN/best.safetensors` when `run.eval_every > 0`; `make demo` writes `demo/run/last.safetensors`), or
nothing: then a small MSPAC model with random weights is built with
`vireid.training`. Parity does not depend on training, but an untrained model embeds different
people almost alike, so FP16 rounding may swap near-ties in the top-1 check (ties within the FP16 tie
distance count as agreement; a trained checkpoint has real margins).

    python samples/export_and_verify.py demo/run/last.safetensors --out models
    python samples/export_and_verify.py --out models          # random resnet_tiny MSPAC, 128x64

Needs the `export` extra (`pip install 'vireid[export]'`: torch, onnx, onnxslim, onnxruntime).
Exit status 1 when a parity check fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import vireid
from vireid.export import to_fp16, to_onnx, verify


def random_model(backbone: str, width: int | None, size: tuple[int, int], seed: int):
    """An untrained MSPAC model in eval mode (enough to show export and parity)."""
    import torch

    from vireid.training.models import build_model

    torch.manual_seed(seed)
    model = build_model("mspac", 8, with_pretrained=False, backbone=backbone, width=width, input_size=size)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, help="checkpoint (.safetensors); none: random")
    parser.add_argument("--out", type=Path, default=Path("models"), help="output folder (default models)")
    parser.add_argument("--name", default="model", help="file stem: NAME.onnx, NAME.fp16.onnx")
    parser.add_argument("--backbone", default="resnet_tiny", help="random model's backbone")
    parser.add_argument("--width", type=int, help="random model's base width (default: the backbone's)")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0, help="random model's seed")
    args = parser.parse_args(argv)

    source = args.checkpoint or random_model(args.backbone, args.width, tuple(args.size), args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    onnx_path = to_onnx(source, args.out / f"{args.name}.onnx")
    card = vireid.ModelCard.from_onnx(onnx_path)
    print(
        f"wrote {onnx_path}: {card.model_name}, input {card.input_height}x{card.input_width}, "
        f"{card.embedding_dim}-d embeddings, {card.precision.value}"
    )
    onnx_report = verify(source, onnx_path, device="cpu")  # PyTorch vs ONNX Runtime
    print(onnx_report)

    fp16_path = to_fp16(onnx_path)  # NAME.fp16.onnx next to it
    print(f"wrote {fp16_path}")
    fp16_report = verify(onnx_path, fp16_path, device="cpu")  # FP32 ONNX vs FP16 ONNX
    print(fp16_report)

    passed = bool(onnx_report) and bool(fp16_report)
    print("both files PASS their parity checks" if passed else "a parity check FAILED (see above)")
    return 0 if passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except vireid.VireidError as error:  # bad input: the message names the file and the fix
        sys.exit(f"error: {error}")
