"""Config, sampler, augmentation and checkpoint: the trainer's parts that need no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vireid import ArtifactError, ConfigError
from vireid.training.augment import augment
from vireid.training.checkpoint import load_checkpoint, save_checkpoint
from vireid.training.config import AugmentConfig, TrainConfig
from vireid.training.sampler import CrossModalIdentitySampler
from vireid.training.schedule import lr_factor


def test_config_round_trip_and_overrides(tmp_path: Path) -> None:
    cfg = TrainConfig()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: baseline}\noptim: {lr: 0.05, milestones: [3, 6]}\n")
    loaded = TrainConfig.from_yaml(path)
    assert loaded.optim.lr == 0.05 and loaded.optim.milestones == (3, 6)
    assert loaded.with_overrides({"loss.mecen.exp": False}).loss.mecen.exp is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optim": {"lrr": 0.1}}, "unknown key 'optim.lrr'"),
        ({"optim": {"lr": "fast"}}, "optim.lr must be float"),
        ({"loss": {"mecen": {"exp": "yes"}}}, "loss.mecen.exp must be bool"),
        ({"sampler": {"num_ids": 1}}, "sampler.num_ids must be >= 2"),
        ({"augment": {"flip": 1.5}}, "augment.flip must be a probability"),
        ({"augment": {"intensity_remap": -0.1}}, "augment.intensity_remap must be a probability"),
        ({"data": {"dataset": "market"}}, "data.dataset must be 'sysu' or 'regdb'"),
        ({"optim": {"milestones": [50, 20]}}, "optim.milestones must be increasing"),
        ({"model": {"backbone": "resnet50"}}, "model must be a mapping with 'name'"),
        ({"optim": 3}, "optim. must be a mapping|optim must be a mapping"),
        ({"data": {"val_split": "train"}}, "data.val_split must be one of"),
        ({"data": {"dataset": "regdb", "val_split": "val"}}, "data.val_split must be test for RegDB"),
        ({"data": {"dataset": "sysu", "regdb_trial": 3}}, "data.regdb_trial must be left at 1 for SYSU"),
        # out of range: a negative clip reversed the gradients, a negative gamma the learning rate
        ({"optim": {"grad_clip": -1}}, "optim.grad_clip must be >= 0"),
        ({"optim": {"gamma": -1}}, "optim.gamma must be > 0"),
        ({"optim": {"momentum": -0.5}}, "optim.momentum must be >= 0"),
        ({"optim": {"weight_decay": -1}}, "optim.weight_decay must be >= 0"),
        ({"run": {"log_every": 0}}, "run.log_every must be >= 1"),
        ({"run": {"eval_batch": 0}}, "run.eval_batch must be >= 1"),
        ({"run": {"threads": -2}}, "run.threads must be >= 0"),
        ({"data": {"val_protocol": "sysu_all"}}, "data.val_protocol must be one of sysu-all, sysu-indoor"),
        (
            {"data": {"dataset": "regdb", "val_protocol": "sysu-all"}},
            "data.val_protocol must be one of regdb-v2t",
        ),
        ({"optim": {"lr": "1e-3"}}, r"YAML reads 1e-3 as text: write 1\.0e-3"),
    ],
)
def test_config_errors_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(data)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        TrainConfig.from_yaml(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.from_yaml(bad)


def test_bundled_configs_are_found_by_name_from_any_folder(tmp_path: Path, monkeypatch) -> None:
    """After `pip install`, there is no configs/ folder: the docs' `--config configs/demo_cpu.yaml` and
    the plain name find the copy shipped inside the package. (That the wheel holds the YAML files is
    pyproject's package-data; under this editable install the package folder is the repository's.)"""
    repo = Path(__file__).resolve().parents[2] / "configs"
    monkeypatch.chdir(tmp_path)  # no configs/ here
    expected = TrainConfig.from_yaml(repo / "demo_cpu.yaml")
    for name in ("demo_cpu", "demo_cpu.yaml", "configs/demo_cpu.yaml"):
        assert TrainConfig.from_yaml(name) == expected
    with pytest.raises(ConfigError, match="bundled config: demo_cpu, mpanet_sysu"):
        TrainConfig.from_yaml("elsewhere/demo_cpu.yaml")  # a real path is never swapped for the bundled one
    import importlib.resources

    def not_installed(name: str):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", not_installed)  # an install from before the configs
    with pytest.raises(ConfigError, match=r"bundled config: \(none installed\)"):
        TrainConfig.from_yaml("demo_cpu")


def test_lr_schedule_warms_up_then_steps() -> None:
    cfg = TrainConfig.from_dict({"optim": {"warmup_epochs": 10, "milestones": [20, 50], "gamma": 0.1}})
    assert lr_factor(0.0, cfg) == pytest.approx(0.001)
    assert lr_factor(5.0, cfg) == pytest.approx(0.5)
    assert lr_factor(10.0, cfg) == 1.0 and lr_factor(19.9, cfg) == 1.0
    assert lr_factor(20.0, cfg) == pytest.approx(0.1) and lr_factor(60, cfg) == pytest.approx(0.01)


def test_cosine_schedule_warms_up_then_falls_to_zero_at_the_last_epoch() -> None:
    cfg = TrainConfig.from_dict({"optim": {"warmup_epochs": 1, "epochs": 41, "schedule": "cosine"}})
    assert lr_factor(0.5, cfg) == pytest.approx(0.5)  # warm-up as for steps
    assert lr_factor(1.0, cfg) == 1.0 and lr_factor(21.0, cfg) == pytest.approx(0.5)
    assert lr_factor(41.0, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(50.0, cfg) == lr_factor(41.0, cfg)
    with pytest.raises(ConfigError, match=r"optim\.schedule"):
        TrainConfig.from_dict({"optim": {"schedule": "linear"}})
    with pytest.raises(ConfigError, match=r"optim\.warmup_epochs"):  # all warm-up, no decay
        TrainConfig.from_dict({"optim": {"schedule": "cosine", "epochs": 3, "warmup_epochs": 5}})


def _labels(num_ids: int = 6) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(num_ids), 5)
    modalities = np.tile([0, 0, 0, 1, 1], num_ids)
    return labels, modalities


def test_sampler_batches_are_aligned_halves() -> None:
    labels, modalities = _labels()
    sampler = CrossModalIdentitySampler(labels, modalities, num_ids=4, num_instances=3, seed=1)
    for batch in sampler.epoch(1):
        half = len(batch.indices) // 2
        assert len(batch.indices) == sampler.batch_size == 24
        assert (modalities[batch.indices[:half]] == 0).all() and (modalities[batch.indices[half:]] == 1).all()
        assert (labels[batch.indices] == batch.labels).all()
        assert (batch.labels[:half] == batch.labels[half:]).all()
        assert len(set(batch.labels[:half])) == 4
    first = [b.indices.tolist() for b in sampler.epoch(2)]
    assert first == [b.indices.tolist() for b in sampler.epoch(2)]
    assert first != [b.indices.tolist() for b in sampler.epoch(3)]
    other_rank = CrossModalIdentitySampler(labels, modalities, 4, 3, seed=1, rank=1)
    assert first != [b.indices.tolist() for b in other_rank.epoch(2)]


def test_sampler_skips_single_modality_identities_and_explains_shortage() -> None:
    labels, modalities = _labels(3)
    modalities[labels == 2] = 0  # identity 2 has no infrared image
    sampler = CrossModalIdentitySampler(labels, modalities, num_ids=2, num_instances=2)
    assert 2 not in {int(x) for b in sampler.epoch(1) for x in b.labels}
    with pytest.raises(ConfigError, match="only 2 identities have images in both modalities"):
        CrossModalIdentitySampler(labels, modalities, num_ids=3, num_instances=2)


def test_augment_keeps_shape_and_is_seeded() -> None:
    image = np.random.default_rng(0).integers(0, 256, (32, 16, 3), dtype=np.uint8)
    cfg = AugmentConfig(pad=4, flip=0.5, erasing=1.0, channel_exchange=1.0)
    a = augment(image, 0, cfg, np.random.default_rng(5))
    b = augment(image, 0, cfg, np.random.default_rng(5))
    assert a.shape == image.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    plain = augment(image, 1, AugmentConfig(pad=0, flip=0.0, erasing=0.0), np.random.default_rng(0))
    assert np.array_equal(plain, image)


def test_lowres_blurs_visible_images_only() -> None:
    rng = np.random.default_rng(1)
    stripes = np.zeros((64, 32, 3), np.uint8)
    stripes[::2] = 255  # one-pixel stripes: the detail a low-resolution sensor loses
    cfg = AugmentConfig(pad=0, flip=0.0, erasing=0.0, lowres=1.0)
    visible = augment(stripes, 0, cfg, rng)
    infrared = augment(stripes, 1, cfg, rng)
    assert visible.shape == stripes.shape and visible.dtype == np.uint8
    assert (
        np.abs(np.diff(visible.astype(int), axis=0)).mean()
        < 0.5 * np.abs(np.diff(stripes.astype(int), axis=0)).mean()
    )
    assert np.array_equal(infrared, stripes)


def test_intensity_remap_keeps_regions_but_not_brightness_order() -> None:
    # Two flat regions, dark above bright: the remapped image keeps the boundary (each region stays
    # flat) but across draws the darker region sometimes comes out brighter.
    image = np.zeros((32, 16, 3), np.uint8)
    image[:16], image[16:] = (40, 60, 80), (200, 180, 160)
    cfg = AugmentConfig(pad=0, flip=0.5, erasing=0.0, intensity_remap=1.0)  # flips: non-contiguous input
    rng = np.random.default_rng(3)
    flipped = 0
    for modality in (0, 1) * 10:
        out = augment(image, modality, cfg, rng)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out[..., 0], out[..., 2])  # grey: no colour survives
        assert len(np.unique(out[:16])) == 1 and len(np.unique(out[16:])) == 1
        flipped += int(out[0, 0, 0] > out[-1, 0, 0])
    assert 0 < flipped < 20


def test_checkpoint_round_trip_with_optimizer(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 3)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(2, 4)).sum().backward()
    optim.step()
    centres = {"centers": torch.randn(3, 4)}
    meta = {"model_config": {"name": "x"}, "num_classes": 3, "epoch": 2, "step": 10}
    save_checkpoint(tmp_path / "last", model.state_dict(), meta, optim.state_dict(), centres)
    ckpt = load_checkpoint(tmp_path / "last.json", with_optimizer=True)
    assert ckpt.epoch == 2 and ckpt.num_classes == 3 and set(ckpt.state_dict) == {"weight", "bias"}
    assert torch.equal(ckpt.criterion_state["centers"], centres["centers"])
    again = torch.optim.SGD(torch.nn.Linear(4, 3).parameters(), lr=0.1, momentum=0.9)
    again.load_state_dict(ckpt.optimizer_state)
    buf = again.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(buf, optim.state_dict()["state"][0]["momentum_buffer"])
    assert len(ckpt.sha256) == 64


def test_checkpoint_saving_does_not_follow_a_planted_temp_symlink(tmp_path: Path) -> None:
    """The temporary files had fixed names (`last.safetensors.tmp`): a symlink planted under that name
    in a shared run folder redirected the write, and two saves wrote into each other's file."""
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (tmp_path / "last.safetensors.tmp").symlink_to(victim)
    (tmp_path / "last.json.tmp").symlink_to(victim)
    meta = {"model_config": {"name": "x"}, "num_classes": 3, "epoch": 1}
    save_checkpoint(tmp_path / "last", torch.nn.Linear(4, 3).state_dict(), meta)
    assert victim.read_text() == "untouched" and load_checkpoint(tmp_path / "last").epoch == 1
    leftovers = {p.name for p in tmp_path.iterdir()} - {"victim.txt", "last.safetensors", "last.json"}
    assert leftovers == {"last.safetensors.tmp", "last.json.tmp"}  # the planted links, nothing of ours


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="checkpoint file missing"):
        load_checkpoint(tmp_path / "absent")
    save_checkpoint(tmp_path / "c", {"w": torch.ones(2)}, {"model_config": {}, "num_classes": 1})
    data = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "c.safetensors").write_bytes(data[:20])
    with pytest.raises(ArtifactError, match="cannot read weights"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c.json").write_text('{"format": "other"}')
    with pytest.raises(ArtifactError, match="not a vireid checkpoint"):
        load_checkpoint(tmp_path / "c")


def test_image_store_decodes_per_batch_above_its_budget_and_says_so(tmp_path: Path, caplog) -> None:
    import logging

    import cv2

    from vireid.training.images import ImageStore

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, (40, 20, 3), dtype=np.uint8))
    cached = ImageStore(paths, (32, 16), show_progress=False)
    with caplog.at_level(logging.INFO, logger="vireid.train"):
        uncached = ImageStore(paths, (32, 16), cache_bytes=0, show_progress=False)
    assert "above the 0.0 GiB cache (run.image_cache_gib)" in caplog.text
    np.testing.assert_array_equal(cached.get([4, 0, 2]), uncached.get([4, 0, 2]))
    with pytest.raises(ConfigError, match=r"run\.image_cache_gib must be >= 0"):
        TrainConfig.from_dict({"run": {"image_cache_gib": -1.0}})
