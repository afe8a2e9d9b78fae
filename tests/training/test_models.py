"""Models: registries, config, part-aware attention, cascade, two-stream stems, pretrained loading, ONNX.

Everything runs the tiny backbone at 144×72 (a 9×5 feature map, so stripe heights are uneven) except
one shape check of the paper-scale ResNet-50 at 288×144.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from vireid.errors import ArtifactError, ConfigError, InputSpecError
from vireid.training.models import (
    BACKBONES,
    MODELS,
    ModelConfig,
    ModelOutput,
    PartAwareAttention,
    build_model,
    build_model_from_config,
    part_bounds,
    split_rows,
)
from vireid.training.models.attention import spatial_max, spatial_mean
from vireid.training.pretrained import load_pretrained, torchvision_key

TINY = {"backbone": "resnet_tiny", "input_size": (144, 72)}
ABLATION_PARTS = [(1,), (3,), (6,), (3, 1), (6, 3), (6, 3, 1)]


def tiny(name: str = "mspac", num_classes: int = 7, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes, **{**TINY, **config})


def images(n: int, size: tuple[int, int] = (144, 72), seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *size, 3), dtype=torch.uint8, generator=generator)


def modalities(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32)


# ----- registries and config ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "listed"),
    [
        (lambda: MODELS.get("pcb"), ["baseline", "mspac"]),
        (lambda: BACKBONES.build("resnet51"), ["resnet18", "resnet50", "resnet_tiny"]),
        (lambda: build_model("msapc", 3), ["baseline", "mspac"]),
        (lambda: build_model("mspac", 3, backbone="vgg16"), ["resnet50", "resnet_tiny"]),
    ],
)
def test_registry_miss_lists_options(call, listed):
    with pytest.raises(ConfigError) as info:
        call()
    assert all(name in str(info.value) for name in listed)


def test_config_round_trips_through_json():
    config = ModelConfig(backbone="resnet_tiny", parts=(6, 3), input_size=(144, 72), width=8)
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.feature_size() == (9, 5)
    assert ModelConfig().feature_size() == (18, 9)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"colour": "rgb"}, "known keys"),
        ({"parts": [3, 6]}, "strictly decreasing"),
        ({"parts": [0]}, "strictly decreasing"),
        ({"last_stride": 3}, "last_stride"),
        ({"input_size": [64, 32], "parts": [6], "last_stride": 2}, "rows.*or last_stride 1$"),
        ({"input_size": [64, 32], "parts": [6], "last_stride": 1}, "too few rows.*a taller input_size$"),
        ({"gate": "sum"}, "gate"),
        ({"gem_p": 0.5}, "gem_p"),
    ],
)
def test_config_errors_name_the_key(values, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ModelConfig.from_dict(values)


def test_build_from_stored_config_resolves_default_parts():
    mspac = build_model_from_config({"name": "mspac", **TINY}, 5)
    baseline = build_model_from_config({"name": "baseline", **TINY}, 5)
    assert mspac.config.parts == (6, 3, 1) and mspac.num_part_features == 9
    assert baseline.config.parts == () and baseline.num_part_features == 0
    rebuilt = build_model_from_config(mspac.config.to_dict(), 5)
    assert rebuilt.state_dict().keys() == mspac.state_dict().keys()


# ----- part-aware attention ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 9, 32), (1, 1, 5, 32), (3, 18, 9, 32)])
def test_attention_keeps_shape(shape):
    attention = PartAwareAttention(32, reduction=16)
    assert attention(torch.rand(shape)).shape == shape


def test_attention_matches_the_formula():
    torch.manual_seed(0)
    attention = PartAwareAttention(8, reduction=4)
    x = torch.rand(2, 8, 3, 5)  # the formula in [N, C, h, w]; the module takes channels-last
    ch = torch.sigmoid(attention.channel.mlp(x.mean((2, 3)) + x.amax((2, 3))))[:, :, None, None]
    x1 = x * ch
    stats = torch.cat([x1.mean(1, keepdim=True), x1.amax(1, keepdim=True)], 1)
    x2 = x1 * torch.sigmoid(torch.nn.functional.conv2d(stats, attention.spatial.conv.weight, padding=3))

    def nhwc(t):
        return t.permute(0, 2, 3, 1)

    torch.testing.assert_close(attention.attend(nhwc(x)), nhwc(x2))
    torch.testing.assert_close(attention(nhwc(x)), nhwc(x + x2))  # gate="mask": x_o ⊗ (1 + CH ⊗ SP)
    attention.gate = "feature"
    torch.testing.assert_close(attention(nhwc(x)), nhwc(x + x * x2))  # the literal x_o + x_o ⊗ x''


def test_spatial_mean_and_max_equal_the_reductions_they_stand_for():
    """The product-form mean and the two-step max (faster in ONNX Runtime) compute the same values and,
    without ties for the maximum (random normal values), the same gradients as one reduction over the
    rows and columns of a channels-last map."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 8, requires_grad=True)
    reference = x.detach().clone().requires_grad_(True)
    torch.testing.assert_close(spatial_mean(x), reference.mean(dim=(1, 2)))
    assert torch.equal(spatial_max(x), reference.amax(dim=(1, 2)))
    weights = torch.randn(3, 8)
    ((spatial_mean(x) + spatial_max(x)) * weights).sum().backward()
    ((reference.mean(dim=(1, 2)) + reference.amax(dim=(1, 2))) * weights).sum().backward()
    torch.testing.assert_close(x.grad, reference.grad)


