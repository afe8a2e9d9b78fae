"""Manage a gallery of enrolled identities: enroll, list, remove, rename, search, purge, export, import,
backup.

Examples:
  vireid gallery enroll --gallery g.db --model m.onnx --name alice --modality visible crops/alice/
  vireid gallery search --gallery g.db --model m.onnx --modality ir query.png -k 5
  vireid gallery list --gallery g.db
  vireid gallery export --gallery g.db --out g.npz --allow-biometric-export
  vireid gallery import --gallery new.db g.npz
  vireid gallery backup g.db backups/g.db
  vireid gallery purge --gallery g.db --older-than-days 30
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import jsonio
from ..backends.base import DEVICES
from ..text import printable
from .argtypes import modality_arg, one_of, positive_float, positive_int, subcommand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid gallery ACTION`."""
    where = _gallery_options(required=True)
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", "-m", type=Path, required=True, help="model artifact (.onnx or .engine)")
    model.add_argument(
        "--device", default="auto", type=one_of(DEVICES), help="auto, cpu, cuda or tensorrt (default auto)"
    )
    model.add_argument("--batch", type=positive_int, default=32, help="images per embedding batch")
    model.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable images (listed) instead of failing"
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    enroll = subcommand(sub, parser, "enroll", "embed person crops and enrol them", parents=[where, model])
    enroll.add_argument("inputs", nargs="+", type=Path, help="crop images and/or folders of crops")
    enroll.add_argument("--name", required=True, help="identity name (added to it when already enrolled)")
    enroll.add_argument(
        "--replace",
        action="store_true",
        help="re-enrol: replace the identity's embeddings by these, in one transaction",
    )
    enroll.add_argument(
        "--modality", required=True, type=modality_arg, help="visible (rgb) or infrared (ir, thermal)"
    )
    enroll.add_argument("--camera", help="camera label to tag the crops with")
    enroll.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="identity metadata")

    listing = subcommand(sub, parser, "list", "list identities with counts per modality", parents=[where])
    listing.add_argument("--json", action="store_true", help="one JSON object per identity")

    remove = subcommand(sub, parser, "remove", "delete an identity and its embeddings", parents=[where])
    remove.add_argument("name", help="the identity's name")
    remove.add_argument(
        "--modality",
        type=modality_arg,
        help="delete only this modality's embeddings (crops enrolled as the wrong one); the name stays",
    )
    rename = subcommand(sub, parser, "rename", "rename an identity", parents=[where])
    rename.add_argument("old", help="the identity's name now")
    rename.add_argument("new", help="its new name")

    search = subcommand(
        sub, parser, "search", "find the enrolled identities of query crops", parents=[where, model]
    )
    search.add_argument("images", nargs="+", type=Path, help="query crop images and/or folders")
    search.add_argument("--modality", required=True, type=modality_arg, help="modality of the query crops")
    search.add_argument("-k", type=positive_int, default=5, help="results per query (default 5)")
    search.add_argument("--embeddings", action="store_true", help="rank single embeddings, not identities")
    search.add_argument(
        "--score",
        choices=["max", "centroid"],
        default="max",
        help="identity score: best embedding (max, default) or unit mean of its embeddings (centroid, "
        "what `vireid run` uses); not with --embeddings",
    )
    search.add_argument(
        "--match-modality", type=modality_arg, help="only match gallery embeddings of this modality"
    )
    search.add_argument("--camera", action="append", help="only match embeddings of this camera (repeatable)")
    search.add_argument("--json", action="store_true", help="one JSON object per query image")

    purge = subcommand(
        sub,
        parser,
        "purge",
        "retention: delete embeddings, events and videos older than N days",
        parents=[_gallery_options(required=False, also="; needed unless --keep-embeddings")],
    )
    purge.add_argument("--older-than-days", type=positive_float, required=True, help="age limit in days")
    keep = purge.add_mutually_exclusive_group()
    keep.add_argument("--keep-empty", action="store_true", help="keep identities left without embeddings")
    keep.add_argument(
        "--keep-embeddings",
        action="store_true",
        help="leave the gallery alone (enrolments kept for good; --gallery not needed); purge only the "
        "--events and --videos given",
    )
    purge.add_argument(
        "--events",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also purge old events from this JSON Lines file (`vireid run --events`); repeatable",
    )
    purge.add_argument(
        "--videos",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also delete annotated videos older than the limit from this `vireid run --video-out` folder; "
        "repeatable",
    )

    export = subcommand(sub, parser, "export", "write the gallery to an .npz file", parents=[where])
    export.add_argument("--out", type=Path, required=True, help="output .npz file")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    export.add_argument(
        "--allow-biometric-export",
        action="store_true",
        help="required: confirms that copying the enrolled biometric templates out is intended",
    )
    imp = subcommand(sub, parser, "import", "add the identities of an exported .npz", parents=[where])
    imp.add_argument("file", type=Path, help="an .npz written by `vireid gallery export`")
    imp.add_argument(
        "--on-conflict", choices=("error", "merge", "skip"), default="error", help="name clashes"
    )

    backup = subcommand(
        sub,
        parser,
        "backup",
        "write a consistent copy of the gallery database, also while `vireid run` writes to it",
        parents=[_gallery_options(required=False, also="; or give it as GALLERY")],
        usage="%(prog)s [-h] [--key-file KEY_FILE] [--overwrite] GALLERY OUT",
    )
    backup.add_argument(  # optional for argparse: `_backup` says which of GALLERY and OUT is missing
        "source", type=Path, nargs="?", metavar="GALLERY", help="the gallery database file (.db)"
    )
    backup.add_argument(
        "out", type=Path, nargs="?", metavar="OUT", help="the backup file to write (owner-only, atomically)"
    )
    backup.add_argument("--overwrite", action="store_true", help="replace an existing OUT file")


