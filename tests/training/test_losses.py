"""Losses: identity CE, MeCen (hand-computed values, unit-norm centres, clamp), triplet, the criterion."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F

from vireid.errors import ConfigError
from vireid.training.losses import LOSSES, IdentityLoss, MeCenLoss, ReIDCriterion, TripletLoss
from vireid.training.models import ModelOutput

# Two unit centres and two features whose normalised versions are (0.6, 0.8) and (0, 1):
# squared distances to their centres are 0.8 and 0.
CENTERS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
FEATURES = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
LABELS = torch.tensor([0, 1])


def mecen(**flags) -> MeCenLoss:
    loss = MeCenLoss(num_classes=2, feat_dim=2, **flags)
    with torch.no_grad():
        loss.centers.copy_(CENTERS)
    return loss


def test_registry_lists_losses_on_a_miss():
    assert LOSSES.names() == [
        "center_alignment",
        "center_cluster",
        "hetero_triplet",
        "identity",
        "mecen",
        "mutual_mean",
        "pattern_diversity",
        "triplet",
    ]
    with pytest.raises(ConfigError, match="identity, mecen, mutual_mean, pattern_diversity, triplet"):
        LOSSES.build("arcface")


def test_identity_loss_with_label_smoothing_by_hand():
    logits, target = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])
    log_p = torch.log_softmax(logits, 1)[0]
    assert float(IdentityLoss()(logits, target)) == pytest.approx(float(-log_p[0]))
    expected = -(0.9 * log_p[0] + 0.1 / 3 * log_p.sum())
    assert float(IdentityLoss(0.1)(logits, target)) == pytest.approx(float(expected))
    with pytest.raises(ConfigError, match="label_smoothing"):
        IdentityLoss(1.0)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"margin": False, "exp": False}, 0.5 * (0.8 + 0.0) / 2),  # +center: ½·mean d²
        ({"exp": False}, 0.5 * (0.7 + 0.0) / 2),  # +margin: ½·mean max(d² − 0.1, 0)
        ({}, math.exp(0.175) - 1),  # +exp: full MeCen
        ({"margin": False}, math.exp(0.2) - 1),
        ({"center": False}, 0.0),  # gid only
    ],
)
def test_mecen_ablation_switches_by_hand(flags, expected):
    assert float(mecen(**flags)(FEATURES, LABELS).detach()) == pytest.approx(expected, rel=1e-6)


def test_mecen_centres_are_unit_norm_whatever_the_raw_vectors():
    loss = mecen()
    with torch.no_grad():
        loss.centers.mul_(torch.tensor([[3.0], [0.2]]))  # scaled raw vectors, same directions
    assert float(loss(FEATURES, LABELS).detach()) == pytest.approx(math.exp(0.175) - 1, rel=1e-6)
    torch.testing.assert_close(loss.unit_centers().norm(dim=1), torch.ones(2))
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.5, weight_decay=0.1)
    loss(FEATURES, LABELS).backward()
    assert float(loss.centers.grad.abs().sum()) > 0
    optimizer.step()
    loss.renormalize()
    torch.testing.assert_close(loss.centers.norm(dim=1), torch.ones(2))


def test_mecen_features_are_normalised_and_shared_across_modalities():
    loss = mecen()
    scaled = FEATURES * torch.tensor([[10.0], [0.1]])  # e.g. a visible and an infrared feature scale
    assert float(loss(scaled, LABELS).detach()) == pytest.approx(float(loss(FEATURES, LABELS).detach()))


def test_mecen_clamp_engages_counts_and_logs(caplog):
    loss = mecen(clamp=0.1)  # the exponent is 0.175
    features = FEATURES.clone().requires_grad_(True)
    with caplog.at_level(logging.WARNING):
        value = loss(features, LABELS)
    expected = math.expm1(0.1) + math.exp(0.1) * (0.175 - 0.1)  # tangent continuation past the clamp
    assert float(value.detach()) == pytest.approx(expected, rel=1e-6)
    assert int(loss.clamp_hits) == 1 and "clamp" in caplog.text
    value.backward()
    assert bool(features.grad.isfinite().all()) and float(features.grad.abs().sum()) > 0
    loss(FEATURES, LABELS)
    assert int(loss.clamp_hits) == 2
    fresh = mecen()  # default clamp 10 never engages for normalised features (exponent ≤ 2)
    fresh(FEATURES, LABELS)
    assert int(fresh.clamp_hits) == 0


def test_triplet_batch_hard_by_hand():
    x = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # hardest (positive, negative) per anchor: (1, 3), (1, 2), (2, 2), (2, 4) → only anchor 2 violates
    assert float(TripletLoss(0.3)(x, labels)) == pytest.approx(0.3 / 4, abs=1e-5)
    assert float(TripletLoss(0.3)(x, torch.zeros(4, dtype=torch.long))) == 0.0  # no negatives
    x.requires_grad_(True)
    TripletLoss(0.3)(x, labels).backward()
    assert bool(x.grad.isfinite().all())


def output(n: int = 4, dim: int = 6, classes: int = 3, parts: int = 2) -> ModelOutput:
    torch.manual_seed(0)
    feat = torch.randn(n, dim, requires_grad=True)
    part_logits = tuple(torch.randn(n, classes) for _ in range(parts))
    part_feats = tuple(feat for _ in range(parts))
    return ModelOutput(feat, feat * 2, torch.randn(n, classes), part_feats, part_logits)


def test_criterion_weights_and_components():
    out, y = output(), torch.tensor([0, 1, 2, 0])
    criterion = ReIDCriterion(3, 6, gid=1.0, pid=0.5, mecen={"weight": 2.0}, triplet=1.0)
    total, parts = criterion(out, y)
    assert sorted(parts) == ["gid", "mecen", "pid", "triplet"]
    pid = sum(F.cross_entropy(lg, y) for lg in out.part_logits) / 2
    torch.testing.assert_close(parts["pid"], pid)
    torch.testing.assert_close(parts["gid"], F.cross_entropy(out.logits, y))  # each term from outside
    torch.testing.assert_close(parts["triplet"], TripletLoss(0.3)(out.global_feat, y))
    expected = parts["gid"] + 0.5 * parts["pid"] + 2.0 * parts["mecen"] + parts["triplet"]
    torch.testing.assert_close(total.detach(), expected)
    total.backward()
    assert criterion.mecen.centers.grad is not None


def test_criterion_skips_disabled_terms_and_partless_models():
    out = output(parts=0)
    criterion = ReIDCriterion(3, 6, mecen={"center": False})
    total, parts = criterion(out, torch.tensor([0, 1, 2, 0]))
    assert sorted(parts) == ["gid"] and criterion.mecen is None
    torch.testing.assert_close(total, F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0])))


def test_criterion_from_train_config_and_after_step():
    from vireid.training.config import LossConfig

    criterion = ReIDCriterion.from_config(LossConfig(label_smoothing=0.1), num_classes=3, feat_dim=6)
    assert criterion.identity.label_smoothing == 0.1 and criterion.mecen.m == 0.1
    with torch.no_grad():
        criterion.mecen.centers.mul_(5.0)
    criterion.after_step()
    torch.testing.assert_close(criterion.mecen.centers.norm(dim=1), torch.ones(3))
    assert "mecen.centers" in criterion.state_dict()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mecen": {"lambda": 1.0}}, "known keys"),
        ({"pid": -1.0}, "loss.pid"),
        ({"triplet_margin": -0.1, "triplet": 1.0}, "margin"),
    ],
)
def test_criterion_config_errors(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ReIDCriterion(3, 6, **kwargs)