@pytest.mark.parametrize("gate", ["mask", "feature"])
def test_attention_never_erases_the_trunk(gate):
    attention = PartAwareAttention(16, reduction=4, gate=gate)
    x = torch.rand(2, 3, 4, 16)  # channels-last
    with torch.no_grad():
        attention.channel.mlp[2].bias.fill_(-1e4)  # CH → 0, so x'' → 0
    torch.testing.assert_close(attention(x), x)
    with torch.no_grad():
        attention.channel.mlp[2].bias.fill_(1e4)  # CH → 1: the gate only ever amplifies
    assert bool((attention(x) >= x).all())


@pytest.mark.parametrize(("height", "parts"), [(18, 6), (9, 6), (9, 3), (8, 6), (5, 3), (7, 1)])
def test_stripes_partition_the_rows(height, parts):
    bounds = part_bounds(height, parts)
    sizes = [bottom - top for top, bottom in bounds]
    assert bounds[0][0] == 0 and bounds[-1][1] == height and all(s >= 1 for s in sizes)
    assert max(sizes) - min(sizes) <= 1
    x = torch.rand(1, 2, height, 3)
    torch.testing.assert_close(torch.cat(split_rows(x, parts), dim=2), x)


# ----- the cascade and the model outputs --------------------------------------------------------------
@pytest.mark.parametrize("parts", ABLATION_PARTS)
def test_every_ablation_part_set_builds_and_runs(parts):
    model = tiny(parts=parts)
    assert len(model.cascade.stages) == len(parts)
    assert [len(stage) for stage in model.cascade.stages] == list(parts)
    out = model(images(4), modalities(0, 1, 0, 1))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (4, 7) and out.global_feat.shape == (4, 128)
    assert len(out.part_logits) == len(out.part_feats) == sum(p for p in parts if p > 1)
    loss = out.logits.sum() + sum(p.sum() for p in out.part_logits)
    loss.backward()
    model.eval()
    embeddings = model(images(3), modalities(1, 0, 1))
    assert embeddings.shape == (3, 128) and embeddings.dtype == torch.float32