def _gallery_options(required: bool, also: str = "") -> argparse.ArgumentParser:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--gallery", "-g", type=Path, required=required, help="gallery database file (.db)" + also
    )
    where.add_argument(
        "--key-file",
        type=Path,
        help="passphrase file of an encrypted gallery (mode 600; or set $VIREID_GALLERY_KEY[_FILE])",
    )
    return where


def run(args: argparse.Namespace) -> int:
    """Run one gallery action."""
    actions: dict[str, Callable[[argparse.Namespace], int]] = {
        "enroll": _enroll,
        "list": _list,
        "remove": _remove,
        "rename": _rename,
        "purge": _purge,
        "search": _search,
        "export": _export,
        "import": _import,
        "backup": _backup,
    }
    return actions[args.action](args)


# ----- actions without a model --------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    from vireid.gallery import Gallery
    from vireid.modality import Modality

    with Gallery.open(args.gallery, key_file=args.key_file) as gallery:
        identities = gallery.identities()
        info = gallery.info()
    if args.json:
        for item in identities:
            counts = {str(m): n for m, n in item.counts.items()}
            print(jsonio.dumps({"name": item.name, "counts": counts, "metadata": dict(item.metadata)}))
        return 0
    print(
        f"{info.path}: {info.num_identities} identities, {info.num_embeddings} embeddings, "
        f"{info.dim}-d, embedding space {printable(info.embedding_space)}"
    )
    if identities:
        names = [printable(i.name) for i in identities]  # a stored name is shown escaped, never obeyed
        width = max(8, *(len(name) for name in names))
        print(f"{'identity':<{width}}  visible  infrared  metadata")
        for item, name in zip(identities, names, strict=True):
            visible, infrared = (item.counts[m] for m in Modality)
            meta = jsonio.dumps(dict(item.metadata)) if item.metadata else ""
            print(f"{name:<{width}}  {visible:>7}  {infrared:>8}  {meta}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from vireid.gallery import Gallery

    modality = args.modality  # parsed by argparse: a typo fails before any change
    with Gallery.open(args.gallery, key_file=args.key_file) as gallery:
        if modality is None:
            removed = gallery.remove(args.name)
            print(f"removed {args.name!r} and its {removed} embeddings from {args.gallery}")
            return 0
        stored = gallery.embeddings(args.name)
        removed = gallery.remove_embeddings(stored.ids[stored.modalities == int(modality)])
    kept = len(stored.ids) - removed
    print(f"removed {removed} {modality} embeddings of {args.name!r} from {args.gallery} ({kept} kept)")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from vireid.errors import InputSpecError
    from vireid.gallery import Gallery
    from vireid.streams.sinks import VIDEO_FOLDER_MARK, events_file_problem, purge_events, purge_videos

    if args.keep_embeddings and not (args.events or args.videos):
        raise InputSpecError("--keep-embeddings leaves nothing to purge: give --events FILE or --videos DIR")
    if args.keep_embeddings and args.gallery is not None and not args.gallery.is_file():
        raise InputSpecError(
            f"--gallery {args.gallery}: no gallery file here (a typo?); with --keep-embeddings the gallery "
            "is not needed: leave --gallery out"
        )
    if not args.keep_embeddings and args.gallery is None:
        raise InputSpecError(
            "purge needs --gallery G.db (its old embeddings are deleted), or --keep-embeddings to purge only "
            "--events and --videos"
        )
    # Checked first: a purge must not stop half-way, after the gallery's part.
    folders = [str(p) for p in args.events if p.is_dir()]
    if folders:
        raise InputSpecError(
            f"--events {', '.join(folders)}: is a folder, not an events file; nothing was purged"
        )
    for videos in args.videos:
        if not (videos / VIDEO_FOLDER_MARK).is_file():  # never someone's own recordings
            raise InputSpecError(
                f"--videos {videos}: not a folder `vireid run --video-out` wrote (no {VIDEO_FOLDER_MARK} "
                "in it); nothing was purged"
            )
    for events in args.events:
        problem = events_file_problem(events, whole=True)  # the gallery's part must not run for nothing
        if problem:
            raise InputSpecError(f"--events {events}: {problem}; nothing was purged")
    if args.keep_embeddings:
        if args.gallery is not None:
            print(f"kept every embedding of {args.gallery} (--keep-embeddings)")
    else:
        with Gallery.open(args.gallery, key_file=args.key_file) as gallery:
            embeddings, identities = gallery.purge(args.older_than_days, drop_empty=not args.keep_empty)
        print(
            f"purged {embeddings} embeddings older than {args.older_than_days:g} days and {identities} "
            f"identities left without any from {args.gallery}"
        )
    for events in args.events:
        if not events.exists():  # not written yet, or rotated away: nothing of it to purge
            print(f"no events file {events}: skipped", file=sys.stderr)
            continue
        kept, removed = purge_events(events, args.older_than_days)
        print(f"purged {removed} events older than {args.older_than_days:g} days from {events} ({kept} kept)")
    for videos in args.videos:
        kept, removed = purge_videos(videos, args.older_than_days)
        print(
            f"deleted {removed} videos older than {args.older_than_days:g} days from {videos} ({kept} kept)"
        )
    return 0


def _rename(args: argparse.Namespace) -> int:
    from vireid.gallery import Gallery

    with Gallery.open(args.gallery, key_file=args.key_file) as gallery:
        gallery.rename(args.old, args.new)
    print(f"renamed {args.old!r} to {args.new!r} in {args.gallery}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from vireid.errors import InputSpecError
    from vireid.gallery import Gallery

    if not args.allow_biometric_export:
        raise InputSpecError(
            f"{args.gallery}: an export copies every enrolled biometric template into {args.out} (owner-only "
            "file); pass --allow-biometric-export to confirm"
        )

    with Gallery.open(args.gallery, key_file=args.key_file) as gallery:
        info = gallery.info()
        gallery.export_npz(args.out, overwrite=args.overwrite)
    print(f"exported {info.num_identities} identities, {info.num_embeddings} embeddings to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from vireid.gallery import Gallery
    from vireid.gallery.transfer import check_npz

    manifest = check_npz(args.file)  # the whole file, before a new gallery is created for it
    space, dim = manifest.get("embedding_space"), manifest.get("dim")
    with Gallery(args.gallery, embedding_space=space, dim=dim, key_file=args.key_file) as gallery:
        before = gallery.info().num_identities
        added = gallery.import_npz(args.file, on_conflict=args.on_conflict)
        new = gallery.info().num_identities - before
    print(
        f"imported {added} embeddings into {args.gallery}: {new} new identities "
        f"({len(manifest['identities'])} in {args.file}, --on-conflict {args.on_conflict})"
    )
    return 0


def _backup(args: argparse.Namespace) -> int:
    from vireid.errors import InputSpecError
    from vireid.gallery import Gallery

    # `backup GALLERY OUT`, or `backup --gallery GALLERY OUT` like the other gallery commands
    paths = [p for p in (args.source, args.out) if p is not None]
    source = args.gallery if args.gallery is not None else (paths.pop(0) if paths else None)
    if source is None:
        raise InputSpecError(
            "backup needs GALLERY, the gallery database, and OUT, the backup file to write; e.g. "
            "`vireid gallery backup site.db backups/site.db` (or --gallery site.db backups/site.db)"
        )
    if not paths:
        given = f"--gallery {source}" if args.gallery is not None else str(source)
        raise InputSpecError(
            f"backup needs OUT, the backup file to write, after the gallery (got only {given}); e.g. "
            f"`vireid gallery backup {given} backups/{source.name}`"
        )
    if len(paths) > 1:
        given = " ".join(str(p) for p in (args.gallery, args.source, args.out) if p is not None)
        raise InputSpecError(
            f"backup takes the gallery and the backup file, got: {given}; e.g. "
            "`vireid gallery backup site.db backups/site.db` (or --gallery site.db backups/site.db)"
        )
    out = paths[0]
    with Gallery.open(source, key_file=args.key_file) as gallery:
        written = gallery.backup(out, overwrite=args.overwrite)
    with Gallery.open(written, key_file=args.key_file) as copy:  # what the copy holds, read back from it
        info = copy.info()
    print(
        f"backed up {info.num_identities} identities, {info.num_embeddings} embeddings of {source} to "
        f"{written} ({_size(written.stat().st_size)}, owner-only)"
    )
    return 0


# ----- actions with a model -----------------------------------------------------------------------
def _enroll(args: argparse.Namespace) -> int:
    from vireid.enrollment import collect_images, describe_problems, embed_files
    from vireid.errors import InputSpecError
    from vireid.gallery import Gallery
    from vireid.modality import Modality

    modality = Modality.parse(args.modality)
    metadata = _parse_meta(args.meta) if args.meta else None
    files = collect_images(args.inputs)
    with _embedder(args) as embedder:
        space = str(embedder.embedding_space)
        gallery = (
            Gallery.open(args.gallery, space, key_file=args.key_file) if _exists(args.gallery) else None
        )  # fail before embedding
        if args.replace and (gallery is None or args.name not in gallery):  # one indexed lookup
            if gallery is not None:
                gallery.close()
            raise InputSpecError(
                f"--replace: {args.gallery} has no identity {args.name!r} to re-enrol (a typo would make a "
                "new person); check `vireid gallery list`, or drop --replace to enrol a new identity"
            )
        try:
            vectors, used, bad = embed_files(embedder, files, modality, args.batch, args.skip_bad)
        except BaseException:
            if gallery is not None:
                gallery.close()
            raise
    if bad:
        print(f"skipped {len(bad)} unreadable images:\n{describe_problems(bad)}", file=sys.stderr)
    if not used:
        raise InputSpecError(f"none of the {len(files)} images could be read; nothing was enrolled")
    gallery = gallery or Gallery(
        args.gallery, embedding_space=space, dim=int(vectors.shape[1]), key_file=args.key_file
    )
    with gallery:
        ids = gallery.enroll(
            args.name,
            vectors,
            modality,
            camera=args.camera,
            sources=[str(p) for p in used],
            metadata=metadata,
            embedding_space=space,
            replace=args.replace,
        )
    skipped = f"; skipped {len(bad)} unreadable images" if bad else ""
    verb = "re-enrolled" if args.replace else "enrolled"
    print(f"{verb} {len(ids)} {modality} embeddings of {args.name!r} into {args.gallery}{skipped}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from vireid.enrollment import collect_images, describe_problems, embed_files
    from vireid.errors import InputSpecError
    from vireid.gallery import Gallery
    from vireid.modality import Modality

    if args.embeddings and args.score != "max":
        raise InputSpecError("--score ranks identities and --embeddings ranks single embeddings: pick one")
    modality = Modality.parse(args.modality)
    match_modality = None if args.match_modality is None else Modality.parse(args.match_modality)
    files = collect_images(args.images)
    with (
        _embedder(args) as embedder,
        Gallery.open(args.gallery, str(embedder.embedding_space), key_file=args.key_file) as gallery,
    ):
        _check_cameras(gallery, args.camera)
        vectors, used, bad = embed_files(embedder, files, modality, args.batch, args.skip_bad)
        if bad:
            print(f"skipped {len(bad)} unreadable images:\n{describe_problems(bad)}", file=sys.stderr)
        if not used:
            raise InputSpecError(f"none of the {len(files)} query images could be read")
        if args.embeddings:
            results = gallery.search(vectors, k=args.k, modality=match_modality, camera=args.camera)
        else:
            results = gallery.search_identities(
                vectors, k=args.k, modality=match_modality, camera=args.camera, score=args.score
            )
    card = getattr(embedder, "card", None)
    accepts = _acceptance(card, modality)
    if card is not None and card.match_threshold is not None and not args.json:
        print(f"'match': score at or above the model card's threshold for the pair ({_thresholds(card)})")
    for path, matches in zip(used, results, strict=True):
        _print_matches(path, matches, args.json, accepts)
    return 0


def _check_cameras(gallery: Any, wanted: list[str] | None) -> None:
    """A --camera that no embedding is tagged with is most likely a typo: say so instead of '(no match)'."""
    from vireid.errors import InputSpecError

    known = gallery.cameras()
    unknown = [c for c in wanted or () if c not in known]
    if unknown and not known:
        raise InputSpecError(
            f"{gallery.path}: --camera {', '.join(map(repr, unknown))} matches nothing: no embedding is "
            "tagged with a camera (enroll --camera NAME tags them)"
        )
    if unknown:
        raise InputSpecError(
            f"{gallery.path}: no embedding is tagged with camera {', '.join(map(repr, unknown))}; "
            f"its cameras: {', '.join(map(printable, known))}"
        )


def _acceptance(card: Any, query: Any) -> Callable[[Any], bool | None]:
    """Whether a match clears the card's threshold for its pair of modalities, the cross-modal one where
    the card has no same-modality threshold, as the pipeline does (None: the card has no threshold)."""

    def accepts(match: Any) -> bool | None:
        if card is None:
            return None
        threshold = card.threshold_for(query, match.modality)
        threshold = card.match_threshold if threshold is None else threshold
        return None if threshold is None else bool(match.score >= threshold)

    return accepts


def _thresholds(card: Any) -> str:
    within = dict(card.match_threshold_within or {})
    parts = [f"cross-modal {card.match_threshold:.3f}"] + [f"{k} {v:.3f}" for k, v in within.items()]
    return ", ".join(parts)


def _print_matches(
    path: Path, matches: Sequence[Any], as_json: bool, accepts: Callable[[Any], bool | None]
) -> None:
    if as_json:
        rows = [asdict(m) | {"modality": str(m.modality), "match": accepts(m)} for m in matches]
        print(jsonio.dumps({"image": str(path), "matches": rows}))
        return
    print(f"{printable(path)}:")
    if not matches:
        print("  (no match)")
    for rank, m in enumerate(matches, 1):
        label = printable(m.camera)  # imports of older exports may hold control characters
        camera = f"camera {label}" if m.camera is not None else "camera -"
        mark = "  match" if accepts(m) else ""
        where = f"{m.modality!s:<8} {camera:<16} embedding {m.embedding_id}"
        print(f"  {rank:>2}. {printable(m.identity):<20} {m.score:7.4f}  {where}{mark}")


# ----- helpers ------------------------------------------------------------------------------------
@contextmanager
def _embedder(args: argparse.Namespace) -> Iterator[Any]:
    """The `Embedder` of `--model` (ONNX Runtime / TensorRT load only here), closed afterwards."""
    from vireid.embedder import Embedder

    embedder = Embedder(args.model, device=args.device)
    try:
        yield embedder
    finally:
        close = getattr(embedder, "close", None)
        if callable(close):
            close()


def _parse_meta(items: Sequence[str]) -> dict[str, str]:
    from vireid.errors import InputSpecError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputSpecError(f"--meta expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _exists(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
