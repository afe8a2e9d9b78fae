"""Host preprocessing: crop/clip/pad, INTER_LINEAR resize, colour order, infrared → 3 channels, batching."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vireid.errors import InputSpecError
from vireid.preprocess import (
    allocate_batch,
    box_to_pixels,
    crop_box,
    preprocess_boxes,
    preprocess_crops,
)
from vireid.thermal import ThermalScaling

SIZE = (32, 16)  # (height, width)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def resized(image: np.ndarray, size: tuple[int, int] = SIZE) -> np.ndarray:
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def test_crops_of_any_size_are_resized_with_inter_linear(rng: np.random.Generator) -> None:
    crops = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(70, 30, 3), (20, 9, 3), (32, 16, 3)]]
    batch = preprocess_crops(crops, SIZE)
    assert batch.shape == (3, 32, 16, 3) and batch.dtype == np.uint8 and batch.flags.c_contiguous
    for crop, row in zip(crops, batch, strict=True):
        np.testing.assert_array_equal(row, resized(crop))
    np.testing.assert_array_equal(preprocess_crops(crops, SIZE), batch)  # deterministic


def test_bgr_argument_swaps_to_rgb(rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 256, (50, 25, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    np.testing.assert_array_equal(preprocess_crops([bgr], SIZE, bgr=True), preprocess_crops([rgb], SIZE))
    np.testing.assert_array_equal(preprocess_crops(rgb, SIZE, bgr=False)[0], resized(rgb))


@pytest.mark.parametrize("shape", [(40, 20), (40, 20, 1)])
def test_infrared_single_channel_becomes_three_equal_channels(rng, shape) -> None:
    grey = rng.integers(0, 256, shape, dtype=np.uint8)
    (row,) = preprocess_crops([grey], SIZE)
    expected = resized(grey.reshape(40, 20))
    for channel in range(3):
        np.testing.assert_array_equal(row[:, :, channel], expected)
    # a 4-D batch of single-channel crops is accepted too
    np.testing.assert_array_equal(preprocess_crops(grey.reshape(1, 40, 20, 1), SIZE)[0], row)


def test_ready_batch_is_passed_through_without_copy(rng: np.random.Generator) -> None:
    ready = rng.integers(0, 256, (4, *SIZE, 3), dtype=np.uint8)
    assert preprocess_crops(ready, SIZE) is ready
    swapped = preprocess_crops(ready, SIZE, bgr=True)  # BGR needs work, so a new array
    assert not np.shares_memory(swapped, ready)
    np.testing.assert_array_equal(swapped, ready[..., ::-1])


def test_out_argument_is_filled_in_place(rng: np.random.Generator) -> None:
    out = allocate_batch(2, SIZE)
    crops = [rng.integers(0, 256, (64, 20, 3), dtype=np.uint8) for _ in range(2)]
    assert preprocess_crops(crops, SIZE, out=out) is out
    np.testing.assert_array_equal(out[1], resized(crops[1]))
    with pytest.raises(InputSpecError, match=r"out must be a writable C-contiguous \(2, 32, 16, 3\) uint8"):
        preprocess_crops(crops, SIZE, out=allocate_batch(3, SIZE))


@pytest.mark.parametrize(
    ("crop", "message"),
    [
        (np.zeros((10, 10, 4), np.uint8), r"crops\[0\] must be HxWx3 or HxW uint8, got \(10, 10, 4\) uint8"),
        (np.zeros((10, 10, 3), np.float32), r"got \(10, 10, 3\) float32"),
        (np.zeros((0, 10, 3), np.uint8), r"got \(0, 10, 3\) uint8"),
        (np.zeros((10, 10, 3), np.uint16), "16-bit .* needs a scaling to 8 bits; pass thermal="),
        ("crop.png", "got str; crops are images, not paths: read files with vireid.imageio.read_image"),
        (
            np.zeros((10, 100, 50), np.uint8),
            r"a 3-D array is one image: a batch of grey crops is \[N, H, W, 1\]",
        ),
    ],
)
def test_bad_crops_state_expected_and_actual(crop, message: str) -> None:
    with pytest.raises(InputSpecError, match=message):
        preprocess_crops([crop], SIZE)


@pytest.mark.parametrize("crops", [np.zeros(5, np.uint8), "a.png", 3])
def test_bad_crop_containers(crops) -> None:
    with pytest.raises(InputSpecError, match="crops must be"):
        preprocess_crops(crops, SIZE)


def test_box_inside_frame_is_a_view() -> None:
    frame = np.arange(20 * 30 * 3, dtype=np.uint32).astype(np.uint8).reshape(20, 30, 3)
    crop = crop_box(frame, (5, 2, 15, 12))
    assert crop.shape == (10, 10, 3) and np.shares_memory(crop, frame)
    np.testing.assert_array_equal(crop, frame[2:12, 5:15])


def test_fractional_box_widens_to_whole_pixels() -> None:
    assert box_to_pixels((1.2, 2.7, 10.1, 11.0)) == (1, 2, 11, 11)


@pytest.mark.parametrize("channels", [None, 3])
def test_box_leaving_frame_is_clipped_and_padded(channels) -> None:
    shape = (20, 30) if channels is None else (20, 30, channels)
    frame = np.full(shape, 200, np.uint8)
    crop = crop_box(frame, (-5, -2, 10, 25), pad_value=7)
    assert crop.shape == ((27, 15) if channels is None else (27, 15, 3))
    assert (crop[:2] == 7).all() and (crop[:, :5] == 7).all() and (crop[22:] == 7).all()
    assert (crop[2:22, 5:] == 200).all()


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((5, 5, 5, 9), "is empty"),
        ((40, 0, 50, 10), "entirely outside the 30x20 frame"),
        ((0, 0, np.nan, 4), "finite"),
    ],
)
def test_bad_boxes(box, message: str) -> None:
    with pytest.raises(InputSpecError, match=message):
        preprocess_boxes(np.zeros((20, 30, 3), np.uint8), [box], SIZE)


def test_preprocess_boxes_matches_crop_then_resize(rng: np.random.Generator) -> None:
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 40, 90], [150.5, 60, 175, 130], [0, 0, 160, 120]])
    batch = preprocess_boxes(frame, boxes, SIZE, bgr=True, pad_value=0)
    for box, row in zip(boxes, batch, strict=True):
        crop = crop_box(frame, box, pad_value=0)
        np.testing.assert_array_equal(row, resized(crop)[..., ::-1])
    grey = preprocess_boxes(frame[:, :, 0], boxes[:1], SIZE)
    np.testing.assert_array_equal(grey[0, :, :, 2], resized(np.ascontiguousarray(frame[10:90, 10:40, 0])))


@pytest.mark.parametrize(
    ("boxes", "pad", "message"),
    [([[1, 2, 3]], 0, r"\(K, 4\)"), ([[0, 0, 5, 5]], 300, "pad_value"), ("x", 0, "boxes must be")],
)
def test_bad_box_arguments(boxes, pad, message: str) -> None:
    with pytest.raises(InputSpecError, match=message):
        preprocess_boxes(np.zeros((20, 30, 3), np.uint8), boxes, SIZE, pad_value=pad)


def test_uint16_frame_without_a_scaling_is_refused_with_the_fix() -> None:
    with pytest.raises(InputSpecError, match=r"frame: 16-bit .* thermal='window:LOW:HIGH'"):
        preprocess_boxes(np.zeros((20, 30), np.uint16), [[0, 0, 5, 5]], SIZE)


def _radiometric_frame() -> np.ndarray:
    """A 16-bit thermal frame in centi-Kelvin: 20 °C background, a 36 °C person, two dead/hot pixels."""
    frame = np.full((60, 40), 29315, np.uint16)
    frame[10:50, 15:25] = 30915
    frame[0, 0], frame[0, 1] = 0, 65535
    return frame


def test_uint16_frame_with_a_fixed_window_maps_temperatures_to_fixed_grey_levels() -> None:
    window = "window:27315:31315"  # 0..40 °C
    batch = preprocess_boxes(_radiometric_frame(), [[0, 0, 40, 60]], (60, 40), thermal=window)
    assert batch.shape == (1, 60, 40, 3) and batch.dtype == np.uint8
    grey = batch[0, :, :, 0]
    assert grey[30, 20] == round((30915 - 27315) * 255 / 4000)  # 36 °C → 230
    assert grey[30, 5] == round((29315 - 27315) * 255 / 4000)  # 20 °C → 128
    assert grey[0, 0] == 0 and grey[0, 1] == 255  # clipped, not wrapped
    assert (batch[..., 0] == batch[..., 1]).all() and (batch[..., 1] == batch[..., 2]).all()


def test_percentile_scaling_ignores_hot_and_dead_pixels_unlike_min_max() -> None:
    frame = _radiometric_frame()
    scaled = ThermalScaling("percentile", 1, 99).to_uint8(frame)
    assert scaled[30, 20] == 255 and scaled[30, 5] == 0  # the person spans the whole range
    min_max = ((frame.astype(np.float64) - 0) * 255 / 65535).round()
    assert min_max[30, 20] - min_max[30, 5] < 10  # a min–max stretch would flatten the person
    flat = ThermalScaling().to_uint8(np.full((4, 4), 1000, np.uint16))
    assert (flat == 128).all()  # no division by zero on a flat frame


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("window:5", "expected window:LOW:HIGH"),
        ("gamma:1:2", "mode must be one of window, percentile"),
        ("window:300:200", "low < high"),
        ("percentile:-1:99", r"percentiles must lie in \[0, 100\]"),
        ("window:0:70000", r"\[0, 65535\]"),
    ],
)
def test_bad_thermal_scalings_name_the_accepted_forms(text: str, message: str) -> None:
    with pytest.raises(InputSpecError, match=message):
        ThermalScaling.parse(text)


def test_uint16_crops_scale_one_by_one() -> None:
    crops = [_radiometric_frame()[10:50, 15:25], _radiometric_frame()]
    batch = preprocess_crops(crops, (32, 16), thermal=ThermalScaling("window", 27315, 31315))
    assert batch.shape == (2, 32, 16, 3) and batch[0].min() == 230


@pytest.mark.parametrize("shape", [(0, 0, 1), (0, 5, 1), (5, 0), (4, 4, 2)])
def test_empty_or_odd_uint16_frames_get_a_clear_error(shape: tuple[int, ...]) -> None:
    """Found by the fuzz test: a (0, 0, 1) frame lost its channel before the emptiness check."""
    for mode in ("percentile:1:99", "window:0:100"):
        with pytest.raises(InputSpecError, match=r"16-bit thermal frame must be HxW or HxWx1, got shape"):
            ThermalScaling.parse(mode).to_uint8(np.zeros(shape, np.uint16))
