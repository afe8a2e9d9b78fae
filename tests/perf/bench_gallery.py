"""Benchmark the gallery: enrolment throughput, index load and search latency. A script, not a test.

    .venv/bin/python tests/perf/bench_gallery.py                  # the documented targets (~2 GB disk)
    .venv/bin/python tests/perf/bench_gallery.py --n 2000 --dim 64 --enroll 500 --identities 100

Targets (docs/gallery.md): search a 100k x 2048 gallery with 16 queries, top-10, <= 100 ms on 2 cores;
enrolling 10k embeddings in one call <= 5 s. Per-identity enrolment (one transaction each) is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vireid.gallery import Gallery

SPACE = "bench"


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def timed(fn: Callable[[], object], repeat: int = 1) -> list[float]:
    """Wall-clock seconds of each of `repeat` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_enrolment(
    folder: Path, args: argparse.Namespace, rng: np.random.Generator
) -> list[tuple[str, str]]:
    rows = []
    vectors = unit(rng, args.enroll, args.dim)
    with Gallery(folder / "batch.db", SPACE, args.dim, durable=args.durable) as g:
        (seconds,) = timed(lambda: g.enroll("batch", vectors, "visible", camera=1))
    rows.append((f"enrol {args.enroll} x {args.dim} in one call (1 transaction)", f"{seconds:.3f} s"))
    single = unit(rng, args.identities, args.dim)
    with Gallery(folder / "single.db", SPACE, args.dim, durable=args.durable) as g:
        (seconds,) = timed(lambda: [g.enroll(f"p{i}", single[i], "ir") for i in range(len(single))])
    per = 1e3 * seconds / len(single)
    rows.append((f"enrol {args.identities} identities x 1 vector (1 transaction each)", f"{seconds:.2f} s"))
    rows.append(("  per identity", f"{per:.2f} ms"))
    return rows


def build_search_gallery(path: Path, args: argparse.Namespace, rng: np.random.Generator) -> float:
    """`n` vectors, `per_identity` per identity, half of the identities visible, half infrared."""
    start = time.perf_counter()
    with Gallery(path, SPACE, args.dim, durable=False) as g:
        for i, first in enumerate(range(0, args.n, args.per_identity)):
            count = min(args.per_identity, args.n - first)
            g.enroll(f"id{i:06d}", unit(rng, count, args.dim), i % 2, camera=i % 6)
    return time.perf_counter() - start


def bench_search(
    path: Path, args: argparse.Namespace, rng: np.random.Generator, backend: str
) -> list[tuple[str, str]]:
    queries = unit(rng, args.queries, args.dim)
    rows = []
    with Gallery(path, SPACE, backend=backend) as g:
        (cold,) = timed(lambda: g.search(queries, k=args.k))
        rows.append((f"[{backend}] first search (loads the index from SQLite)", f"{cold * 1e3:.0f} ms"))
        cases: Sequence[tuple[str, Callable[[], object]]] = [
            ("search", lambda: g.search(queries, k=args.k)),
            ("search_identities", lambda: g.search_identities(queries, k=args.k)),
            ("search, modality filter", lambda: g.search(queries, k=args.k, modality="ir")),
            ("search, 1 camera of 6", lambda: g.search(queries, k=args.k, camera=3)),
        ]
        for label, fn in cases:
            rows.append(
                (f"[{backend}] {label}, {args.queries} queries, top-{args.k}", _ms(timed(fn, args.repeat)))
            )
        best = lambda: g.search_identities(queries, k=args.k, modality="ir")  # noqa: E731
        rows.append((f"[{backend}] search_identities, max, modality filter", _ms(timed(best, args.repeat))))
        centroid = lambda: g.search_identities(queries, k=args.k, modality="ir", score="centroid")  # noqa: E731
        (first,) = timed(centroid)
        rows.append(
            (f"[{backend}] search_identities, centroid, modality filter: first", f"{first * 1e3:.0f} ms")
        )
        rows.append((f"[{backend}] same, centroids cached", _ms(timed(centroid, args.repeat))))
        new = iter(unit(rng, args.repeat, args.dim))

        def enrol_then_search() -> None:
            g.enroll(f"new-{time.time_ns()}", next(new), "ir")
            g.search(queries, k=args.k)

        times = timed(enrol_then_search, args.repeat)
        rows.append((f"[{backend}] enrol 1 vector, then search (index catches up)", _ms(times)))
        victims = iter([info.name for info in g.identities()[: args.repeat]])

        def remove_then_search() -> None:
            g.remove(next(victims))
            g.search(queries, k=args.k)

        times = timed(remove_then_search, args.repeat)
        rows.append((f"[{backend}] remove 1 identity, then search (index compacts)", _ms(times)))
    return rows


def _ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1e3:.1f} ms (min {min(times) * 1e3:.1f})"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, numpy {np.__version__}, load {load:.2f}"


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  result")
    print(f"{'-' * width}  {'-' * 24}")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="embeddings in the search gallery")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--per-identity", type=int, default=10, help="embeddings per identity (search)")
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--enroll", type=int, default=10_000, help="vectors enrolled in one call")
    parser.add_argument("--identities", type=int, default=10_000, help="identities enrolled one by one")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--backends", default="numpy,faiss", help="comma list; faiss skipped if missing")
    parser.add_argument("--no-durable", dest="durable", action="store_false", help="synchronous=NORMAL")
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one, deleted)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="bench_gallery_", dir=args.dir))
    try:
        print(f"machine: {machine()}\nfolder: {folder}\n", flush=True)
        rows = bench_enrolment(folder, args, rng)
        path = folder / "search.db"
        seconds = build_search_gallery(path, args, rng)
        rows.append((f"build {args.n} x {args.dim} search gallery (no fsync)", f"{seconds:.1f} s"))
        rows.append(("  database size", f"{path.stat().st_size / 2**20:.0f} MiB"))
        for backend in args.backends.split(","):
            if backend == "faiss" and not _has_faiss():
                rows.append(("[faiss]", "not installed, skipped"))
                continue
            rows += bench_search(path, args, rng, backend)
        print_table(rows)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
