"""`read_image`: colour order, grey replication, and clean errors without OpenCV's own warnings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vireid.errors import InputSpecError
from vireid.imageio import has_colour, read_image


def test_read_image_returns_rgb_and_replicates_grey(tmp_path: Path) -> None:
    bgr = np.zeros((8, 4, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    cv2.imwrite(str(tmp_path / "blue.png"), bgr)
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((8, 4), 77, np.uint8))
    blue = read_image(tmp_path / "blue.png")
    grey = read_image(tmp_path / "grey.png")
    assert blue.shape == (8, 4, 3) and blue[0, 0].tolist() == [0, 0, 200]
    assert grey.shape == (8, 4, 3) and (grey == 77).all()
    assert has_colour(blue) and not has_colour(grey)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: d / "missing.jpg", "does not exist"),
        (lambda d: (d / "folder.jpg").mkdir() or d / "folder.jpg", "is a folder"),
        (lambda d: (d / "text.jpg").write_text("not an image") and d / "text.jpg", "cannot be decoded"),
    ],
    ids=["missing", "folder", "not-an-image"],
)
def test_read_image_error_names_the_file_and_opencv_stays_quiet(tmp_path: Path, capfd, make, problem) -> None:
    path = make(tmp_path)
    with pytest.raises(InputSpecError, match=problem) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert "imread" not in capfd.readouterr().err  # ours is the only message the user sees


def test_a_16bit_thermal_file_needs_its_scaling_instead_of_losing_its_range(tmp_path) -> None:
    """OpenCV's colour read divides 16-bit values by 256: 29000-31315 centi-Kelvin became grey 113-122."""
    import cv2
    import numpy as np
    import pytest

    from vireid import InputSpecError
    from vireid.imageio import read_image

    frame = np.full((40, 20), 29000, np.uint16)
    frame[10:30, 5:15] = 31315  # a person at 40 °C against 17 °C
    cv2.imwrite(str(tmp_path / "t.png"), frame)
    with pytest.raises(InputSpecError, match=r"16-bit grey image.*thermal='window:LOW:HIGH'"):
        read_image(tmp_path / "t.png")
    image = read_image(tmp_path / "t.png", thermal="window:29000:31315")
    assert image.shape == (40, 20, 3) and image[20, 10, 0] == 255 and image[0, 0, 0] == 0


def test_a_decompression_bomb_is_refused_without_decoding_it(tmp_path: Path) -> None:
    """A 160 KB PNG that decodes to 12000x12000 pixels used to be decoded (and tripled by the colour
    conversion). Importing vireid lowers OpenCV's pixel limit to 2**26 unless the caller set one; OpenCV
    reads it when cv2 is first imported, so the check runs in a fresh process."""
    import subprocess
    import sys

    bomb = tmp_path / "crop.png"
    assert cv2.imwrite(str(bomb), np.zeros((12000, 12000), np.uint8)) and bomb.stat().st_size < 500_000
    script = (
        "import sys, vireid\n"
        "from vireid.imageio import read_image\n"
        "try:\n"
        "    read_image(sys.argv[1])\n"
        "except vireid.InputSpecError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "crop.png: cannot be decoded" in done.stdout
    assert "CV_IO_MAX_IMAGE_PIXELS" in done.stdout
