"""Run the real-time pipeline on a visible and an infrared video and print its events as they happen.

Shows `vireid.Pipeline`: two `vireid.VideoSource`s (a colour and a thermal camera; here two video
files stand in for them), person detection and tracking per camera, embeddings from `vireid.Embedder`,
names from a `vireid.Gallery` enrolled from person crops, and visible ↔ infrared track pairs. Every
event is printed when the pipeline emits it; a summary follows when the videos end.

Data: a scene folder (`visible.mp4`, `infrared.mp4`) and a crops folder with one sub-folder of images
per person (`CROPS/NAME/*.jpg`, the name is the folder's). The people of a synthetic scene are the
identities 1, 2, ... of the synthetic SYSU set made with the same seed, so a SYSU camera folder serves:

    vireid synth scene --out data/scene --seconds 30 --people 4
    vireid synth sysu --out data/sysu --ids 20
    python samples/two_camera_pipeline.py demo/models/demo.onnx data/scene --crops data/sysu/cam1

After `make demo`: model `demo/models/demo.onnx`, scene `demo/data/scene`, and either
`--crops demo/data/sysu-train/cam1 --limit 8` or the gallery it enrolled, `--gallery demo/gallery.db`.
Without `--crops` or `--gallery` only visible ↔ infrared pairs are reported. Runtime only; no PyTorch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import vireid


def enroll_folder(gallery: vireid.Gallery, embedder: vireid.Embedder, crops: Path, limit: int) -> None:
    """Enrol each sub-folder of `crops` (visible crops of one person) under the sub-folder's name.

    `replace=True` re-enrols a name already in the gallery in one transaction: the images are read and
    embedded first, so an unreadable one raises before anything stored changes."""
    people = sorted(p for p in crops.iterdir() if p.is_dir())[:limit]
    for person in people:
        vireid.enroll_images(gallery, embedder, person.name, [person], "visible", replace=True)
    print(f"gallery: {len(gallery)} identities enrolled from {crops}")


def describe(event: vireid.streams.Event) -> str:
    """One line per event."""
    match event:
        case vireid.TrackStarted(camera=cam, track_id=track, frame=frame):
            return f"{cam}#{track} started (frame {frame})"
        case vireid.Identified(camera=cam, track_id=track, name=name, score=score, previous=previous):
            changed = f", was {previous}" if previous else ""
            return f"{cam}#{track} is {name} (score {score:.3f}{changed})"
        case vireid.CrossModalMatch(
            visible_camera=vis, visible_track=v, infrared_camera=ir, infrared_track=i
        ):
            return f"{vis}#{v} = {ir}#{i}: one person in both modalities (score {event.score:.3f})"
        case vireid.TrackEnded(camera=cam, track_id=track, name=name, frames=frames):
            return f"{cam}#{track} ended after {frames} frames ({name or 'unnamed'})"
        case vireid.SourceChanged(camera=cam, state=state):
            return f"{cam} source {state}"
    return str(event.to_dict())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="exported model (.onnx or .engine)")
    parser.add_argument("scene", type=Path, help="folder with visible.mp4 and infrared.mp4")
    parser.add_argument("--crops", type=Path, help="CROPS/NAME/*.jpg: visible crops to enrol, per person")
    parser.add_argument("--limit", type=int, default=50, help="enrol at most this many people (default 50)")
    parser.add_argument("--gallery", type=Path, help="gallery file (default: in memory when --crops)")
    parser.add_argument("--threshold", type=float, help="match threshold (default: the model card's)")
    parser.add_argument("--realtime", action="store_true", help="replay at the videos' frame rate")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or tensorrt")
    args = parser.parse_args(argv)

    sources = [
        vireid.VideoSource(args.scene / "visible.mp4", "visible", realtime=args.realtime),
        vireid.VideoSource(args.scene / "infrared.mp4", "infrared", realtime=args.realtime),
    ]
    with vireid.Embedder(args.model, device=args.device) as embedder:
        gallery = None
        if args.crops:
            gallery = vireid.Gallery(args.gallery or ":memory:", embedder.embedding_space, embedder.dim)
            enroll_folder(gallery, embedder, args.crops, args.limit)
        elif args.gallery:
            gallery = vireid.Gallery.open(args.gallery, embedder.embedding_space)
        config = vireid.PipelineConfig(threshold=args.threshold)
        pipeline = vireid.Pipeline(
            sources,
            embedder,
            gallery=gallery,
            config=config,
            on_event=lambda e: print(describe(e), flush=True),
        )
        try:
            stats = pipeline.run()  # until both videos end (Ctrl-C stops cleanly)
        finally:
            if gallery is not None:
                gallery.close()

    print("\nsummary")
    for camera, cam in stats.cameras.items():
        print(f"  {camera}: {cam.processed} frames, {cam.media_seconds:.1f} s of video")
    print("  events: " + ", ".join(f"{kind} {count}" for kind, count in sorted(stats.events.items())))
    print(f"  real-time factor {stats.realtime_factor:.1f} (media seconds per wall-clock second)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except vireid.VireidError as error:  # bad input: the message names the file and the fix
        sys.exit(f"error: {error}")
