"""`vireid.report`: the Markdown a report writes keeps its structure whatever text its cells carry."""

from __future__ import annotations

import re

from vireid.report import Image, Pre, Report, Table


def test_markdown_cells_captions_and_fences_cannot_be_broken_out_of() -> None:
    report = Report("r")
    section = report.section("s")
    section.add(
        Table(["name", "value"], [["a|b\nc", "<img src=x onerror=alert(1)>"], ["[x](javascript:y)", "1"]]),
        Image("results/a.png", "frame ](javascript:z) <b>"),
        Pre("before\n```\nafter ````"),
    )
    md = report.to_markdown()
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len(rows) == 4 and all(row.count(" | ") == 1 for row in rows[2:])  # two cells per row
    assert not re.search(r"(?<!\\)<img", md) and "\\<img src=x onerror=alert\\(1\\)\\>" in md
    assert not re.search(r"(?<!\\)\]\(javascript", md)  # no live link syntax
    fence = "`````"  # longer than the longest backtick run inside (4)
    assert f"{fence}\nbefore\n```\nafter ````\n{fence}" in md
    html_page = report.to_html()
    assert "<img src=x" not in html_page and "&lt;img src=x onerror=alert(1)&gt;" in html_page
