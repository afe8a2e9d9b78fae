"""Bad dataset layouts are caught early and named with their fix (from a review of the SYSU-MM01 and
RegDB readers): every RegDB split the run reads is checked before anything is embedded, an empty SYSU
query set or gallery before a model loads, the dataset one folder down or in the wrong case is named,
an id file with a byte-order mark is read, and "no images" says where images belong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from layouts import make_regdb, make_sysu

from vireid import DatasetError
from vireid.training.data.protocols import check_dataset, run_protocol
from vireid.training.data.regdb import RegDB
from vireid.training.data.sysu import SysuMM01


class Recorder:
    """An embed function that records its calls (to prove a failure came before any embedding)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, paths, modality):
        import numpy as np

        self.calls.append(len(paths))
        return np.eye(len(paths), 16, dtype=np.float32) + 1.0


@pytest.mark.parametrize("protocol", ["regdb-v2t", "regdb-t2v"])
def test_a_missing_regdb_split_file_is_found_before_anything_is_embedded(
    tmp_path: Path, protocol: str
) -> None:
    root = make_regdb(tmp_path / "regdb")
    (root / "idx" / "test_thermal_7.txt").unlink()
    with pytest.raises(DatasetError, match=r"idx/test_thermal_7\.txt: split index file is missing"):
        check_dataset(root, protocol)  # the default trials: splits 1..10, as run_protocol's
    check_dataset(root, protocol, trials=[1, 2, 3])  # only the splits a run asks for are read
    embed = Recorder()
    with pytest.raises(DatasetError, match=r"test_thermal_7\.txt"):
        run_protocol(embed, root, protocol, trials=10)
    assert embed.calls == []  # splits 1..6 were not embedded first


def test_a_malformed_regdb_split_file_fails_in_check_dataset(tmp_path: Path) -> None:
    root = make_regdb(tmp_path / "regdb")
    (root / "idx" / "test_visible_10.txt").write_text("Visible/1/v_1_0.jpg\n")
    with pytest.raises(DatasetError, match=r"test_visible_10\.txt: line 1: expected 'RELATIVE/PATH LABEL'"):
        check_dataset(root, "regdb-t2v", trials=10)


def test_check_dataset_refuses_an_empty_sysu_query_set_or_the_protocols_gallery(tmp_path: Path) -> None:
    no_infrared = make_sysu(tmp_path / "no-infrared")
    for cam in ("cam3", "cam6"):
        shutil.rmtree(no_infrared / cam)
        (no_infrared / cam).mkdir()
    with pytest.raises(DatasetError, match="no infrared test images under cam3/ or cam6/"):
        check_dataset(no_infrared, "sysu-all")
    no_indoor = make_sysu(tmp_path / "no-indoor")
    for cam in ("cam1", "cam2"):  # indoor search's gallery is empty, all-search's is not
        shutil.rmtree(no_indoor / cam)
        (no_indoor / cam).mkdir()
    check_dataset(no_indoor, "sysu-all", shots=10)
    with pytest.raises(DatasetError, match="no visible test images under cam1/, cam2/ for"):
        check_dataset(no_indoor, "sysu-indoor")
    embed = Recorder()
    with pytest.raises(DatasetError, match="no visible test images"):
        run_protocol(embed, no_indoor, "sysu-indoor", trials=2)
    assert embed.calls == []


@pytest.mark.parametrize(
    ("make", "inner", "described"),
    [(make_sysu, "ori_data", "cam1..cam6"), (make_regdb, "RegDB", "Visible/, Thermal/ and idx/")],
)
def test_a_dataset_one_folder_down_is_named_with_the_data_to_pass(
    tmp_path: Path, make, inner: str, described: str
) -> None:
    root = tmp_path / "download"
    make(root / inner)
    (root / "README").mkdir()  # another subfolder, without the layout
    reader = SysuMM01 if make is make_sysu else RegDB
    with pytest.raises(DatasetError) as info:
        reader(root)
    assert f"found {described} under {root / inner}; pass --data {root / inner}" in str(info.value)
    assert "Expected layout" in str(info.value)
    shutil.rmtree(root / inner / ("cam3" if make is make_sysu else "idx"))  # an incomplete copy: no hint
    with pytest.raises(DatasetError) as info:
        reader(root)
    assert "pass --data" not in str(info.value)


