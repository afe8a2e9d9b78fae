"""PNG charts (CMC curves, latency bars) with matplotlib, an optional extra (`plot`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_file
from .errors import require


def plot_cmc(curves: Mapping[str, np.ndarray], out: str | Path, title: str = "CMC") -> Path:
    """Draw one CMC curve per label (fractions, rank 1..N) into a PNG file."""
    plt = _pyplot("Plotting a CMC curve")
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for label, cmc in curves.items():
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(
            ranks, 100 * np.asarray(cmc), marker="o", markersize=3, label=f"{label} (R1 {100 * cmc[0]:.1f})"
        )
    ax.set_xlabel("rank")
    ax.xaxis.get_major_locator().set_params(integer=True)  # ranks are whole numbers
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, out)


def plot_bench(rows: Sequence[Any], out: str | Path, title: str = "vireid bench") -> Path:
    """Throughput and p50 latency per configuration (backend + precision), one bar group per batch size.

    `rows` are `vireid.bench.BenchRow`s (anything with backend, precision, batch, throughput, p50_ms).
    """
    plt = _pyplot("Plotting benchmark results")
    configs = list(dict.fromkeys(f"{r.backend} {r.precision}" for r in rows))
    batches = sorted({r.batch for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    width = 0.8 / max(1, len(configs))
    for i, label in enumerate(configs):
        mine = {r.batch: r for r in rows if f"{r.backend} {r.precision}" == label}
        xs = [j + (i - (len(configs) - 1) / 2) * width for j in range(len(batches))]
        for ax, value in ((axes[0], "throughput"), (axes[1], "p50_ms")):
            ax.bar(xs, [getattr(mine[b], value) if b in mine else 0 for b in batches], width, label=label)
    for ax, ylabel in ((axes[0], "images / s"), (axes[1], "p50 latency per batch (ms)")):
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, out)


def _pyplot(purpose: str) -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    matplotlib = require("matplotlib", "plot", purpose)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, out: str | Path) -> Path:
    fig.tight_layout()
    out = Path(out)
    with atomic_file(out) as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
    return out
