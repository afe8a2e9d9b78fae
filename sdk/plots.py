"""PNG charts (CMC curves, latency bars) with matplotlib, an optional extra (`plot`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import require


def plot_cmc(curves: Mapping[str, np.ndarray], out: str | Path, title: str = "CMC") -> Path:
    """Draw one CMC curve per label (fractions, rank 1..N) into a PNG file."""
    matplotlib = require("matplotlib", "plot", "Plotting a CMC curve")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for label, cmc in curves.items():
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(
            ranks, 100 * np.asarray(cmc), marker="o", markersize=3, label=f"{label} (R1 {100 * cmc[0]:.1f})"
        )
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
