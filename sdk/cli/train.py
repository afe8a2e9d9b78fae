"""Train a cross-modal ReID model on a SYSU-MM01 or RegDB folder (needs the `train` extra: torch).

Writes OUT/last.{safetensors,json}, OUT/best.{safetensors,json} (by validation R1 + mAP, when
run.eval_every > 0; the demo config validates only after training, with `vireid evaluate`),
OUT/metrics.jsonl and OUT/config.json (OUT: --out, default runs/train). Multi-GPU: launch with
`torchrun --nproc_per_node N -m vireid.cli.main train ...`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .argtypes import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid train`."""
    parser.add_argument(
        "--config",
        required=True,
        help="training YAML, or the name of a config shipped with vireid: demo_cpu, mspac_sysu, "
        "mspac_regdb, psmg_sysu, mpanet_sysu",
    )
    parser.add_argument("--data", required=True, help="dataset folder (SYSU-MM01 or RegDB layout)")
    parser.add_argument("--out", default="runs/train", help="run folder for checkpoints and logs")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue from OUT/last.* exactly")
    existing.add_argument(
        "--overwrite", action="store_true", help="replace the run already in OUT (checkpoints and log)"
    )
    parser.add_argument("--device", help="override run.device: auto, cpu, cuda, cuda:N")
    parser.add_argument("--epochs", type=positive_int, help="override optim.epochs")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.lr=0.05 (value parsed as JSON when possible)",
    )


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    from vireid.errors import ConfigError

    out: dict[str, object] = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=0.05")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    if args.device:
        out["run.device"] = args.device
    if args.epochs is not None:
        out["optim.epochs"] = args.epochs
    return out


def run(args: argparse.Namespace) -> int:
    """Train and print where the checkpoints are."""
    from vireid.errors import require

    require("torch", "train", "vireid train")
    from vireid.training.config import TrainConfig
    from vireid.training.trainer import train

    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    if out == data or data in out.parents:
        from vireid.errors import ConfigError

        raise ConfigError(
            f"--out {args.out} lies in the dataset folder --data {args.data}; put the run elsewhere (the "
            "dataset's readers would meet checkpoints among its images, and a --overwrite could remove them)"
        )
    config = TrainConfig.from_yaml(args.config).with_overrides(_overrides(args))
    result = train(config, args.data, args.out, resume=args.resume, overwrite=args.overwrite)
    print(f"trained {result.epochs_run} epoch(s) in {result.seconds:.0f} s -> {result.run_dir}")
    print(f"last checkpoint: {result.last}")
    if result.best:
        metrics = result.best_metrics
        best = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("epoch", "split"))
        where = f" on the {metrics['split']} identities" if "split" in metrics else ""
        print(f"best checkpoint: {result.best} (epoch {metrics.get('epoch')}{where}: {best})")
    elif config.run.eval_every == 0:
        print("no best checkpoint: run.eval_every is 0 (no validation during training); evaluate `last`")
    return 0
