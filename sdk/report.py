"""A small document model rendered to Markdown and to a self-contained HTML page (the demo's report).

A `Report` is a title and a list of `Section`s; a section holds blocks in order: paragraphs, tables,
preformatted text and images (paths relative to the report's folder). The same blocks render to
`report.md` and `report.html`, so the two never disagree.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Table:
    """A table: header cells and rows of cells (already formatted strings)."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Image:
    """An image file, relative to the report folder, with a caption."""

    path: str
    caption: str


@dataclass(frozen=True)
class Pre:
    """Preformatted text (terminal output)."""

    text: str


Block = str | Table | Image | Pre


@dataclass
class Section:
    """A titled run of blocks."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        """Append blocks; returns the section for chaining."""
        self.blocks.extend(blocks)
        return self


@dataclass
class Report:
    """A document: title, a summary paragraph and sections."""

    title: str
    summary: str = ""
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        """A new section appended to the report."""
        section = Section(title)
        self.sections.append(section)
        return section

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown."""
        out = [f"# {self.title}", ""]
        if self.summary:
            out += [self.summary, ""]
        for section in self.sections:
            out += [f"## {section.title}", ""]
            for block in section.blocks:
                out += [*_markdown(block), ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        """One HTML page with inline styles; images are linked by relative path."""
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        if self.summary:
            body.append(f"<p class='summary'>{html.escape(self.summary)}</p>")
        for section in self.sections:
            body.append(f"<h2>{html.escape(section.title)}</h2>")
            body += [_html(block) for block in section.blocks]
        return _PAGE.format(title=html.escape(self.title), body="\n".join(body))

    def write(self, folder: str | Path, stem: str = "report") -> tuple[Path, Path]:
        """Write `<stem>.md` and `<stem>.html` into `folder`; returns both paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        md, page = folder / f"{stem}.md", folder / f"{stem}.html"
        md.write_text(self.to_markdown(), encoding="utf-8")
        page.write_text(self.to_html(), encoding="utf-8")
        return md, page


def _markdown(block: Block) -> list[str]:
    if isinstance(block, Table):
        lines = ["| " + " | ".join(map(_cell, block.header)) + " |", "|" + "---|" * len(block.header)]
        return lines + ["| " + " | ".join(map(_cell, row)) + " |" for row in block.rows]
    if isinstance(block, Image):
        caption = _inline(block.caption)
        return [f"![{caption}]({block.path})", "", f"*{caption}*"]
    if isinstance(block, Pre):
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", block.text)), default=0))
        return [fence, block.text.rstrip(), fence]  # a fence longer than any backtick run inside
    return [block]


def _inline(text: str) -> str:
    """Text for a Markdown line: HTML and link syntax escaped (renderers pass raw HTML through)."""
    return re.sub(r"([\\`*_\[\]()<>])", r"\\\1", text.replace("\n", " "))


def _cell(text: str) -> str:
    """A table cell: inline-escaped, `|` escaped and newlines joined (either would break the table)."""
    return _inline(text).replace("|", "\\|")


def _html(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Image):
        src, caption = html.escape(block.path, quote=True), html.escape(block.caption)
        return f"<figure><img src='{src}' alt='{caption}'><figcaption>{caption}</figcaption></figure>"
    if isinstance(block, Pre):
        return f"<pre>{html.escape(block.text.rstrip())}</pre>"
    return f"<p>{html.escape(block)}</p>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f3f3f3; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }}
figure {{ display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.85em; color: #555; }}
.summary {{ font-size: 1.05em; }}
</style></head>
<body>
{body}
</body></html>
"""
