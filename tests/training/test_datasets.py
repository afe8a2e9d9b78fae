from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import numpy as np
import pytest
from layouts import make_regdb, make_sysu

from vireid import DatasetError, Modality
from vireid.training.data.protocols import Protocol, run_protocol
from vireid.training.data.regdb import RegDB
from vireid.training.data.sysu import SysuMM01


def reference_gallery(data_path: str, mode: str, trial: int) -> list[str]:
    """The reference code's single-shot gallery sampler, as string paths."""
    random.seed(trial)
    cameras = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    with open(os.path.join(data_path, "exp/test_id.txt")) as fh:
        ids = [f"{int(y):04d}" for y in fh.read().splitlines()[0].split(",")]
    files = []
    for pid in sorted(ids):
        for cam in cameras:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                files.append(random.choice(sorted(img_dir + "/" + i for i in os.listdir(img_dir))))
    return files


def reference_query(data_path: str) -> list[str]:
    with open(os.path.join(data_path, "exp/test_id.txt")) as fh:
        ids = [f"{int(y):04d}" for y in fh.read().splitlines()[0].split(",")]
    files = []
    for pid in sorted(ids):
        for cam in ("cam3", "cam6"):
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                files.extend(sorted(img_dir + "/" + i for i in os.listdir(img_dir)))
    return files


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("trial", [0, 1, 7])
def test_sysu_gallery_matches_reference_sampler(tmp_path: Path, mode: str, trial: int) -> None:
    root = make_sysu(tmp_path / "sysu", seed=trial)
    gallery = SysuMM01(root).gallery(mode, trial)
    assert [str(p) for p in gallery.paths] == reference_gallery(str(root), mode, trial)
    assert set(gallery.camids) <= ({1, 2, 4, 5} if mode == "all" else {1, 2})
    assert (gallery.modalities == int(Modality.VISIBLE)).all()
    assert all(int(p.parent.name) == pid for p, pid in zip(gallery.paths, gallery.pids, strict=True))


def test_sysu_query_and_train_sets(tmp_path: Path) -> None:
    data = SysuMM01(make_sysu(tmp_path / "sysu"))
    query = data.query("all")
    assert [str(p) for p in query.paths] == reference_query(str(data.root))
    assert set(query.camids) == {3, 6} and (query.modalities == 1).all()
    assert data.query("indoor").paths == query.paths  # both modes query cam3 and cam6
    train = data.train_set()
    assert set(train.pids) == {1, 2, 3, 4}  # train + val, as the reference trains
    assert set(train.modalities) == {0, 1}


def test_test_ids_without_infrared_images_are_reported_not_silently_dropped(tmp_path: Path, caplog) -> None:
    root = make_sysu(tmp_path / "sysu")
    (root / "exp" / "test_id.txt").write_text("5,6,7,8,42\n")  # 42 has no folder at all
    with caplog.at_level("WARNING", logger="vireid.data"):
        query = SysuMM01(root).query()
    assert 42 not in query.pids
    assert (
        "1 of the 5 ids in exp/test_id.txt have no infrared image under cam3/ or cam6/ (0042)" in caplog.text
    )


def test_sysu_multi_shot_draws_ten_different_images_per_camera_reproducibly(tmp_path: Path) -> None:
    root = make_sysu(tmp_path / "sysu", per_cam=14)
    data = SysuMM01(root)
    first, again = data.gallery("all", 3, shots=10), data.gallery("all", 3, shots=10)
    assert first.paths == again.paths
    assert len(set(first.paths)) == len(first.paths)  # never the same image twice (it counted twice)
    pairs = list(zip(first.pids.tolist(), first.camids.tolist(), strict=True))
    held = {pair: len(list((root / f"cam{pair[1]}" / f"{pair[0]:04d}").iterdir())) for pair in set(pairs)}
    assert all(pairs.count(pair) == min(10, n) for pair, n in held.items())
    assert any(n < 10 for n in held.values()) and any(n > 10 for n in held.values())  # both cases hit
    assert data.gallery("all", 4, shots=10).paths != first.paths


