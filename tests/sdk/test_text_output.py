"""Hostile text (terminal escapes, newlines, undecodable file names) is refused where it enters and shown
escaped where it is already stored: it never clears a terminal, forges a log line or crashes OpenCV."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from vireid import CardError, InputSpecError, ModelCard, StreamError
from vireid.cli.main import main
from vireid.gallery import Gallery
from vireid.imageio import read_image
from vireid.streams import VideoSource
from vireid.text import has_invisible, printable

HOSTILE = "bob\x1b]0;pwned\x07\x1b[2J\rroot 99 99"


def test_printable_escapes_only_what_would_not_show() -> None:
    assert printable("José 北京") == "José 北京" and printable("a\u200db") == "a\u200db"  # a joiner stays
    assert printable(HOSTILE) == repr(HOSTILE) and "\x1b" not in printable(HOSTILE)
    assert has_invisible("x\ud800") and has_invisible("a\nb") and not has_invisible("plain")


def test_a_card_with_control_characters_is_refused() -> None:
    """A downloaded model named `m\\x1b[2J...` cleared the screen in `vireid info` and forged log lines."""
    with pytest.raises(CardError, match="model_name holds control characters"):
        ModelCard(model_name="m\x1b[2J\nINFO vireid: fake", embedding_dim=8)
    with pytest.raises(CardError, match=r"model_config\.backbone holds control characters"):
        ModelCard(model_name="m", embedding_dim=8, model_config={"backbone": "r50\r"})
    with pytest.raises(CardError, match="vireid_version must be a string"):
        ModelCard(model_name="m", embedding_dim=8, vireid_version=3)  # type: ignore[arg-type]
    with pytest.raises(CardError, match="64 lowercase hex digits"):
        ModelCard(model_name="m", embedding_dim=8, engine_sha256="a" * 64 + "\n")


def test_stored_names_and_cameras_are_printed_escaped(tmp_path: Path, capsys) -> None:
    """Names are checked when written; a .db from elsewhere (or an older version) may still hold any."""
    path = tmp_path / "g.db"
    with Gallery(path, "space", 4) as gallery:
        gallery.enroll("bob", np.eye(4, dtype=np.float32)[:1], "visible", camera="gate")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE identities SET name = ?", (HOSTILE,))
    assert main(["gallery", "list", "--gallery", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and repr(HOSTILE) in out


def test_camera_ids_and_undecodable_file_names_are_refused_not_crashing_opencv(tmp_path: Path) -> None:
    with pytest.raises(InputSpecError, match="camera id must be a non-empty name without control"):
        VideoSource("a.mp4", "visible", camera="gate\x1b[2J")
    undecodable = str(tmp_path / "Jos") + "\udce9.png"  # b"Jos\xe9.png" as Python decodes it
    with pytest.raises(StreamError, match="not UTF-8"):
        VideoSource(undecodable, "visible", camera="gate")
    with pytest.raises(InputSpecError, match="not UTF-8"):
        read_image(undecodable)  # cv2.imread segfaulted on it
    with pytest.raises(InputSpecError, match="control characters"):
        Gallery(":memory:", "space", 4).enroll("x\udce9", np.eye(4, dtype=np.float32)[:1], "visible")


def test_a_triton_model_name_with_a_final_newline_is_refused() -> None:
    from vireid import ConfigError
    from vireid.export.triton import check_model_name

    with pytest.raises(ConfigError, match="may hold only letters"):
        check_model_name("model\n")
    check_model_name("model")
