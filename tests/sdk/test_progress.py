"""Progress reporting: a bar on a terminal, plain lines in a log (a bar's carriage returns would pile up
into one endless line there), nothing at all for a quick loop."""

from __future__ import annotations

import itertools

import pytest

from vireid import progress as progress_module
from vireid.progress import progress


def test_redirected_stderr_gets_plain_lines_only_for_long_loops(monkeypatch, capsys) -> None:
    assert list(progress(range(50), "quick")) == list(range(50))
    assert capsys.readouterr().err == ""  # captured stderr is not a terminal: no bar, and nothing to say
    clock = itertools.count(0.0, 4.0)  # every item takes 4 s
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    assert sum(progress(range(10), "slow", total=10)) == 45
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    assert lines[0] == "slow: 3/10" and lines[-1] == "slow: done (10)" and len(lines) == 4


def test_a_terminal_gets_a_bar(monkeypatch, capsys) -> None:
    pytest.importorskip("tqdm")
    monkeypatch.setattr(progress_module, "_on_terminal", lambda: True)
    assert list(progress(range(3), "bar", total=3)) == [0, 1, 2]
    assert "bar" in capsys.readouterr().err