@pytest.mark.parametrize("shots", [1, 10])
def test_sysu_gallery_draws_leave_the_global_random_states_alone(tmp_path: Path, shots: int) -> None:
    data = SysuMM01(make_sysu(tmp_path / "sysu", per_cam=14))
    random.seed(123)
    np.random.seed(123)
    expected = random.random(), np.random.random()
    random.seed(123)
    np.random.seed(123)
    first = data.gallery("all", 0, shots=shots)
    assert (random.random(), np.random.random()) == expected
    random.seed(7)
    np.random.seed(7)  # a caller's seeding does not change the trial's draw either
    assert data.gallery("all", 0, shots=shots).paths == first.paths


def test_sysu_bad_trial_and_search_mode_are_dataset_errors(tmp_path: Path) -> None:
    data = SysuMM01(make_sysu(tmp_path / "sysu"))
    with pytest.raises(DatasetError, match="trial must be between 0 and 2\\*\\*32 - 1"):
        data.gallery("all", -1)
    with pytest.raises(DatasetError, match="search mode 'outdoor' is not one of all, indoor"):
        data.query("outdoor")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: __import__("shutil").rmtree(r / "cam3"), "camera folders missing: cam3"),
        (lambda r: (r / "exp" / "test_id.txt").unlink(), "identity list is missing"),
        (lambda r: (r / "exp" / "train_id.txt").write_text("one;two\n"), "comma-separated integer ids"),
        (lambda r: (r / "exp" / "val_id.txt").write_text(""), "comma-separated integer ids"),
        (
            lambda r: (r / "exp" / "val_id.txt").write_text("4,5\n"),
            r"1 identity is in both val_id.txt and test_id.txt \(5\)",
        ),
        (lambda r: (r / "exp" / "test_id.txt").write_text("5,6\n7,8\n"), "ids after the first line"),
    ],
)
def test_sysu_bad_layout_names_path_and_expected_layout(tmp_path: Path, damage, message: str) -> None:
    root = make_sysu(tmp_path / "sysu")
    damage(root)
    with pytest.raises(DatasetError, match=message) as info:
        SysuMM01(root)
    assert str(root) in str(info.value) and "Expected layout" in str(info.value)


def test_a_folder_of_the_other_layout_or_unpadded_ids_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="looks like a RegDB folder"):
        SysuMM01(make_regdb(tmp_path / "regdb"))
    with pytest.raises(DatasetError, match="looks like a SYSU-MM01 folder"):
        RegDB(make_sysu(tmp_path / "sysu"))
    root = make_sysu(tmp_path / "unpadded")
    for cam in range(1, 7):
        for folder in (root / f"cam{cam}").iterdir():
            folder.rename(folder.with_name(str(int(folder.name))))
    with pytest.raises(DatasetError, match=r"four digits \(cam1/0001\), found cam1/1"):
        SysuMM01(root).train_set()
    one = make_sysu(tmp_path / "one-unpadded")  # one folder renamed: its images must not just go missing
    pid = SysuMM01(one).ids("test")[0]
    (one / "cam3" / f"{pid:04d}").rename(one / "cam3" / str(pid))
    with pytest.raises(DatasetError, match=rf"four digits \(cam3/{pid:04d}\), found cam3/{pid}; rename"):
        SysuMM01(one).query()


def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        SysuMM01(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="does not exist"):
        RegDB(tmp_path / "nowhere")


def test_regdb_splits(tmp_path: Path) -> None:
    data = RegDB(make_regdb(tmp_path / "regdb"))
    for trial in (1, 10):
        vis, ir = data.split(trial, "test", "visible"), data.split(trial, "test", "thermal")
        assert set(vis.pids) == set(ir.pids) and len(vis) == len(ir) == 8
        assert (ir.modalities == 1).all() and all(p.is_file() for p in vis.paths)
        train = data.train_set(trial)
        assert not set(train.pids) & set(vis.pids)
    with pytest.raises(DatasetError, match=r"1\.\.10"):
        data.split(11, "test", "visible")


