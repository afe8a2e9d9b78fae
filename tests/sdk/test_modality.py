from __future__ import annotations

import pytest

from vireid import InputSpecError, Modality


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("rgb", Modality.VISIBLE),
        ("Visible", Modality.VISIBLE),
        ("colour", Modality.VISIBLE),
        (0, Modality.VISIBLE),
        ("ir", Modality.INFRARED),
        ("THERMAL", Modality.INFRARED),
        (" infrared ", Modality.INFRARED),
        (1, Modality.INFRARED),
        ("1", Modality.INFRARED),
        (Modality.INFRARED, Modality.INFRARED),
    ],
)
def test_parse_accepts_user_words(word: object, expected: Modality) -> None:
    assert Modality.parse(word) is expected


@pytest.mark.parametrize("bad", ["uv", "", 2, True, None, "depth"])
def test_parse_rejects_and_lists_options(bad: object) -> None:
    with pytest.raises(InputSpecError) as info:
        Modality.parse(bad)
    message = str(info.value)
    assert "accepted" in message and "thermal" in message and "rgb" in message


def test_values_match_model_input_contract() -> None:
    assert int(Modality.VISIBLE) == 0 and int(Modality.INFRARED) == 1
    assert Modality.VISIBLE.other is Modality.INFRARED
    assert str(Modality.INFRARED) == "infrared"
