"""Attribute oracle and linear probe (training/data/synth/attributes.py) and tools/attribute_probe.py."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from vireid.errors import ConfigError
from vireid.training.data.synth.attributes import (
    HIDDEN,
    attribute_table,
    majority_share,
    oracle_rank1,
    probe_accuracy,
)
from vireid.training.data.synth.person import Coat, sample_identity

TOOL = Path(__file__).resolve().parents[2] / "tools" / "attribute_probe.py"


def test_the_oracle_guesses_among_people_who_share_every_read_attribute() -> None:
    assert oracle_rank1(np.array([[0], [0], [1]])) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert oracle_rank1(np.array([[0, 1], [0, 2], [1, 1]])) == 1.0  # the second column tells them apart
    assert oracle_rank1(np.zeros((4, 0), np.int64)) == 0.25  # reading nothing: a guess among four
    assert oracle_rank1(np.zeros((0, 2), np.int64)) == 0.0


def test_reading_more_attributes_never_lowers_the_oracle() -> None:
    pids = list(range(1, 61))
    names = ["lower", "coat", "hair", "sleeve", "bag", "build"]
    ladder = [oracle_rank1(attribute_table(7, pids, names[:k])) for k in range(1, len(names) + 1)]
    assert ladder == sorted(ladder) and ladder[-1] > ladder[0]


def test_sleeves_are_hidden_under_a_coat_and_unknown_names_are_refused() -> None:
    pids = list(range(1, 41))
    table = attribute_table(5, pids, ["coat", "sleeve"])
    coats = np.array([sample_identity(5, p).coat is not Coat.NONE for p in pids])
    assert coats.any() and (~coats).any()
    assert (table[coats, 1] == HIDDEN).all() and (table[~coats, 1] != HIDDEN).all()
    with pytest.raises(ConfigError, match=r"choose from .*'lower'"):
        attribute_table(5, pids, ["colour"])


def test_the_probe_reads_a_linearly_coded_attribute_and_skips_hidden_rows() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    x = np.eye(3)[labels] + rng.normal(0, 0.1, (200, 3))
    assert probe_accuracy(x[:100], labels[:100], x[100:], labels[100:]) == 1.0
    noise = rng.normal(size=(200, 3))
    assert probe_accuracy(noise[:100], labels[:100], noise[100:], labels[100:]) < 0.6
    hidden = labels.copy()
    hidden[100:] = HIDDEN
    assert math.isnan(probe_accuracy(x[:100], labels[:100], x[100:], hidden[100:]))
    assert majority_share(np.array([1, 1, 2, HIDDEN])) == pytest.approx(2 / 3)


def test_the_tool_reports_the_three_tables_for_a_trained_checkpoint(sysu: Path, tmp_path: Path) -> None:
    from test_trainer import _config

    from vireid.training.trainer import train

    config = _config(**{"optim.epochs": 1, "run.eval_every": 0})
    run = train(config, sysu, tmp_path / "run")
    spec = importlib.util.spec_from_file_location("attribute_probe_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "probe.json"
    assert tool.main([str(run.last), "--data", str(sysu), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["seed"] == 3  # the fixture's generator seed, from its meta.json
    ladder = [row["R1"] for row in report["oracle_ladder"]]
    assert ladder == sorted(ladder) and 0 < ladder[0] <= ladder[-1] <= 1
    assert {row["attribute"] for row in report["probe"]} >= {"lower", "sleeve", "hat", "top_thickness"}
    assert all(0 <= row["chance"] <= 1 for row in report["probe"])
    assert 0 <= report["wrong_matches"]["identity_level_R1"] <= 1
    with pytest.raises(SystemExit, match="not a `vireid synth sysu` set"):
        (tmp_path / "fake").mkdir()
        (tmp_path / "fake" / "meta.json").write_text(json.dumps({"generator": "someone else"}))
        tool.generator_seed(tmp_path / "fake")
