"""Size and compute of every registered model: deployed parameters, training parameters, GFLOPs.

Usage:
    .venv/bin/python tools/model_costs.py [--backbone resnet50] [--width W] [--size 288x144]
        [--json costs.json]

"Deployed" counts the parameters the inference graph uses (what an exported file carries: the backbone,
the model's refinement and the global GeM/BN-neck), measured by running one eval forward with hooks;
"training" adds the classifiers, part heads and training-only branches. GFLOPs are those of one image
through the eval forward (a multiply-add counts 2), counted by `torch.utils.flop_counter`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vireid import jsonio
from vireid.atomic import write_atomic
from vireid.training.models import MODELS, build_model


def deployed_parameters(model: torch.nn.Module, images: torch.Tensor, modality: torch.Tensor) -> int:
    """Parameters of the modules one eval forward calls (tied parameters counted once)."""
    called: list[torch.nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, *_: called.append(m)) for m in model.modules()]
    with torch.no_grad():
        model(images, modality)
    for hook in hooks:
        hook.remove()
    unique = {id(p): p for m in called for p in m.parameters(recurse=False)}
    return sum(p.numel() for p in unique.values())


def gflops(model: torch.nn.Module, images: torch.Tensor, modality: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images, modality)
    return counter.get_total_flops() / 1e9


def costs(name: str, backbone: str, size: tuple[int, int], width: int | None) -> dict[str, float]:
    model = build_model(
        name, 395, with_pretrained=False, backbone=backbone, input_size=list(size), width=width
    ).eval()
    images = torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8)
    modality = torch.zeros(1, dtype=torch.int32)
    return {
        "deployed_params_M": deployed_parameters(model, images, modality) / 1e6,
        "training_params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops": gflops(model, images, modality),
        "embedding_dim": model.embedding_dim,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50", help="backbone (default resnet50)")
    parser.add_argument("--width", type=int, default=None, help="backbone width (default: the backbone's)")
    parser.add_argument("--size", default="288x144", help="input HxW (default 288x144)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    table = {name: costs(name, args.backbone, size, args.width) for name in MODELS.names()}  # type: ignore[arg-type]
    print(f"{args.backbone} (width {args.width or 'default'}) at {args.size}, batch 1, eval forward")
    print("| model | deployed params (M) | training params (M) | GFLOPs | D |\n|---|---|---|---|---|")
    for name, row in table.items():
        print(
            f"| {name} | {row['deployed_params_M']:.2f} | {row['training_params_M']:.2f} | "
            f"{row['gflops']:.2f} | {row['embedding_dim']} |"
        )
    if args.json:
        write_atomic(args.json, jsonio.dumps(table, indent=2))


if __name__ == "__main__":
    main()
