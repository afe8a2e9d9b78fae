"""Recognising a dataset folder's layout from its top-level folders (for hints and for refusals), and
the hints that name the usual fix when a layout is not found: a folder or file whose name differs only in
case, or the whole layout one folder further down."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

LAYOUT_FOLDERS = {"sysu": ("cam1", "cam3"), "regdb": ("Visible", "Thermal")}
"""Folders whose presence marks each layout (SYSU-MM01's cameras, RegDB's two modality folders)."""


def layout_of(root: str | Path) -> str | None:
    """`sysu` or `regdb` when `root` holds that layout's folders (complete or not), else None."""
    for kind, folders in LAYOUT_FOLDERS.items():
        if all((Path(root) / name).is_dir() for name in folders):
            return kind
    return None


def case_variant(parent: Path, name: str) -> str | None:
    """The entry of `parent` named like `name` but in another case (`Cam1` for `cam1`), else None.

    A case-sensitive file system does not find `cam1` when the folder is `Cam1`; the error should say
    so rather than report the folder as missing.
    """
    try:
        names = sorted(entry.name for entry in parent.iterdir())
    except OSError:  # not a folder, or unreadable: nothing to suggest
        return None
    return next((other for other in names if other != name and other.lower() == name.lower()), None)


def rename_hint(parent: Path, names: Sequence[str], slash: str = "/") -> str:
    """`found Cam1/; rename it cam1/` for those of `names` that `parent` holds in another case, else ''.

    `slash` ends each name ('/' for folders, '' for files).
    """
    pairs = [(found, name) for name in names if (found := case_variant(parent, name)) is not None]
    if not pairs:
        return ""
    found = ", ".join(f"{old}{slash}" for old, _ in pairs)
    wanted = ", ".join(f"{new}{slash}" for _, new in pairs)
    return f"found {found}; rename {'it' if len(pairs) == 1 else 'them'} {wanted} (names are case-sensitive)"


def missing_file_hint(path: Path) -> str:
    """The rename hint for a missing file: the file itself in another case (`Train_id.txt`) or, when its
    folder is missing, that folder in another case (`Exp/`); '' when neither."""
    if path.parent.is_dir():
        return rename_hint(path.parent, [path.name], slash="")
    return rename_hint(path.parent.parent, [path.parent.name])


def nested_layout(root: Path, names: Sequence[str]) -> Path | None:
    """The first immediate subfolder of `root` (by name) holding every folder of `names`, else None.

    Catches the dataset folder given one level too high, as in reference code that reads SYSU-MM01 from
    `SYSU-MM01/ori_data/`.
    """
    try:
        children = sorted(child for child in root.iterdir() if child.is_dir())
    except OSError:
        return None
    return next((child for child in children if all((child / name).is_dir() for name in names)), None)


def nested_hint(root: Path, names: Sequence[str], described: str) -> str:
    """`found cam1..cam6 under ROOT/ori_data; pass --data ROOT/ori_data` when a subfolder of `root` holds
    the layout's folders `names` (`described` names them in the message), else ''."""
    inner = nested_layout(root, names)
    return f"found {described} under {inner}; pass --data {inner}" if inner else ""


def join_hints(*hints: str) -> str:
    """The non-empty hints, each after '; ', to append to a problem description."""
    return "".join(f"; {hint}" for hint in hints if hint)


def missing_layout_hints(
    root: Path, missing: Sequence[str], folders: Sequence[str], described: str, other: tuple[str, str]
) -> str:
    """The likely fixes for a dataset folder missing some of its layout's `folders`: the other dataset's
    folder given instead (`other`: its layout name and what to say then), folders named in another
    case, or the whole layout one folder down (`described` names it); '' when none applies."""
    other_kind, other_hint = other
    return join_hints(
        other_hint if layout_of(root) == other_kind else "",
        rename_hint(root, missing),
        nested_hint(root, folders, described),
    )
