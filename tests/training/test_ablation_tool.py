"""tools/ablation.py's summary: mean over training seeds with the spread over seeds, or over the gallery
trials when only one seed ran (the tool's training runs themselves are what docs/results.md reports)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(r1: float, trial_std: float = 0.01) -> dict:
    return {
        "R1": r1,
        "R10": 2 * r1,
        "mAP": r1 + 0.05,
        "mINP": r1 / 2,
        "trial_std": {"R1": trial_std, "R10": trial_std, "mAP": trial_std, "mINP": trial_std},
        "train_s": 100.0,
    }


def test_learning_rate_steps_keep_their_place_in_a_shorter_budget(ablation) -> None:
    assert ablation.scaled_milestones((30, 37), 40, 16) == [12, 15]
    assert ablation.scaled_milestones((30, 37), 40, 40) == [30, 37]
    assert ablation.scaled_milestones((30, 37), 40, 2) == [1, 1]  # both kept, before the last epoch


def test_several_seeds_report_the_spread_over_seeds(ablation) -> None:
    summary = ablation.summarise([run(0.10), run(0.14), run(0.18)])
    assert summary["seeds"] == 3 and summary["spread"] == "seeds"
    assert summary["R1"] == pytest.approx(0.14) and summary["mAP"] == pytest.approx(0.19)
    assert summary["R1_std"] == pytest.approx(np.std([0.10, 0.14, 0.18], ddof=1))
    assert summary["R10_std"] == pytest.approx(2 * summary["R1_std"])


def test_one_seed_reports_the_trial_spread_and_older_results_say_they_have_none(ablation) -> None:
    summary = ablation.summarise([run(0.12, trial_std=0.008)])
    assert summary["spread"] == "trials" and summary["R1"] == 0.12 and summary["R1_std"] == 0.008
    old = run(0.12)
    del old["trial_std"]  # written before the tool recorded it
    assert np.isnan(ablation.summarise([old])["R1_std"])
