from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from contract_model import contract_card
from onnx import TensorProto, helper

from vireid import BatchProfile, CardError, Modality, ModelCard, Precision
from vireid.card import CARD_KEY, SCHEMA_VERSION
from vireid.errors import ArtifactError
from vireid.onnx_metadata import read_onnx_metadata


def make_card(**changes: object) -> ModelCard:
    base = dict(
        model_name="mspac",
        embedding_dim=2048,
        model_config={"backbone": "resnet50", "parts": [6, 3, 1]},
        opset=17,
        profile=BatchProfile(1, 8, 32),
        source_checkpoint_sha256="a" * 64,
        match_threshold=0.42,
        match_threshold_fmr=1e-3,
        match_threshold_fmr_achieved=8.5e-4,
        match_threshold_data={"dataset": "sysu", "split": "val", "impostor_pairs": 40000},
    )
    base.update(changes)
    return ModelCard(**base)  # type: ignore[arg-type]


def write_onnx(path: Path, metadata: dict[str, str]) -> Path:
    """A tiny real ONNX file (Identity graph) carrying the given metadata_props."""
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [inp], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)
    return path


def test_json_round_trip_is_lossless() -> None:
    card = make_card(precision="fp16", modalities=("rgb", "thermal"))
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.precision is Precision.FP16
    assert again.modalities == (Modality.VISIBLE, Modality.INFRARED)
    assert again.profile == BatchProfile(1, 8, 32)
    assert json.loads(card.to_json())["schema_version"] == SCHEMA_VERSION


def test_card_read_from_onnx_without_onnx_package(tmp_path: Path) -> None:
    card = make_card()
    path = write_onnx(tmp_path / "m.onnx", {"other": "x", CARD_KEY: card.to_json()})
    assert ModelCard.from_onnx(path) == card
    # Our protobuf-free reader agrees with the onnx package and with ONNX Runtime.
    expected = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert read_onnx_metadata(path) == expected
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map[CARD_KEY] == card.to_json()
    out = session.run(None, {"x": np.ones((2, 4), np.float32)})[0]
    assert out.shape == (2, 4)


def test_onnx_without_card_names_the_fix(tmp_path: Path) -> None:
    path = write_onnx(tmp_path / "foreign.onnx", {})
    with pytest.raises(CardError, match="vireid export"):
        ModelCard.from_onnx(path)


@pytest.mark.parametrize("cut", [1, 7, 20])
def test_truncated_onnx_is_an_artifact_error(tmp_path: Path, cut: int) -> None:
    good = write_onnx(tmp_path / "m.onnx", {CARD_KEY: make_card().to_json()})
    data = good.read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) - cut])
    with pytest.raises(ArtifactError, match=r"truncated\.onnx"):
        ModelCard.from_onnx(bad)


def test_missing_and_empty_onnx(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such ONNX file"):
        ModelCard.from_onnx(tmp_path / "absent.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError, match="empty"):
        ModelCard.from_onnx(tmp_path / "empty.onnx")


def test_newer_schema_asks_for_upgrade() -> None:
    data = make_card().to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    data["field_from_the_future"] = 1
    with pytest.raises(CardError, match="upgrade vireid"):
        ModelCard.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"embedding_dim": 0}, "embedding_dim must be a positive integer"),
        ({"input_height": -1}, "input_height"),
        ({"color_order": "GBR"}, "color_order"),
        ({"precision": "fp8"}, "expected one of: fp32, fp16, int8"),
        ({"modalities": ("rgb", "visible")}, "unique"),
        ({"source_checkpoint_sha256": "xyz"}, "64 lowercase hex"),
        ({"match_threshold": 1.5}, "match_threshold"),
        ({"match_threshold_fmr": 2.0}, "match_threshold_fmr is a false-match rate"),
        ({"match_threshold_fmr_achieved": -0.1}, "match_threshold_fmr_achieved"),
        ({"profile": {"min": 4, "opt": 2, "max": 8}}, r"min <= opt <= max"),
        ({"model_name": ""}, "model_name"),
        ({"dla_core": -1}, "dla_core must be a non-negative integer"),
        ({"dla_core": True}, "dla_core must be a non-negative integer"),
        ({"match_threshold_within": {"thermal": 0.7}}, "unknown modality 'thermal'"),
        ({"match_threshold_within": {"visible": 1.2}}, r"match_threshold_within\['visible'\] is a cosine"),
        ({"match_threshold_within": [0.7]}, "must map modality to threshold"),
    ],
)
def test_validation_errors_state_expected_and_actual(changes: dict, message: str) -> None:
    with pytest.raises(CardError, match=message):
        make_card(**changes)