def test_channels_last_cascade_equals_the_stripe_by_stripe_definition():
    """The cascade runs channels-last (for ONNX Runtime's NHWC int8 convolutions); the maps and the
    pooled features must be those of the plain `[N, C, H, W]` definition."""
    model = tiny().eval()
    fmap = torch.rand(2, 128, 9, 5)
    x, part_maps = fmap, []
    for count, attentions in zip(model.cascade.parts, model.cascade.stages, strict=True):
        attended = [
            attn(stripe.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            for attn, stripe in zip(attentions, split_rows(x, count), strict=True)
        ]
        part_maps += attended if count > 1 else []
        x = torch.cat(attended, dim=2)
    got, got_parts = model.cascade(fmap)
    torch.testing.assert_close(got, x.permute(0, 2, 3, 1))
    assert len(got_parts) == len(part_maps) == 9
    for mine, reference in zip(got_parts, part_maps, strict=True):
        torch.testing.assert_close(mine, reference.permute(0, 2, 3, 1))
    pool = model.head.pool
    torch.testing.assert_close(pool(got, channels_last=True), pool(x))


def test_preprocessing_is_imagenet_normalisation_in_nchw():
    model = tiny()
    batch = images(2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    expected = (batch.permute(0, 3, 1, 2).float() - mean) / std
    torch.testing.assert_close(model.preprocess(batch), expected)


@pytest.mark.parametrize("size", [(128, 64), (144, 72), (160, 80)])
def test_uneven_feature_heights_work(size):
    model = tiny(input_size=size).eval()  # 8, 9, 10 feature rows into 6 stripes
    assert model(images(2, size), modalities(0, 1)).shape == (2, 128)


def test_too_short_input_is_refused_at_runtime():
    model = tiny().eval()
    with pytest.raises(InputSpecError, match="rows"):
        model(images(1, (64, 32)), modalities(0))  # 4 feature rows, 6 parts


def test_embeddings_are_unit_norm():
    model = tiny().eval()
    embeddings = model(images(5), modalities(0, 1, 1, 0, 1))
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize(
    ("images_shape", "modality", "fragment"),
    [
        ((2, 144, 72), (2,), "images must be"),
        ((2, 3, 144, 72), (2,), "images must be"),
        ((2, 144, 72, 3), (2, 1), "1-D"),
        ((2, 144, 72, 3), (3,), "3 entries"),
    ],
)
def test_bad_inputs_raise_input_spec_error(images_shape, modality, fragment):
    model = tiny().eval()
    with pytest.raises(InputSpecError, match=fragment):
        model(torch.zeros(images_shape, dtype=torch.uint8), torch.zeros(modality, dtype=torch.int32))


def test_modality_switches_the_stem():
    model = tiny().eval()
    image = images(1).repeat(2, 1, 1, 1)
    with torch.no_grad():
        visible, infrared = model(image, modalities(0, 1))
    assert float(visible @ infrared) < 0.9999
    model.backbone.infrared_stem.load_state_dict(model.backbone.visible_stem.state_dict())
    visible, infrared = model(image, modalities(0, 1))
    torch.testing.assert_close(visible, infrared)


def test_mixed_batch_equals_single_modality_batches():
    model = tiny().eval()
    batch, mods = images(4), modalities(0, 1, 1, 0)
    mixed = model(batch, mods)
    for i in range(4):
        torch.testing.assert_close(mixed[i : i + 1], model(batch[i : i + 1], mods[i : i + 1]))


def test_training_stems_see_only_their_own_samples():
    model = tiny().train()
    x = model.preprocess(images(4))
    mods = modalities(1, 0, 1, 0)
    out = model.backbone.stems(x, mods)
    torch.testing.assert_close(out[[1, 3]], model.backbone.visible_stem(x[[1, 3]]))
    torch.testing.assert_close(out[[0, 2]], model.backbone.infrared_stem(x[[0, 2]]))
    only_visible = model.backbone.stems(x[[1, 3]], modalities(0, 0))  # one modality in the batch
    assert only_visible.shape == out[[1, 3]].shape


def test_training_forward_under_autocast_is_finite():
    model = tiny()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images(4), modalities(0, 1, 0, 1))
    assert out.global_feat.dtype == torch.float32  # GeM and attention run in float32
    assert all(bool(t.float().isfinite().all()) for t in (out.logits, *out.part_logits))


def test_baseline_has_no_attention_and_optional_stripe_heads():
    plain = tiny("baseline")
    assert not any("cascade" in name for name, _ in plain.named_parameters())
    assert plain(images(2), modalities(0, 1)).part_logits == ()
    striped = tiny("baseline", parts=(6,))
    assert len(striped(images(2), modalities(0, 1)).part_logits) == 6
    assert striped.eval()(images(2), modalities(0, 1)).shape == (2, 128)


def test_backbone_parameters_are_prefixed_for_the_optimiser():
    names = [name for name, _ in tiny().named_parameters()]
    assert any(n.startswith("backbone.layer4.") for n in names)
    assert all(n.split(".")[0] in {"backbone", "head", "part_heads", "cascade"} for n in names)


# ----- ResNet-50 layout -------------------------------------------------------------------------------
def torchvision_resnet50_keys() -> list[str]:
    """torchvision's resnet50().state_dict() keys without fc.*, written out from its definition."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight", *[f"bn1.{k}" for k in bn]]
    for layer, blocks in enumerate((3, 4, 6, 3), start=1):
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            for i in (1, 2, 3):
                keys += [f"{prefix}.conv{i}.weight", *[f"{prefix}.bn{i}.{k}" for k in bn]]
            if block == 0:
                keys += [f"{prefix}.downsample.0.weight", *[f"{prefix}.downsample.1.{k}" for k in bn]]
    return keys


def test_resnet50_keys_follow_torchvision_and_shapes_match_the_paper():
    model = build_model("mspac", 395).eval()
    keys = list(model.backbone.state_dict())
    expected = torchvision_resnet50_keys()
    assert len(expected) == 318 and len(keys) == 318 + 6  # one more conv1 + bn1 (5) for the 2nd stem
    assert "layer4.2.bn3.running_var" in keys and "layer1.0.downsample.0.weight" in keys
    assert "visible_stem.conv1.weight" in keys and "infrared_stem.bn1.running_var" in keys
    assert sorted({torchvision_key(k) for k in keys}) == sorted(expected)
    x = model.preprocess(images(2, (288, 144)))
    with torch.no_grad():
        assert model.backbone(x, modalities(0, 1)).shape == (2, 2048, 18, 9)
        assert model(images(2, (288, 144)), modalities(0, 1)).shape == (2, 2048)


# ----- pretrained weights -----------------------------------------------------------------------------
def fake_torchvision_state(width: int | None = None) -> dict[str, torch.Tensor]:
    """A torchvision-layout state dict for the tiny ResNet: one stem, random values, an ImageNet fc."""
    backbone = BACKBONES.build("resnet_tiny", width=width)
    items = backbone.state_dict().items()
    state = {torchvision_key(k): torch.rand_like(v.float()).to(v.dtype) for k, v in items}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 128), torch.randn(1000)
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_fills_both_stems_and_shared_layers(tmp_path, suffix):
    state = fake_torchvision_state()
    path = tmp_path / f"resnet_tiny{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = tiny()
    report = load_pretrained(model, path)
    backbone = model.backbone
    torch.testing.assert_close(backbone.visible_stem.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(backbone.infrared_stem.conv1.weight, state["conv1.weight"])
    downsample_bn = backbone.layer3[0].downsample[1]
    torch.testing.assert_close(downsample_bn.running_var, state["layer3.0.downsample.1.running_var"])
    assert report.ignored == ("fc.bias", "fc.weight") and report.missing == () and report.unexpected == ()
    assert len(report.loaded) == len(backbone.state_dict())


def test_pretrained_reports_missing_and_unexpected_keys(tmp_path, caplog):
    state = fake_torchvision_state()
    del state["layer4.0.conv2.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pth")
    with caplog.at_level(logging.WARNING):
        report = load_pretrained(tiny(), tmp_path / "w.pth")
    assert report.missing == ("layer4.0.conv2.weight",) and report.unexpected == ("layer5.0.conv1.weight",)
    assert "layer4.0.conv2.weight" in caplog.text


def test_build_model_loads_configured_pretrained_weights(tmp_path):
    state = fake_torchvision_state()
    torch.save(state, tmp_path / "w.pth")
    model = tiny(pretrained=str(tmp_path / "w.pth"))
    torch.testing.assert_close(model.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    untouched = build_model_from_config(model.config.to_dict(), 7)  # checkpoint path: no file read
    assert not torch.equal(untouched.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_pretrained_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ArtifactError, match=r"missing\.pth: pretrained weights file not found.*null"):
        load_pretrained(tiny(), tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match=r"junk\.pth: cannot read"):
        load_pretrained(tiny(), tmp_path / "junk.pth")
    torch.save(fake_torchvision_state(width=8), tmp_path / "narrow.pth")
    with pytest.raises(ConfigError, match=r"narrow\.pth: .* do not fit .*model\.backbone"):
        load_pretrained(tiny(), tmp_path / "narrow.pth")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="no key matches the torchvision ResNet layout"):
        load_pretrained(tiny(), tmp_path / "other.pth")


# ----- ONNX export ------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter (dynamo=False)
def test_onnx_export_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = tiny()
    for module in model.modules():  # non-trivial BN statistics, so the check means something
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        model,
        model.example_inputs(2),
        str(path),
        opset_version=17,
        input_names=["images", "modality"],
        output_names=["embeddings"],
        dynamic_axes={"images": {0: "batch"}, "modality": {0: "batch"}, "embeddings": {0: "batch"}},
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(uint8)", "tensor(int32)"]
    batch, mods = images(5, seed=3), modalities(1, 0, 0, 1, 1)
    (onnx_out,) = session.run(None, {"images": batch.numpy(), "modality": mods.numpy()})
    with torch.no_grad():
        torch_out = model(batch, mods).numpy()
    assert onnx_out.shape == (5, 128) and onnx_out.dtype == np.float32
    assert float((onnx_out * torch_out).sum(1).min()) >= 0.99999


def test_gem_gradient_stays_finite_for_a_large_exponent_on_a_dead_channel() -> None:
    """eps^p underflowed float32 to 0 for p > 7.5, and a channel that is zero over a whole part gave
    p a NaN gradient (every embedding NaN after the next SGD step)."""
    from vireid.training.models.heads import GeM

    gem = GeM(8.0)
    x = torch.zeros(2, 4, 3, 3)
    x[:, :2] = 1.0  # two live channels, two dead ones
    gem(x).sum().backward()
    assert torch.isfinite(gem.p.grad).all()
    torch.testing.assert_close(GeM(3.0)(x)[:, :2], torch.ones(2, 2))  # live channels unchanged


@pytest.mark.parametrize(("name", "blocks"), [("resnet18", (2, 2, 2, 2)), ("resnet34", (3, 4, 6, 3))])
def test_resnet18_and_34_backbones_build_and_map_to_8x_width_channels(name: str, blocks: tuple) -> None:
    from vireid.training.models.backbones import BACKBONES

    backbone = BACKBONES.build(name, width=8)
    assert tuple(len(getattr(backbone, f"layer{i}")) for i in range(1, 5)) == blocks
    images = torch.randn(2, 3, 64, 32)
    out = backbone(images, torch.tensor([0, 1]))
    assert out.shape == (2, 64, 4, 2) and torch.isfinite(out).all()  # output stride 16 (last stride 1)


def test_every_model_config_key_is_in_the_frozen_fingerprint_or_registered_with_its_neutral_value() -> None:
    """A key added to `ModelConfig` must be listed in `vireid.card.LATER_MODEL_KEY_DEFAULTS` (with the
    value that builds the model as before), or re-exporting any checkpoint with the new vireid changes
    its embedding-space fingerprint and locks out the galleries enrolled with the earlier export."""
    import dataclasses

    from vireid.card import FINGERPRINT_MODEL_KEYS, LATER_MODEL_KEY_DEFAULTS

    keys = {f.name for f in dataclasses.fields(ModelConfig)}
    missing = keys - FINGERPRINT_MODEL_KEYS - set(LATER_MODEL_KEY_DEFAULTS)
    assert not missing, f"add {sorted(missing)} to vireid.card.LATER_MODEL_KEY_DEFAULTS"
    for name in MODELS.names():
        config = tiny(name).config
        assert set(config.to_dict()) <= FINGERPRINT_MODEL_KEYS | set(LATER_MODEL_KEY_DEFAULTS)