def test_regdb_malformed_and_escaping_index_lines(tmp_path: Path) -> None:
    root = make_regdb(tmp_path / "regdb")
    (root / "idx" / "test_visible_2.txt").write_text("Visible/1/v_1_0.jpg\n")
    with pytest.raises(DatasetError, match="line 1: expected 'RELATIVE/PATH LABEL'"):
        RegDB(root).split(2, "test", "visible")
    for trial, line in ((3, "../../etc/passwd 1"), (4, "/etc/passwd 1"), (5, "Visible/../../x.jpg 1")):
        (root / "idx" / f"test_visible_{trial}.txt").write_text(line + "\n")
        with pytest.raises(DatasetError, match="leaves the dataset folder"):
            RegDB(root).split(trial, "test", "visible")


def test_regdb_index_naming_missing_images_is_refused_when_read(tmp_path: Path) -> None:
    root = make_regdb(tmp_path / "regdb")
    (root / "idx" / "test_thermal_1.txt").write_text("Thermal/1/t_1_0.jpg 0\nThermal/9/gone.jpg 1\n")
    with pytest.raises(
        DatasetError, match=r"1 of the 2 images it lists are not under .*\(Thermal/9/gone.jpg\)"
    ):
        RegDB(root).split(1, "test", "thermal")


def test_regdb_with_symlinked_folders_is_read(tmp_path: Path) -> None:
    """Datasets often live elsewhere behind symlinks; the escape check used to refuse those."""
    store = make_regdb(tmp_path / "store")
    root = tmp_path / "regdb"
    root.mkdir()
    for child in store.iterdir():
        (root / child.name).symlink_to(child, target_is_directory=child.is_dir())
    assert len(RegDB(root).split(1, "test", "visible")) == len(RegDB(store).split(1, "test", "visible")) > 0


def _oracle(paths, modality):
    """Embeds the identity read from the folder name: a perfect matcher."""
    vectors = np.zeros((len(paths), 16), np.float32)
    vectors[np.arange(len(paths)), [int(Path(p).parent.name) for p in paths]] = 1.0
    return vectors


def test_protocol_runner_with_perfect_matcher(tmp_path: Path) -> None:
    calls: list[int] = []

    def counting(paths, modality):
        calls.append(len(paths))
        return _oracle(paths, modality)

    result = run_protocol(counting, make_sysu(tmp_path / "sysu"), "sysu-all", trials=3)
    assert len(result.trials) == 3 and result.mean()["R1"] == 1.0 and result.mean()["mAP"] == 1.0
    assert len(calls) == 2  # query once, the union of the three galleries once
    regdb = run_protocol(_oracle, make_regdb(tmp_path / "regdb"), Protocol.REGDB_T2V, trials=2)
    assert regdb.mean()["R1"] == 1.0 and [t.trial for t in regdb.trials] == [1, 2]
    payload = result.to_dict()
    assert payload["protocol"] == "sysu-all" and len(payload["cmc"]) == 20 and len(payload["trials"]) == 3
    assert "R1" in result.table() and "100.00" in result.table()
    trial = result.trials[0]
    ids = len({int(Path(p).parent.name) for p in SysuMM01(tmp_path / "sysu").query("all").paths})
    assert trial.num_gallery_ids == ids and payload["trials"][0]["num_gallery_ids"] == ids
    assert f"{trial.num_query} queries against {trial.num_gallery} gallery images of {ids} identities" in (
        result.table()
    )