def test_card_without_newer_optional_fields_still_loads() -> None:
    data = make_card().to_dict()
    for key in ("match_threshold_fmr_achieved", "match_threshold_data"):
        del data[key]
    card = ModelCard.from_dict(data)
    assert card.match_threshold_fmr_achieved is None and card.match_threshold_data is None


def test_thresholds_per_pair_and_the_within_key_written_only_when_set() -> None:
    card = make_card(match_threshold_within={"visible": 0.71, "infrared": 0.69})
    assert card.threshold_for("visible", "infrared") == card.threshold_for("ir", "rgb") == 0.42
    assert card.threshold_for("visible", "visible") == 0.71 and card.threshold_for(1, 1) == 0.69
    assert ModelCard.from_json(card.to_json()).match_threshold_within == {"visible": 0.71, "infrared": 0.69}
    assert make_card(match_threshold_within={Modality.VISIBLE: 0.7}).match_threshold_within == {
        "visible": 0.7
    }
    old = make_card()
    assert "match_threshold_within" not in old.to_dict()  # older vireid versions still read the card
    assert old.threshold_for("visible", "visible") is None


def test_unknown_keys_and_bad_json_are_refused() -> None:
    data = make_card().to_dict()
    data["colour"] = "RGB"
    with pytest.raises(CardError, match="unknown model card keys") as refused:
        ModelCard.from_dict(data)
    assert "upgrade" not in str(refused.value)  # written by this version: nothing to upgrade
    data["vireid_version"] = "9.1.0"  # a card of a newer vireid that added a field
    with pytest.raises(CardError, match=r"written by vireid 9.1.0, newer than this .*upgrade vireid"):
        ModelCard.from_dict(data)
    data["vireid_version"] = "0.0.1"  # an older card with a key since removed: upgrading cannot help
    with pytest.raises(CardError, match="unknown model card keys") as refused:
        ModelCard.from_dict(data)
    assert "upgrade" not in str(refused.value)
    with pytest.raises(CardError, match="not valid JSON"):
        ModelCard.from_json("{not json")
    with pytest.raises(CardError, match="schema_version"):
        ModelCard.from_dict({"model_name": "x"})


def test_a_card_missing_a_field_or_holding_a_wrong_type_says_which() -> None:
    data = make_card().to_dict()
    del data["embedding_dim"]
    with pytest.raises(CardError, match="model card lacks embedding_dim; re-export"):
        ModelCard.from_dict(data)
    data = make_card().to_dict() | {"match_threshold": "high"}
    with pytest.raises(CardError, match=r"wrong type|match_threshold"):
        ModelCard.from_dict(data)


def test_engine_sidecar_records_and_checks_hash(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized plan bytes")
    sidecar = make_card(precision="fp16").write_sidecar(engine)
    assert sidecar.name == "m.engine.json"
    card = ModelCard.from_engine(engine)
    assert card.engine_sha256 is not None and card.precision is Precision.FP16
    engine.write_bytes(b"another engine")
    with pytest.raises(CardError, match="do not belong together"):
        ModelCard.from_engine(engine)
    with pytest.raises(CardError, match="no model card sidecar"):
        ModelCard.from_engine(tmp_path / "other.engine")


def test_embedding_space_ignores_precision_but_not_checkpoint() -> None:
    fp32 = make_card()
    assert fp32.embedding_space() == make_card(precision="int8").embedding_space()
    assert fp32.embedding_space() != make_card(source_checkpoint_sha256="b" * 64).embedding_space()


def test_a_model_key_added_later_keeps_the_fingerprint_at_its_neutral_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Otherwise every vireid release that adds a model option orphans the galleries of re-exported
    checkpoints ("vectors of different models are not comparable")."""
    from vireid import card as card_module

    before = make_card()
    monkeypatch.setitem(card_module.LATER_MODEL_KEY_DEFAULTS, "new_option", 0)
    with_neutral = make_card(model_config={**before.model_config, "new_option": 0})
    with_other = make_card(model_config={**before.model_config, "new_option": 2})
    assert with_neutral.embedding_space() == before.embedding_space()
    assert with_other.embedding_space() != before.embedding_space()
    unregistered = make_card(model_config={**before.model_config, "another_option": 0})
    assert unregistered.embedding_space() != before.embedding_space()


@pytest.mark.parametrize(
    ("content", "kind"),
    [(b"SQLite format 3\x00" + bytes(200), "an SQLite database"), (b"model: mspac\n", "a text file")],
    ids=["gallery", "yaml"],
)
def test_a_file_that_is_no_model_is_named_for_what_it_is(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "thing.db"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=f"this is {kind}.*, not a model; give an .onnx file"):
        ModelCard.from_artifact(path)


def test_a_card_with_a_modality_no_vireid_writes_is_a_card_error_naming_its_source() -> None:
    """Found by the fuzz test: the modality parser's own error used to escape without the file name."""
    data = json.loads(make_card().to_json())
    data["modalities"] = ["visible", " nfrared"]
    with pytest.raises(CardError, match=r"^m\.onnx: unknown modality ' nfrared'"):
        ModelCard.from_json(json.dumps(data), source="m.onnx")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"profile": [1, 4, 8]}, r"profile must be \{min, opt, max\} or null"),
        ({"profile": {"min": 1, "most": 8}}, r"profile must be \{min, opt, max\}"),
        ({"modalities": "visible"}, "modalities must be a list"),
        ({"input_names": ("images", "images")}, "two distinct names"),
        ({"output_name": "modality"}, "must differ from the input names"),
        ({"model_config": [1]}, "model_config must be a mapping"),
        ({"color_order": "BGR"}, "color_order must be 'RGB'"),
        ({"match_threshold": True}, "match_threshold must be a number"),
        ({"match_threshold": "0.6"}, "match_threshold must be a number"),
        ({"normalized": "no"}, "normalized must be true or false"),
        ({"opset": "x"}, "opset must be a positive integer"),
        ({"calibration": [1, 2]}, "calibration must be an object"),
        ({"match_threshold_data": "abc"}, "match_threshold_data must be an object"),
        ({"model_name": 5}, "model_name must be a non-empty string"),
    ],
)
def test_hand_edited_cards_are_card_errors_not_crashes_later(changes: dict, message: str) -> None:
    """A sidecar edited by hand used to pass and fail later with AttributeError or TypeError; a BGR
    card was accepted although every preprocessing path feeds RGB."""
    fields = {**contract_card().to_dict(), **changes}
    with pytest.raises(CardError, match=message):
        ModelCard(**fields)


