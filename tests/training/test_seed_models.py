"""The other seed models: `psmg` and `mpanet` modules, their losses, the backbone split point, and a
training smoke test per model (export contract tests are parametrised over every registered model in
tests/export/test_export_onnx.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from vireid.errors import ConfigError  # noqa: E402
from vireid.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from vireid.training.config import MODEL_LOSS_WEIGHTS, TrainConfig  # noqa: E402
from vireid.training.evaluate import evaluate_checkpoint  # noqa: E402
from vireid.training.factory import build_criterion  # noqa: E402
from vireid.training.losses import (  # noqa: E402
    MODEL_LOSSES,
    CenterAlignmentLoss,
    CenterClusterLoss,
    HeteroCenterTripletLoss,
    MutualMeanLoss,
    PatternDiversityLoss,
)
from vireid.training.models import BACKBONES, MODELS, ModalityAlleviation, build_model  # noqa: E402
from vireid.training.pretrained import load_pretrained, torchvision_key  # noqa: E402
from vireid.training.trainer import train  # noqa: E402

SIZE = (128, 64)


def tiny(name: str, **config: object):
    torch.manual_seed(0)
    return build_model(name, 8, with_pretrained=False, backbone="resnet_tiny", input_size=SIZE, **config)


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, *SIZE, 3), dtype=torch.uint8, generator=generator)
    return images, (torch.arange(n) % 2).to(torch.int32)


# ----- backbone split point and parameter sharing -------------------------------------------------
def test_split_point_moves_stages_into_both_branches_with_torchvision_names() -> None:
    backbone = BACKBONES.build("resnet_tiny", specific_stages=3)
    keys = backbone.state_dict()
    assert backbone.shared_stages == ("layer3", "layer4")
    assert "visible_stem.layer2.0.conv1.weight" in keys and "infrared_stem.layer1.0.bn1.running_mean" in keys
    assert not any(k.startswith(("layer1.", "layer2.")) for k in keys)
    assert torchvision_key("infrared_stem.layer2.0.conv1.weight") == "layer2.0.conv1.weight"


def test_shared_convs_are_one_parameter_and_batchnorm_stays_per_modality() -> None:
    backbone = BACKBONES.build("resnet_tiny", specific_stages=2, share_convs=True)
    visible, infrared = backbone.visible_stem, backbone.infrared_stem
    assert infrared.conv1.weight is visible.conv1.weight
    assert infrared.layer1[0].conv2.weight is visible.layer1[0].conv2.weight
    assert infrared.bn1.weight is not visible.bn1.weight
    unshared = BACKBONES.build("resnet_tiny", specific_stages=2)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    convs = sum(m.weight.numel() for m in unshared.infrared_stem.modules() if isinstance(m, torch.nn.Conv2d))
    assert count(unshared) - count(backbone) == convs
    backbone.train()
    x = torch.randn(6, 3, *SIZE)
    backbone(x, torch.tensor([0, 0, 0, 0, 0, 1]))  # one infrared sample: its BN sees only that one
    assert not torch.allclose(visible.bn1.running_mean, infrared.bn1.running_mean)


def test_bad_split_point_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model.specific_stages must be 1 \(stem only\)"):
        tiny("psmg", specific_stages=5)


def test_tied_weights_survive_a_checkpoint_round_trip(tmp_path: Path) -> None:
    model = tiny("psmg")
    with torch.no_grad():
        model.backbone.visible_stem.conv1.weight.add_(1.0)
    meta = {"model_config": model.config.to_dict(), "num_classes": 8}
    path = save_checkpoint(tmp_path / "psmg", model.state_dict(), meta)
    again = tiny("psmg")
    again.load_state_dict(load_checkpoint(path).state_dict)
    backbone = again.backbone
    assert backbone.infrared_stem.conv1.weight is backbone.visible_stem.conv1.weight
    torch.testing.assert_close(backbone.infrared_stem.conv1.weight, model.backbone.visible_stem.conv1.weight)


@pytest.mark.parametrize("split", [2, 3])
def test_pretrained_weights_fill_both_branches_at_any_split_point(tmp_path: Path, split: int) -> None:
    source = BACKBONES.build("resnet_tiny")
    state = {
        torchvision_key(k): torch.rand_like(v.float()).to(v.dtype) for k, v in source.state_dict().items()
    }
    torch.save(state, tmp_path / "tv.pth")
    model = tiny("psmg", specific_stages=split)
    report = load_pretrained(model, tmp_path / "tv.pth")
    backbone = model.backbone
    for branch in (backbone.visible_stem, backbone.infrared_stem):
        torch.testing.assert_close(branch.layer1[0].bn2.running_var, state["layer1.0.bn2.running_var"])
        torch.testing.assert_close(branch.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])  # tied
        torch.testing.assert_close(branch.bn1.weight, state["bn1.weight"])
    last_specific = f"layer{split - 1}"
    torch.testing.assert_close(
        getattr(backbone.infrared_stem, last_specific)[0].conv1.weight,
        state[f"{last_specific}.0.conv1.weight"],
    )
    torch.testing.assert_close(backbone.layer4[0].conv1.weight, state["layer4.0.conv1.weight"])
    assert report.missing == () and report.unexpected == ()


def test_weights_of_separate_filters_are_refused_by_a_tied_model() -> None:
    separate = tiny("psmg", share_convs=False)
    with pytest.raises(RuntimeError, match="shares its branch convolutions"):
        tiny("psmg").load_state_dict(separate.state_dict())


def test_fractional_or_boolean_split_point_is_a_config_error() -> None:
    for bad in (2.0, True):
        with pytest.raises(ConfigError, match=r"model\.specific_stages"):
            tiny("psmg", specific_stages=bad)


# ----- the models ---------------------------------------------------------------------------------
def test_psmg_defaults_and_multi_granularity_outputs() -> None:
    model = tiny("psmg")
    assert (model.config.specific_stages, model.config.share_convs, model.parts) == (2, True, (4, 2))
    images, modality = batch()
    out = model(images, modality)
    assert len(out.part_feats) == 6 and len(out.part_logits) == 6 and out.extras == {}
    with torch.no_grad():
        fmap = model.backbone(model.preprocess(images), modality)
        fine, medium = (embed(fmap) for embed in model.embeddings)
        expected = [model.part_heads[0].pool(fine[:, :, :2]), model.part_heads[5].pool(medium[:, :, 4:])]
    torch.testing.assert_close(out.part_feats[0], expected[0])  # first of 4 stripes, embedded map
    torch.testing.assert_close(out.part_feats[5], expected[1])  # second of 2 stripes
    assert not torch.allclose(out.part_feats[0], model.part_heads[0].pool(fmap[:, :, :2]))


@pytest.mark.parametrize("name", ["psmg", "mpanet"])
def test_eval_embeddings_are_unit_norm_and_independent_of_batch_mates(name: str) -> None:
    model = tiny(name).eval()
    images, modality = batch()
    with torch.no_grad():
        together = model(images, modality)
        alone = torch.cat([model(images[i : i + 1], modality[i : i + 1]) for i in range(len(images))])
    assert together.shape == (8, model.embedding_dim)
    torch.testing.assert_close(together.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_mpanet_outputs_patterns_and_modality_logits() -> None:
    model = tiny("mpanet", patterns=3)
    out = model(*batch())
    maps = out.extras["pattern_maps"].detach()
    assert maps.shape == (8, 3, 8, 4) and float(maps.min()) > 0 and float(maps.max()) < 1
    assert len(out.part_feats) == 3 and [lg.shape for lg in out.extras["modality_logits"]] == [(8, 8)] * 2


def test_modality_alleviation_interpolates_between_identity_and_instance_norm() -> None:
    module = ModalityAlleviation(16, reduction=4)
    x = torch.rand(2, 16, 5, 3) * 3 + 1
    with torch.no_grad():
        module.gate[2].bias.fill_(-1e4)  # gate 0: the map passes unchanged
        torch.testing.assert_close(module(x), x)
        module.gate[2].bias.fill_(1e4)  # gate 1: per-image channel statistics removed
        torch.testing.assert_close(module(x), torch.relu(module.norm(x)))
        shifted = module(x * 2 + 5)  # a per-channel gain and offset (a "modality") changes nothing
    torch.testing.assert_close(shifted, module(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("mpanet", {"parts": [6]}, "mpanet has no stripes"),
        ("mspac", {"patterns": 4}, "model.patterns does not apply to model 'mspac'"),
    ],
)
def test_config_keys_of_another_model_are_refused(name: str, config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny(name, **config)


# ----- losses -------------------------------------------------------------------------------------
LABELS = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
MODALITY = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])


def test_center_alignment_by_hand() -> None:
    e0, e1 = torch.eye(2)
    feats = torch.stack([e0, e0, e1, e1, e0, e0, e1, e1])
    assert float(CenterAlignmentLoss()(feats, LABELS, MODALITY)) == pytest.approx(0.0, abs=1e-7)
    feats = torch.stack([e0, e0, e1, e1, e1, e1, e1, e1])  # identity 0's infrared images look like 1
    # identity-0 centre (0.5, 0.5): every sample of 0 is 0.5 away in squared distance; centres 2 apart
    expected = 4 * 0.5 / 8 + (2.0 + 0.0) / 2
    assert float(CenterAlignmentLoss()(feats, LABELS, MODALITY)) == pytest.approx(expected)


def test_hetero_center_triplet_by_hand() -> None:
    e0, e1 = torch.eye(2)
    aligned = torch.stack([e0, e0, e1, e1, e0, e0, e1, e1])
    assert float(HeteroCenterTripletLoss(margin=0.3)(aligned, LABELS, MODALITY)) == 0.0
    # Infrared centres swapped: each centre's other-modality positive is √2 away, its negative 0.
    swapped = torch.stack([e0, e0, e1, e1, e1, e1, e0, e0])
    value = float(HeteroCenterTripletLoss(margin=0.3)(swapped, LABELS, MODALITY))
    assert value == pytest.approx(0.3 + math.sqrt(2))
    single = HeteroCenterTripletLoss()(aligned[:2], LABELS[:2], MODALITY[:2])
    assert float(single) == 0.0  # one modality only: no centre pair, no loss


def test_center_cluster_by_hand() -> None:
    e0, e1 = torch.eye(2)
    feats = torch.stack([e0, e0, e1, e1, e0, e0, e1, e1])
    assert float(CenterClusterLoss(margin=0.5)(feats, LABELS)) == pytest.approx(0.0, abs=1e-7)
    assert float(CenterClusterLoss(margin=2.0)(feats, LABELS)) == pytest.approx((2 - math.sqrt(2)) ** 2)
    with pytest.raises(ConfigError, match="center_margin"):
        CenterClusterLoss(margin=0)


def test_mutual_mean_is_the_two_cross_entropies_when_the_classifiers_agree() -> None:
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loss = MutualMeanLoss()((logits, logits), labels, MODALITY)
    expected = F.cross_entropy(logits[:4], labels[:4]) + F.cross_entropy(logits[4:], labels[4:])
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    other = MutualMeanLoss()((logits, -logits), labels, MODALITY)
    assert float(other) > float(
        F.cross_entropy(logits[:4], labels[:4]) + F.cross_entropy(-logits[4:], labels[4:])
    )


def test_metric_losses_stay_float32_under_autocast() -> None:
    """Nearly aligned centres: half-precision products would cancel to the distance floor."""
    feats = torch.randn(8, 64, generator=torch.Generator().manual_seed(2))
    feats[4:] = feats[:4] + 1e-3 * torch.randn(4, 64)  # infrared = visible + a little noise
    labels, modality = torch.tensor([0, 1, 2, 3] * 2), torch.tensor([0] * 4 + [1] * 4)
    losses = {
        "hetero": lambda f: HeteroCenterTripletLoss(margin=2.0)(f, labels, modality),
        "alignment": lambda f: CenterAlignmentLoss()(f, labels, modality),
        "cluster": lambda f: CenterClusterLoss(margin=2.0)(f, labels),
        "diversity": lambda f: PatternDiversityLoss()(f.abs().view(8, 4, 4, 4)),
    }
    for name, loss in losses.items():
        exact = loss(feats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = loss(feats)
        assert under_autocast.dtype == torch.float32, name
        torch.testing.assert_close(under_autocast, exact, rtol=1e-5, atol=1e-6, msg=name)


def test_pattern_diversity_is_zero_for_disjoint_and_one_for_identical_patterns() -> None:
    disjoint = torch.zeros(2, 2, 4, 2)
    disjoint[:, 0, :2], disjoint[:, 1, 2:] = 1.0, 1.0
    assert float(PatternDiversityLoss()(disjoint)) == 0.0
    same = torch.rand(2, 1, 4, 2).expand(2, 3, 4, 2)
    assert float(PatternDiversityLoss()(same)) == pytest.approx(1.0)


# ----- criterion: defaults per model, refusals ----------------------------------------------------
def _criterion(name: str, **loss: object):
    config = TrainConfig.from_dict({"model": {"name": name}, "loss": loss})
    return build_criterion(config, 8, tiny(name))


def test_config_and_criterion_know_the_same_model_losses() -> None:
    assert set(MODEL_LOSS_WEIGHTS) == set(MODEL_LOSSES)


def test_each_model_gets_its_own_losses_by_default() -> None:
    assert set(_criterion("psmg").extra_weights) == {"center_alignment", "hetero_triplet"}
    assert set(_criterion("mpanet").extra_weights) == {"mutual_mean", "center_cluster", "pattern_diversity"}
    assert _criterion("mspac").extra_weights == {}
    assert set(_criterion("mpanet", mutual_mean=0).extra_weights) == {"center_cluster", "pattern_diversity"}
    assert set(_criterion("mspac", center_alignment=0.5).extra_weights) == {"center_alignment"}


def test_a_loss_the_model_cannot_feed_is_refused_naming_the_models_that_can() -> None:
    with pytest.raises(
        ConfigError, match=r"loss.mutual_mean needs modality logits.*mpanet.*set loss.mutual_mean"
    ):
        _criterion("mspac", mutual_mean=1.0)
    with pytest.raises(ConfigError, match=r"loss.hetero_triplet needs part features"):
        _criterion("baseline", hetero_triplet=1.0)


@pytest.mark.parametrize("name", ["psmg", "mpanet"])
def test_full_criterion_backpropagates_to_every_trained_parameter(name: str) -> None:
    model = tiny(name)
    criterion = _criterion(name, triplet=1.0)
    images, _ = batch()
    total, parts = criterion(model(images, MODALITY.to(torch.int32)), LABELS, MODALITY)
    total.backward()
    assert torch.isfinite(total) and set(criterion.extra_weights) <= set(parts)
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    with pytest.raises(ValueError, match="needs the batch's modality labels"):
        criterion(model(images, MODALITY.to(torch.int32)), LABELS)


# ----- training smoke test per model --------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(set(MODELS.names()) - {"mspac", "baseline"}))
def test_each_seed_model_trains_and_evaluates(name: str, sysu: Path, tmp_path: Path) -> None:
    config = TrainConfig.from_dict(
        {
            "model": {"name": name, "backbone": "resnet_tiny", "width": 8, "input_size": [64, 32]},
            "sampler": {"num_ids": 3, "num_instances": 2, "iters_per_epoch": 2},
            "loss": {"triplet": 1.0},
            "optim": {"lr": 0.05, "epochs": 1, "warmup_epochs": 1, "milestones": [1]},
            "run": {"device": "cpu", "eval_every": 1, "log_every": 1, "progress": False},
        }
    )
    result = train(config, sysu, tmp_path / name)
    records = (tmp_path / name / "metrics.jsonl").read_text()
    own = {"psmg": "hetero_triplet", "mpanet": "pattern_diversity"}[name]
    assert f'"{own}"' in records and result.last.is_file()
    table = evaluate_checkpoint(result.last, sysu, "sysu-all", trials=1, device="cpu")
    assert 0.0 <= table.mean()["R1"] <= 1.0


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")))
def test_every_shipped_config_builds_its_model_and_criterion(path: Path) -> None:
    config = TrainConfig.from_yaml(path)
    small = config.with_overrides({"model.backbone": "resnet_tiny", "model.pretrained": None})
    model = build_model(
        small.model["name"], 8, with_pretrained=False, **{k: v for k, v in small.model.items() if k != "name"}
    )
    criterion = build_criterion(small, 8, model)
    own = {
        "psmg": {"center_alignment", "hetero_triplet"},
        "mpanet": {"mutual_mean", "center_cluster", "pattern_diversity"},
    }
    assert own.get(model.config.name, set()) <= set(criterion.extra_weights)
