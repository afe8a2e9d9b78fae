"""The synthetic generator on small real outputs: determinism, layouts the readers accept, scene videos,
config errors, the output-folder policy, and the untrained baselines it must defeat across modalities."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vireid import ConfigError, DatasetError, Modality
from vireid.training.data.regdb import NUM_SPLITS, RegDB
from vireid.training.data.synth import (
    GENERATOR_VERSION,
    RegDBConfig,
    SceneConfig,
    SysuConfig,
    generate,
    generate_regdb,
    generate_scene,
    generate_sysu,
)
from vireid.training.data.synth.baselines import (
    BaselineReport,
    baseline_report,
    colour_histogram_features,
    raw_pixel_features,
)
from vireid.training.data.synth.writer import other_settings
from vireid.training.data.sysu import INFRARED_CAMERAS, VISIBLE_CAMERAS, SysuMM01

SMALL_SYSU = SysuConfig(ids=15, images_per_camera=2, seed=3)
SMALL_REGDB = RegDBConfig(ids=12, images_per_modality=2, seed=5)
SMALL_SCENE = SceneConfig(seconds=4, people=2, fps=5, width=320, height=240, seed=2)


def digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def sysu_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "sysu"
    generate_sysu(root, SMALL_SYSU, workers=1, show_progress=False)
    return root


@pytest.fixture(scope="module")
def regdb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "regdb"
    generate_regdb(root, SMALL_REGDB, workers=1, show_progress=False)
    return root


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "scene"
    generate_scene(root, SMALL_SCENE, workers=1, show_progress=False)
    return root


# --- determinism -------------------------------------------------------------------------------------


def test_sysu_same_seed_is_byte_identical_whatever_the_workers(sysu_root: Path, tmp_path: Path) -> None:
    again = generate_sysu(tmp_path / "again", SMALL_SYSU, workers=2, show_progress=False)
    assert not again.reused
    assert digest(again.root) == digest(sysu_root)


def test_sysu_other_seed_renders_other_images(sysu_root: Path, tmp_path: Path) -> None:
    config = SysuConfig(ids=SMALL_SYSU.ids, images_per_camera=2, seed=SMALL_SYSU.seed + 1)
    other = digest(generate_sysu(tmp_path / "other", config, workers=1, show_progress=False).root)
    base = digest(sysu_root)
    shared = [name for name in base if name.endswith(".jpg") and name in other]
    assert shared, "the two seeds should share some image paths"
    assert all(base[name] != other[name] for name in shared)


def test_an_identity_does_not_depend_on_the_dataset_size(sysu_root: Path, tmp_path: Path) -> None:
    config = SysuConfig(ids=5, images_per_camera=2, seed=SMALL_SYSU.seed)
    fewer = digest(generate_sysu(tmp_path, config, workers=1, show_progress=False).root)
    images = {name: sha for name, sha in fewer.items() if name.endswith(".jpg")}
    assert images and all(digest(sysu_root)[name] == sha for name, sha in images.items())


def test_regdb_and_scene_are_deterministic(regdb_root: Path, scene_root: Path, tmp_path: Path) -> None:
    regdb = generate_regdb(tmp_path / "regdb", SMALL_REGDB, workers=2, show_progress=False)
    scene = generate_scene(tmp_path / "scene", SMALL_SCENE, workers=2, show_progress=False)
    assert digest(regdb.root) == digest(regdb_root)
    assert digest(scene.root) == digest(scene_root)


# --- SYSU-MM01 layout --------------------------------------------------------------------------------


def test_sysu_layout_is_read_by_the_sysu_reader(sysu_root: Path) -> None:
    assert sorted(p.name for p in sysu_root.iterdir()) == [
        *(f"cam{c}" for c in range(1, 7)),
        "exp",
        "meta.json",
    ]
    data = SysuMM01(sysu_root)
    train, val, test = (set(data.ids(s)) for s in ("train", "val", "test"))
    assert train.isdisjoint(val) and train.isdisjoint(test) and val.isdisjoint(test)
    assert train | val | test == set(range(1, SMALL_SYSU.ids + 1))
    assert (len(test), len(val)) == SMALL_SYSU.split_sizes() == (5, 1)
    assert (sysu_root / "exp" / "test_id.txt").read_text().count("\n") == 1  # one comma-separated line
    query, gallery = data.query("all"), data.gallery("all", trial=0)
    assert set(query.pids) == test and set(query.camids) <= set(INFRARED_CAMERAS)
    assert set(gallery.pids) == test and (gallery.modalities == int(Modality.VISIBLE)).all()
    assert set(data.train_set().pids) == train | val


def test_sysu_every_identity_has_both_modalities(sysu_root: Path) -> None:
    for pid in range(1, SMALL_SYSU.ids + 1):
        cams = {c for c in range(1, 7) if (sysu_root / f"cam{c}" / f"{pid:04d}").is_dir()}
        assert cams & set(VISIBLE_CAMERAS), f"identity {pid} has no visible camera"
        assert cams & set(INFRARED_CAMERAS), f"identity {pid} has no infrared camera"
        for cam in cams:
            files = sorted((sysu_root / f"cam{cam}" / f"{pid:04d}").iterdir())
            assert [f.name for f in files] == ["0001.jpg", "0002.jpg"]


def test_sysu_meta_records_the_settings(sysu_root: Path) -> None:
    meta = json.loads((sysu_root / "meta.json").read_text())
    assert meta["complete"] is True and meta["kind"] == "sysu"
    assert {k: meta[k] for k in ("ids", "seed", "images_per_camera")} == {
        "ids": 15,
        "seed": 3,
        "images_per_camera": 2,
    }
    images = sum(1 for _ in sysu_root.glob("cam*/*/*.jpg"))
    assert meta["files"] == images + 3


@pytest.mark.parametrize("cam", [1, 2, 3, 4, 5, 6])
def test_sysu_infrared_images_have_no_hue(sysu_root: Path, cam: int) -> None:
    for path in sorted(sysu_root.glob(f"cam{cam}/*/*.jpg"))[:6]:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if cam in INFRARED_CAMERAS:
            assert image.ndim == 2, f"{path} should be a one-channel (grey) JPEG"
        else:
            assert image.ndim == 3 and image.shape[2] == 3
            assert np.abs(image.astype(int) - image[..., ::-1]).max() > 20, f"{path} looks grey"


# --- RegDB layout ------------------------------------------------------------------------------------


def test_regdb_layout_is_read_by_the_regdb_reader(regdb_root: Path) -> None:
    data = RegDB(regdb_root)
    everyone = set(range(1, SMALL_REGDB.ids + 1))
    test_sets = []
    for trial in range(1, NUM_SPLITS + 1):
        train = data.split(trial, "train", Modality.VISIBLE)
        test_v = data.split(trial, "test", Modality.VISIBLE)
        test_t = data.split(trial, "test", Modality.INFRARED)
        assert set(train.pids).isdisjoint(test_v.pids) and set(train.pids) | set(test_v.pids) == everyone
        assert len(set(test_v.pids)) == SMALL_REGDB.ids - SMALL_REGDB.ids // 2
        assert list(test_v.pids) == list(test_t.pids)  # same identities, same count in both modalities
        assert all(p.is_file() for p in (*test_v.paths, *test_t.paths))
        assert all(p.parts[-3] == "Thermal" for p in test_t.paths)
        test_sets.append(frozenset(test_v.pids))
    assert len(set(test_sets)) > 1, "the 10 splits should not all be the same"
    assert len(data.train_set(1)) == 2 * (SMALL_REGDB.ids // 2) * SMALL_REGDB.images_per_modality


def test_regdb_thermal_images_are_grey(regdb_root: Path) -> None:
    thermal = sorted(regdb_root.glob("Thermal/*/*.jpg"))
    visible = sorted(regdb_root.glob("Visible/*/*.jpg"))
    assert len(thermal) == len(visible) == SMALL_REGDB.ids * SMALL_REGDB.images_per_modality
    assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape == (128, 64) for p in thermal)
    assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape == (128, 64, 3) for p in visible)


# --- scene videos ------------------------------------------------------------------------------------


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"OpenCV cannot open {path}"
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.mark.parametrize("camera", ["visible", "infrared"])
def test_scene_video_matches_config(scene_root: Path, camera: str) -> None:
    frames = read_video(scene_root / f"{camera}.mp4")
    assert len(frames) == SMALL_SCENE.frames == 20
    assert {f.shape for f in frames} == {(SMALL_SCENE.height, SMALL_SCENE.width, 3)}
    spread = max(int(np.abs(f.astype(int) - f[..., ::-1]).max()) for f in frames)
    if camera == "infrared":
        assert spread <= 6, "infrared frames should be grey up to video-codec chroma error"
    else:
        assert spread > 40


def test_scene_ground_truth(scene_root: Path) -> None:
    truth = json.loads((scene_root / "gt.json").read_text())
    assert truth["format"] == "vireid.synth.scene/1"
    assert (truth["width"], truth["height"], truth["fps"]) == (320, 240, 5)
    assert truth["num_frames"] == SMALL_SCENE.frames and truth["identities"] == [1, 2]
    assert set(truth["cameras"]) == {"visible", "infrared"}
    for name, camera in truth["cameras"].items():
        assert camera["video"] == f"{name}.mp4" and camera["modality"] == name
        assert len(camera["frames"]) == SMALL_SCENE.frames
        seen = set()
        for objects in camera["frames"]:
            for obj in objects:
                x1, y1, x2, y2 = obj["box"]
                assert 0 <= x1 < x2 <= truth["width"] and 0 <= y1 < y2 <= truth["height"], obj
                assert 0.0 <= obj["visibility"] <= 1.0
                seen.add(obj["id"])
        assert seen == set(truth["identities"]), f"{name}: every identity should walk through"


@pytest.mark.parametrize(
    ("width", "height", "difficulty"), [(166, 126, 3.0), (164, 124, 2.0), (326, 244, 0.5)]
)
def test_scene_small_or_odd_scaled_frames(tmp_path: Path, width: int, height: int, difficulty: float) -> None:
    """Infrared frames render at 1/2..1/4 size: small backdrops used to crash (empty random ranges), and
    boxes scaled back up could end 1-2 pixels past the frame (166/4 rounds up to 42 -> 168)."""
    config = SceneConfig(
        seconds=2, people=2, fps=5, width=width, height=height, difficulty=difficulty, seed=12
    )
    root = generate_scene(tmp_path, config, workers=1, show_progress=False).root
    truth = json.loads((root / "gt.json").read_text())
    for camera in truth["cameras"].values():
        assert {f.shape for f in read_video(root / camera["video"])} == {(height, width, 3)}
        for obj in (o for objects in camera["frames"] for o in objects):
            assert (
                0 <= obj["box"][0] < obj["box"][2] <= width and 0 <= obj["box"][1] < obj["box"][3] <= height
            )


# --- config errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "settings", "option"),
    [
        ("sysu", {"ids": 2}, "ids"),
        ("sysu", {"ids": True}, "ids"),
        ("sysu", {"ids": "12"}, "ids"),
        ("sysu", {"seed": -1}, "seed"),
        ("sysu", {"seed": 2**32}, "seed"),
        ("sysu", {"difficulty": 3.5}, "difficulty"),
        ("sysu", {"images_per_camera": 0}, "images_per_camera"),
        ("sysu", {"camera_gap": 0.9}, "camera_gap"),
        ("sysu", {"ids": 12, "test_ids": 11}, "test_ids"),
        ("sysu", {"bogus": 1}, "bogus"),
        ("regdb", {"ids": 1}, "ids"),
        ("regdb", {"difficulty": -0.1}, "difficulty"),
        ("regdb", {"seed": 1.5}, "seed"),
        ("scene", {"seconds": 0.5}, "seconds"),
        ("scene", {"fps": 0}, "fps"),
        ("scene", {"fps": 120}, "fps"),
        ("scene", {"width": 100}, "width"),
        ("scene", {"width": 321}, "even"),
        ("scene", {"difficulty": "hard"}, "difficulty"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_option(
    tmp_path: Path, kind: str, settings: dict, option: str
) -> None:
    with pytest.raises(ConfigError, match=option):
        generate(kind, tmp_path / "out", show_progress=False, **settings)
    assert not (tmp_path / "out").exists(), "nothing should be written for invalid settings"


def test_unknown_kind_and_bad_workers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'market'.*sysu, regdb, scene"):
        generate("market", tmp_path / "out")
    with pytest.raises(ConfigError, match="workers"):
        generate("sysu", tmp_path / "out", workers=0, ids=3, images_per_camera=1, show_progress=False)


# --- output folder policy ----------------------------------------------------------------------------


def test_folder_policy_reuse_refuse_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    small = {"ids": 5, "images_per_camera": 1, "seed": 0}
    with pytest.raises(DatasetError, match="not empty"):
        generate("sysu", root, workers=1, show_progress=False, **small)
    first = generate("sysu", root, workers=1, overwrite=True, show_progress=False, **small)
    assert not first.reused and (root / "notes.txt").read_text() == "mine"
    before = digest(root)

    again = generate("sysu", root, workers=1, show_progress=False, **small)
    assert again.reused and again.files == first.files and digest(root) == before

    with pytest.raises(DatasetError, match=r"seed=0 \(asked 1\).*--overwrite"):
        generate("sysu", root, workers=1, show_progress=False, **{**small, "seed": 1})
    assert digest(root) == before

    fewer = generate("sysu", root, workers=1, overwrite=True, show_progress=False, **{**small, "ids": 4})
    assert not fewer.reused and (root / "notes.txt").read_text() == "mine"
    assert not list(root.glob("cam*/0005")), "overwrite must remove what the previous run wrote"
    assert json.loads((root / "meta.json").read_text())["ids"] == 4


def test_a_set_rendered_with_other_library_versions_is_reused_with_a_warning(tmp_path: Path, caplog) -> None:
    """Equal settings give other bytes under another numpy or OpenCV: meta.json records both."""
    import logging

    import cv2

    root = tmp_path / "data"
    small = {"ids": 5, "images_per_camera": 1, "seed": 0}
    generate("sysu", root, workers=1, show_progress=False, **small)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["libraries"] == {"numpy": np.__version__, "opencv": cv2.__version__}
    meta["libraries"] = {"numpy": "1.24.4", "opencv": "4.8.1"}
    (root / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        assert generate("sysu", root, workers=1, show_progress=False, **small).reused
    assert "rendered with {'numpy': '1.24.4', 'opencv': '4.8.1'}" in caplog.text


def test_a_set_of_another_kind_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    """--overwrite removes only the generator's own folders of the asked kind: a RegDB set written over a
    SYSU one would leave both layouts mixed in one folder."""
    generate("sysu", tmp_path, workers=1, show_progress=False, ids=3, images_per_camera=1)
    before = digest(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(DatasetError, match="holds a sysu dataset; write the regdb set to another folder"):
            generate("regdb", tmp_path, workers=1, overwrite=overwrite, show_progress=False, ids=3)
    assert digest(tmp_path) == before
    (tmp_path / "meta.json").unlink()  # an interrupted run: meta.json is written last
    with pytest.raises(DatasetError, match="holds a sysu dataset"):
        generate("regdb", tmp_path, workers=1, overwrite=True, show_progress=False, ids=3)
    assert not (tmp_path / "Visible").exists()


def test_a_set_of_another_generator_version_is_refused_and_its_difference_named(tmp_path: Path) -> None:
    small = SysuConfig(ids=4, images_per_camera=1)
    generate_sysu(tmp_path, small, workers=1, show_progress=False)
    assert other_settings(tmp_path, small.to_meta()) is None
    assert other_settings(tmp_path / "missing", small.to_meta()) is None
    assert other_settings(tmp_path, SysuConfig(ids=5, images_per_camera=1).to_meta()) == "ids=4 (asked 5)"
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "version": "0"}))
    assert other_settings(tmp_path, small.to_meta()) == f"version='0' (asked '{GENERATOR_VERSION}')"
    with pytest.raises(DatasetError, match=rf"version='0' \(asked '{GENERATOR_VERSION}'\)"):
        generate_sysu(tmp_path, small, workers=1, show_progress=False)
    generate_sysu(tmp_path, small, workers=1, overwrite=True, show_progress=False)
    assert other_settings(tmp_path, small.to_meta()) is None
    (tmp_path / "meta.json").unlink()  # unfinished: not a set to regenerate unasked
    assert other_settings(tmp_path, small.to_meta()) is None


def test_unfinished_run_is_not_reused(tmp_path: Path) -> None:
    small = {"ids": 4, "images_per_camera": 1}
    generate("sysu", tmp_path, workers=1, show_progress=False, **small)
    (tmp_path / "meta.json").unlink()  # as if interrupted before the last step
    with pytest.raises(DatasetError, match="interrupted"):
        generate("sysu", tmp_path, workers=1, show_progress=False, **small)


def test_out_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        generate("regdb", target, ids=2, images_per_modality=1, show_progress=False)


# --- baselines ---------------------------------------------------------------------------------------


def test_baseline_features_are_normalised_and_colour_blind_on_grey() -> None:
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (150, 70, 3), dtype=np.uint8) for _ in range(3)]
    for features in (colour_histogram_features, raw_pixel_features):
        rows = features(crops)
        assert rows.shape == (3, 512) and rows.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
        assert features([]).shape == (0, 512)
    grey = np.repeat(rng.integers(0, 256, (150, 70, 1), dtype=np.uint8), 3, axis=2)
    hist = colour_histogram_features([grey])[0].reshape(8, 8, 8)
    off_diagonal = hist.copy()
    off_diagonal[np.arange(8), np.arange(8), np.arange(8)] = 0
    assert off_diagonal.max() == 0, "a grey crop only fills the R=G=B bins: no colour to match on"


def test_untrained_matchers_fail_across_modalities_only(tmp_path: Path) -> None:
    """The dataset's point: colour and pixels identify people within the visible modality, not across."""
    config = SysuConfig(ids=60, images_per_camera=3, test_ids=40, seed=2)
    generate_sysu(tmp_path, config, workers=2, show_progress=False)
    report = baseline_report(tmp_path, trials=3)
    assert isinstance(report, BaselineReport) and [s.matcher for s in report.scores] == [
        "colour-histogram",
        "raw-pixel",
    ]
    colour, pixels = report["colour-histogram"], report["raw-pixel"]
    assert colour.cross["R1"] <= 0.2 and pixels.cross["R1"] <= 0.2
    assert colour.within["R1"] >= 0.3 and colour.within["R1"] >= colour.cross["R1"] + 0.2
    assert pixels.within["R1"] >= pixels.cross["R1"] + 0.05
    table = report.table()
    assert "colour-histogram" in table and "IR->VIS R1" in table
    assert json.loads(json.dumps(report.to_dict()))["trials"] == 3


def test_baseline_report_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trials"):
        baseline_report(tmp_path, trials=0)
    with pytest.raises(DatasetError, match="camera folders missing"):
        baseline_report(tmp_path)


def test_scene_boxes_scale_by_the_rendered_size_not_the_nominal_resolution() -> None:
    """At difficulty 2 the infrared camera renders 213 px for a 640 px frame: boxes were scaled x3,
    the video x3.005, so a person at the right edge ended at 639 in infrared and 640 in visible."""
    import types

    from vireid.training.data.synth.scene import _ground_truth

    owner = np.full((160, 213), -1, np.int16)
    owner[40:150, 190:213] = 0
    mask = np.ones((110, 23), bool)
    scales = (640 / 213, 480 / 160)
    truth = _ground_truth(types.SimpleNamespace(pid=7), mask, 190, 40, owner, 0, scales, (640, 480))
    assert truth is not None and truth["box"][2] == 640 and truth["id"] == 7