def test_a_nan_rate_is_written_as_null_valid_json_for_every_reader() -> None:
    card = contract_card(match_threshold=0.6, match_threshold_data={"true_match_rate": float("nan")})
    text = card.to_json()
    assert "NaN" not in text and json.loads(text)["match_threshold_data"]["true_match_rate"] is None


def test_a_card_is_read_only_all_the_way_down() -> None:
    """`model_config` decides `embedding_space()`, which decides which gallery a model may use: a card
    changed in place would silently move its model into another space (or out of its own)."""
    import copy

    card = ModelCard("m", 16, model_config={"parts": [6, 3, 1], "nested": {"p": 3.0}})
    space = card.embedding_space()
    for change in (
        lambda: card.model_config.__setitem__("seed", 99),
        lambda: card.model_config["parts"].append(2),
        lambda: card.model_config["nested"].update(p=4.0),
        lambda: card.model_config.pop("parts"),
    ):
        with pytest.raises(TypeError, match=r"read-only .*: make a changed copy with \.replace"):
            change()
    assert card.embedding_space() == space and card.model_config == {"parts": [6, 3, 1], "nested": {"p": 3.0}}
    assert ModelCard.from_json(card.to_json()) == card == copy.deepcopy(card)
    changed = card.replace(model_config={**card.model_config, "seed": 99})
    assert changed.embedding_space() != space


def test_track_mean_threshold_is_read_only_when_it_resolves_the_target() -> None:
    """The pipeline's default threshold comes from here: a value the card cannot back is None."""

    def with_track(**track: object) -> ModelCard:
        return make_card(match_threshold_data={"track_means": track})

    assert with_track(threshold_for_target=0.65981, impostor_pairs=7600).track_mean_threshold == 0.6599
    assert with_track(threshold_for_target=0.6598, impostor_pairs=7600).track_mean_threshold == 0.6598
    assert with_track(threshold_for_target=0.65981, impostor_pairs=999).track_mean_threshold is None
    assert make_card().track_mean_threshold is None  # exported before the estimate existed
    for bad in (float("nan"), 1.5, "0.6", True, None):
        assert with_track(threshold_for_target=bad, impostor_pairs=7600).track_mean_threshold is None
    unset = with_track(threshold_for_target=0.6, impostor_pairs=7600).replace(match_threshold_fmr=None)
    assert unset.track_mean_threshold is None
    assert with_track(threshold_for_target=0.6, impostor_pairs=float("inf")).track_mean_threshold is None
    no_single = with_track(threshold_for_target=0.6, impostor_pairs=7600).replace(match_threshold=None)
    assert no_single.track_mean_threshold is None
    # an estimate below the single-image threshold (0.42 here) is not trusted: never below it
    assert with_track(threshold_for_target=0.3, impostor_pairs=7600).track_mean_threshold == 0.42
