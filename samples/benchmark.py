"""Time one model on the runtimes this machine has, and print the latency / throughput table.

Shows `vireid.bench.run_bench`: every backend × precision × batch size is opened first and then timed
in interleaved rounds, so the rows are comparable; backends that cannot run here (no GPU, no TensorRT,
no PyTorch) are listed as skipped with the reason. Each row has latency percentiles, images per second,
the preprocessing cost of raw crops and the lowest cosine of its embeddings to the reference row.

MODEL is an exported `.onnx` (its `.fp16.onnx` sibling is used when present), a TensorRT `.engine`, a
checkpoint (`.safetensors`, for the PyTorch row) or `random:BACKBONE[@HxW]` for an untrained model.

    python samples/benchmark.py demo/models/demo.onnx                      # after `make demo`
    python samples/benchmark.py models/model.onnx --backend ort-cpu --batch 1,8 --json bench.json

With an `.onnx` or `.engine` this needs the runtime only (`pip install 'vireid[onnx]'`); a checkpoint,
`random:...` or a missing FP16 file (converted on the fly) needs the `export` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import vireid
from vireid.bench import BACKENDS, PRECISIONS, BenchConfig, run_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model.onnx, model.engine, checkpoint.safetensors or random:BACKBONE")
    parser.add_argument("--backend", default=",".join(BACKENDS), help="default: %(default)s")
    parser.add_argument("--precision", default=",".join(PRECISIONS), help="default: %(default)s")
    parser.add_argument("--batch", default="1,8,32", help="batch sizes (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per row (default 3)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)

    config = BenchConfig(
        backends=tuple(args.backend.split(",")),
        precisions=tuple(args.precision.split(",")),
        batches=tuple(int(b) for b in args.batch.split(",")),
        seconds=args.seconds,
        threads=args.threads,
    )
    report = run_bench(args.model, config, log=lambda line: print(line, file=sys.stderr))
    print(f"{report.model}: input {report.input_size[0]}x{report.input_size[1]}, {report.embedding_dim}-d")
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if report.rows else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except vireid.VireidError as error:  # bad input: the message names the file and the fix
        sys.exit(f"error: {error}")