def test_protocol_runner_refuses_non_finite_embeddings_and_empty_or_bad_trials(tmp_path: Path) -> None:
    from vireid import ArtifactError, ConfigError

    root = make_sysu(tmp_path / "sysu")

    def overflowing(paths, modality):
        vectors = _oracle(paths, modality)
        vectors[1] = np.nan  # an FP16 artifact that overflowed on one image
        return vectors

    with pytest.raises(
        ArtifactError, match=r"zero, NaN or infinite embeddings for 1 of \d+ visible images \(first: .*cam1"
    ):
        run_protocol(overflowing, root, "sysu-all", trials=1)

    def all_zero(paths, modality):  # a broken artifact: ranks by tie order would look like a score
        return np.zeros_like(_oracle(paths, modality))

    with pytest.raises(ArtifactError, match=r"zero, NaN or infinite embeddings for \d+ of \d+"):
        run_protocol(all_zero, root, "sysu-all", trials=1)

    def noisy(paths, modality, scaled=False):  # vectors of any length are ranked as cosines
        rows = [np.random.default_rng(zlib.crc32(str(p).encode())) for p in paths]
        vectors = _oracle(paths, modality) + np.stack([r.normal(0, 0.4, 16) for r in rows]).astype(np.float32)
        return vectors * np.array([[r.uniform(0.1, 10)] for r in rows], np.float32) if scaled else vectors

    plain = run_protocol(noisy, root, "sysu-all", trials=2).mean()
    assert run_protocol(lambda p, m: noisy(p, m, scaled=True), root, "sysu-all", trials=2).mean() == plain
    with pytest.raises(ConfigError, match="trials is empty"):
        run_protocol(_oracle, root, "sysu-all", trials=[])
    with pytest.raises(ConfigError, match="SYSU trials are seeds"):
        run_protocol(_oracle, root, "sysu-all", trials=[-1])
    with pytest.raises(ConfigError, match="max_rank must be >= 1"):
        run_protocol(_oracle, root, "sysu-all", trials=1, max_rank=0)


def test_check_dataset_refuses_layout_and_shots_the_protocol_cannot_run(tmp_path: Path) -> None:
    from vireid import ConfigError
    from vireid.training.data.protocols import check_dataset

    sysu, regdb = make_sysu(tmp_path / "sysu"), make_regdb(tmp_path / "regdb")
    check_dataset(sysu, "sysu-all", 10)
    check_dataset(regdb, "regdb-t2v", 1)
    with pytest.raises(ConfigError, match="RegDB has no multi-shot protocol"):
        check_dataset(regdb, "regdb-t2v", 10)
    with pytest.raises(DatasetError, match="this looks like a SYSU-MM01 folder"):
        check_dataset(sysu, "regdb-v2t")


def test_protocol_runner_on_the_val_identities_for_validation(tmp_path: Path) -> None:
    root = make_sysu(tmp_path / "sysu", train=(1, 2), val=(3, 4), test=(5, 6, 7, 8))
    seen: set[int] = set()

    def recording(paths, modality):
        seen.update(int(Path(p).parent.name) for p in paths)
        return _oracle(paths, modality)

    result = run_protocol(recording, root, "sysu-all", trials=2, split="val")
    assert seen == {3, 4} and result.mean()["R1"] == 1.0
    assert set(SysuMM01(root).train_set(with_val=False).pids.tolist()) == {1, 2}
    assert set(SysuMM01(root).train_set().pids.tolist()) == {1, 2, 3, 4}
    from vireid import ConfigError

    with pytest.raises(ConfigError, match="RegDB protocols run on a split's test identities"):
        run_protocol(_oracle, make_regdb(tmp_path / "regdb"), "regdb-v2t", trials=1, split="val")
    with pytest.raises(DatasetError, match="test or val identities, not 'train'"):
        run_protocol(_oracle, root, "sysu-all", trials=1, split="train")


def test_protocol_runner_with_random_matcher_and_bad_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def noise(paths, modality):
        v = rng.normal(size=(len(paths), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    result = run_protocol(noise, make_sysu(tmp_path / "sysu"), "sysu-indoor", trials=2)
    assert result.mean()["R1"] < 0.6 and result.std()["mAP"] > 0.0  # near chance; trials draw apart
    from vireid import ConfigError

    with pytest.raises(ConfigError, match="sysu-all, sysu-indoor, regdb-v2t, regdb-t2v"):
        run_protocol(noise, tmp_path, "market1501")