@pytest.mark.parametrize(
    ("dataset", "rename", "message"),
    [
        ("sysu", {"cam1": "Cam1"}, r"camera folders missing: cam1; found Cam1/; rename it cam1/"),
        ("sysu", {"cam1": "Cam1", "cam6": "CAM6"}, r"found Cam1/, CAM6/; rename them cam1/, cam6/"),
        ("sysu", {"exp": "Exp"}, r"train_id\.txt: identity list is missing; found Exp/; rename it exp/"),
        ("sysu", {"exp/val_id.txt": "exp/Val_id.txt"}, r"found Val_id\.txt; rename it val_id\.txt"),
        (
            "regdb",
            {"Visible": "visible", "Thermal": "thermal"},
            r"found visible/, thermal/; rename them Visible/, Thermal/",
        ),
        ("regdb", {"idx": "IDX"}, r"folders missing: idx; found IDX/; rename it idx/"),
    ],
)
def test_folders_and_files_in_another_case_are_named(
    tmp_path: Path, dataset: str, rename: dict[str, str], message: str
) -> None:
    make, reader = (make_sysu, SysuMM01) if dataset == "sysu" else (make_regdb, RegDB)
    root = make(tmp_path / dataset)
    for old, new in rename.items():
        (root / old).rename(root / new)
    with pytest.raises(DatasetError, match=message):
        reader(root)


def test_a_regdb_split_file_in_another_case_is_named(tmp_path: Path) -> None:
    root = make_regdb(tmp_path / "regdb")
    (root / "idx" / "test_visible_2.txt").rename(root / "idx" / "Test_Visible_2.txt")
    with pytest.raises(DatasetError, match=r"found Test_Visible_2\.txt; rename it test_visible_2\.txt"):
        check_dataset(root, "regdb-v2t", trials=[2])


def test_id_and_index_files_with_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    root = make_sysu(tmp_path / "sysu")
    (root / "exp" / "test_id.txt").write_text("\ufeff5,6,7,8\r\n", encoding="utf-8")  # as Notepad saves it
    assert SysuMM01(root).ids("test") == [5, 6, 7, 8]
    regdb = make_regdb(tmp_path / "regdb")
    index = regdb / "idx" / "test_visible_1.txt"
    plain = RegDB(regdb).split(1, "test", "visible")
    index.write_text("\ufeff" + index.read_text(), encoding="utf-8")
    assert RegDB(regdb).split(1, "test", "visible").paths == plain.paths


def test_sysu_without_images_says_what_an_id_folder_holds_and_where_images_go(tmp_path: Path) -> None:
    root = make_sysu(tmp_path / "tif")
    for cam in ("cam3", "cam6"):  # images saved in a format the reader does not take
        for image in (root / cam).glob("*/*.jpg"):
            image.rename(image.with_suffix(".tif"))
    with pytest.raises(DatasetError) as info:
        SysuMM01(root).query()
    text = str(info.value)
    assert (
        "no infrared test images under cam3/ or cam6/ for exp/test_id.txt; cam3/0005/ holds no image " in text
    )
    assert "(.bmp, .jpeg, .jpg, .png), only " in text and "(e.g. 0001.tif)" in text
    assert "Expected layout" in text and "cam1/0001/0001.jpg" in text
    no_folders = make_sysu(tmp_path / "no-folders")
    for cam in ("cam1", "cam2", "cam4", "cam5"):
        shutil.rmtree(no_folders / cam)
        (no_folders / cam).mkdir()
    with pytest.raises(
        DatasetError, match=r"none of the listed ids has a folder in cam1/ or cam2/ .*cam1/0005/0001"
    ):
        SysuMM01(no_folders).gallery("indoor")
    empty = make_sysu(tmp_path / "empty")
    for image in empty.glob("cam*/*/*.jpg"):
        image.unlink()
    with pytest.raises(
        DatasetError, match=r"exp/val_id\.txt; the id folders are empty \(e\.g\. cam1/0001/\)"
    ):
        SysuMM01(empty).train_set()
