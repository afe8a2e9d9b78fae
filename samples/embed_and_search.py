"""Embed person crops, enrol visible identities in a gallery file, and search it with infrared crops.

Shows `vireid.Embedder` (crops → L2-normalised embeddings), `vireid.Gallery` (a SQLite file on disk:
enrol, search) and cross-modal re-identification: each infrared (thermal) crop is matched against the
visible enrolments only, and the best identities are printed with their cosine scores.

Data: a folder in the SYSU-MM01 layout, `CAM/PERSON/IMAGE.jpg`, where cam1, cam2, cam4 and cam5 are
visible cameras and cam3 and cam6 infrared ones: the real SYSU-MM01, or a synthetic one.

    vireid synth sysu --out data/sysu --ids 20 --images-per-camera 4
    python samples/embed_and_search.py demo/models/demo.onnx data/sysu --gallery gallery.db

After `make demo` the model is `demo/models/demo.onnx` and a ready set is `demo/data/sysu-heldout`.
Needs the runtime only (`pip install 'vireid[onnx]'`); no PyTorch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import vireid
from vireid.imageio import read_image

VISIBLE_CAMERAS = ("cam1", "cam2", "cam4", "cam5")  # the SYSU-MM01 convention
INFRARED_CAMERAS = ("cam3", "cam6")


def crops_of(data: Path, person: str, cameras: tuple[str, ...], limit: int) -> list[Path]:
    """Up to `limit` image files of one person taken by the given cameras."""
    files = [f for cam in cameras for f in sorted((data / cam / person).glob("*.jpg"))]
    return files[:limit]


def enroll(gallery: vireid.Gallery, embedder: vireid.Embedder, files: list[Path], person: str) -> None:
    """Enrol visible crops under the person's name; `replace=True` swaps an earlier enrolment of that
    name in one transaction (a re-run re-enrols instead of adding duplicates, and loses nothing if it
    fails half-way)."""
    embeddings = embedder.embed([read_image(f) for f in files], vireid.Modality.VISIBLE)
    cameras = [f.parent.parent.name for f in files]
    gallery.enroll(person, embeddings, camera=cameras, sources=[str(f) for f in files], replace=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="exported model (.onnx or .engine)")
    parser.add_argument("data", type=Path, help="SYSU-MM01-layout folder (e.g. from `vireid synth sysu`)")
    parser.add_argument("--gallery", type=Path, default=Path("gallery.db"), help="gallery file (created)")
    parser.add_argument("--people", type=int, default=10, help="identities to enrol and query (default 10)")
    parser.add_argument("--per-person", type=int, default=4, help="visible crops enrolled per identity")
    parser.add_argument("-k", type=int, default=3, help="identities listed per query (default 3)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or tensorrt")
    args = parser.parse_args(argv)
    if args.people < 1 or args.per_person < 1 or args.k < 1:
        parser.error("--people, --per-person and -k must be at least 1")

    people = sorted({p.name for cam in INFRARED_CAMERAS for p in (args.data / cam).glob("*") if p.is_dir()})
    people = [p for p in people if crops_of(args.data, p, VISIBLE_CAMERAS, 1)][: args.people]
    if not people:
        print(f"{args.data}: no person with both visible and infrared crops", file=sys.stderr)
        return 1

    with (
        vireid.Embedder(args.model, device=args.device) as embedder,
        vireid.Gallery(args.gallery, embedder.embedding_space, embedder.dim) as gallery,
    ):
        shown = "none" if embedder.threshold is None else f"{embedder.threshold:.4f}"
        print(f"model {embedder.card.model_name} on {embedder.device}, match threshold {shown}")
        for person in people:
            enroll(gallery, embedder, crops_of(args.data, person, VISIBLE_CAMERAS, args.per_person), person)
        info = gallery.info()
        print(f"{args.gallery}: {info.num_identities} identities, {info.num_embeddings} visible embeddings")
        if info.num_identities > len(people):  # a persistent file: earlier runs' people stay enrolled
            others = info.num_identities - len(people)
            print(f"({others} of them enrolled by earlier runs; they take part in the search)")

        # One infrared crop per person, searched against the visible enrolments only; each person is
        # scored by the unit mean of their enrolled crops, steadier than their single best crop.
        queries = [crops_of(args.data, person, INFRARED_CAMERAS, 1)[0] for person in people]
        embeddings = embedder.embed([read_image(f) for f in queries], vireid.Modality.INFRARED)
        results = gallery.search_identities(
            embeddings, k=args.k, modality=vireid.Modality.VISIBLE, score="centroid"
        )
        threshold = embedder.threshold

    correct = 0
    for person, file, matches in zip(people, queries, results, strict=True):
        correct += matches[0].identity == person
        marked = [(m, "*" if threshold is not None and m.score >= threshold else "") for m in matches]
        found = "  ".join(f"{m.identity} {m.score:.3f}{mark}" for m, mark in marked)
        print(f"{file.relative_to(args.data)} (person {person}) -> {found}")
    if threshold is not None:
        print(f"(* = score >= {threshold:.4f}, the model's match threshold: the same person)")
    print(f"rank-1: {correct}/{len(people)} infrared queries matched their own identity first")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except vireid.VireidError as error:  # bad input: the message names the file and the fix
        sys.exit(f"error: {error}")
