"""`make demo`: the end-to-end job on the embedded default (synthetic data, CPU).

Stages are filled in as the project grows; a stage that does not exist yet is named, never faked.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

PLANNED = ["synth", "train", "evaluate", "export", "bench", "gallery enroll", "run", "report"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run every demo stage that exists and name the first one that does not."""
    parser = argparse.ArgumentParser(prog="python -m vireid.demo", description=__doc__)
    parser.add_argument("--out", default="demo", help="output folder (reused on re-runs)")
    args = parser.parse_args(argv)
    print(f"vireid demo -> {args.out}/")
    print("planned stages: " + " -> ".join(PLANNED))
    print(
        "stage 'synth' is not implemented yet (issue: Data); nothing else can run before it.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
