"""Benchmarks users run on their own hardware: `vireid bench MODEL` and `vireid bench pipeline`.

`runtime` times one model (or several, in the same rounds) on every runtime in one process (latency
percentiles, throughput, stage split, memory, cosine to the reference); `pipeline` runs the stream
pipeline on a synthetic scene and scores it against the scene's ground truth (`scene`). Nothing here
imports torch unless the torch row is asked for.
"""

from __future__ import annotations

from .runtime import (
    BACKENDS,
    PRECISIONS,
    BenchConfig,
    BenchReport,
    BenchRow,
    Skipped,
    Stages,
    compare_models,
    comparison,
    comparison_table,
    model_names,
    run_bench,
)

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BenchConfig",
    "BenchReport",
    "BenchRow",
    "Skipped",
    "Stages",
    "compare_models",
    "comparison",
    "comparison_table",
    "model_names",
    "run_bench",
]
