"""Every `vireid` command the READMEs and docs/ show is one the CLI accepts, so a renamed option or
command cannot leave the documentation behind.

Each command line in a fenced block, and each inline code span that starts with `vireid `, is read
with shell quoting. Its commands must exist and every `--option` it names must be one of that
command's options (exactly, not an abbreviation argparse would also take). A line that is a real
command (no `[optional]` groups, `A|B` choices or `...`) must also parse as a whole with the real
parser: positional arguments, option values and choices included.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from vireid.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "samples" / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1", re.S | re.M)
INLINE = re.compile(r"`(vireid [^`\n]+)`")
COMMAND = re.compile(r"^(?:\$ )?(?:\w+=\S* )*(?:\S*/)?vireid (.*)$")
SYNOPSIS = re.compile(r"\[|\]|\.\.\.|…|\b[A-Z]+\|")  # [optional], repeats, or a metavar's A|B choices


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings of `parser` and of every command below it."""
    out = set(parser._option_string_actions)
    for child in _subcommands(parser).values():
        out |= _options(child)
    return out


def commands_in(page: Path) -> list[tuple[str, bool]]:
    """(the words after `vireid`, whether it is a whole command line) for each command shown."""
    text = page.read_text(encoding="utf-8")
    found = []
    for block in FENCE.findall(text):
        for line in block[1].replace("\\\n", " ").splitlines():
            match = COMMAND.match(line.strip())
            if match:
                found.append((match.group(1), True))
    outside = FENCE.sub("", text)
    found += [(span[len("vireid ") :], False) for span in INLINE.findall(outside)]
    return found


def _words(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=False)
    lexer.whitespace_split, lexer.commenters = True, "#"
    return list(lexer)


def problems_of(command: str, whole_line: bool, parser: argparse.ArgumentParser) -> list[str]:
    """What is wrong with one documented command (empty: nothing)."""
    words = _words(command)
    path, current = [], parser
    for word in words:
        if word.startswith("-"):
            continue
        children = _subcommands(current)
        if not children or not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break  # a synopsis's placeholder (COMMAND, a|b, ...) or an options file stands for any
        if word not in children:
            return [f"`vireid {' '.join(path)} {word}`: no such command (there are {', '.join(children)})"]
        path.append(word)
        current = children[word]
    known = _options(current)  # after a placeholder for a command: the options of any command below
    wrong = []
    for word in words:
        option = word.split("=", 1)[0]
        if not re.fullmatch(r"--?[A-Za-z][\w-]*", option) or option in known:
            continue
        before_command = not path or words.index(word) < words.index(path[0])
        if not (before_command and option in parser._option_string_actions):  # vireid's own -v, -q
            wrong.append(f"`vireid {' '.join(path)}` has no option {option}")
    if wrong or not whole_line or SYNOPSIS.search(command) or not path:
        return wrong
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(words)
        except SystemExit as exc:
            if exc.code not in (0, None):  # 0: --help or --version, which print and leave
                said = stderr.getvalue().strip().splitlines() or ["(nothing on stderr)"]
                return [f"`vireid {command}` does not parse: {said[-1]}"]
    return []


# Options of other programs the docs name on their own (`--fp16`), by owner.
FOREIGN_OPTIONS = {
    "trtexec": {"--fp16", "--int8", "--noTF32", "--stronglyTyped", "--useDLACore", "--allowGPUFallback"}
    | {"--precisionConstraints", "--layerPrecisions", "--layerOutputTypes"},
    "tools/ablation.py": {"--only", "--seeds", "--heldout"},
    "tests/perf/bench_runtime.py": {"--repeats"},
    "tests/perf/soak.py": {"--minutes", "--flap-seconds", "--loop-seconds", "--outputs"},
}
OTHER_PROGRAMS = re.compile(r"^(python\S*|docker|pip\S*|trtexec|sudo|systemctl|make|\S*\.py|\./\S+)\s")


def lone_options_in(page: Path) -> list[str]:
    """Options named in inline code outside a `vireid` command (`--cross-threshold`, `--threshold 0.66`),
    not in a span that starts with another program (`python tools/ablation.py --only ...`)."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    spans = [s for s in re.findall(r"`([^`\n]+)`", text) if not s.startswith("vireid ")]
    return [
        option
        for span in spans
        if not OTHER_PROGRAMS.match(span)
        for option in re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*[\w])", span)
    ]


def lone_option_problems(options: list[str], parser: argparse.ArgumentParser) -> list[str]:
    foreign = set().union(*FOREIGN_OPTIONS.values())
    known = _options(parser)
    return [f"{o}: no vireid command has this option" for o in options if o not in known | foreign]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_commands_exist(page: Path, parser: argparse.ArgumentParser) -> None:
    problems = [p for command, whole in commands_in(page) for p in problems_of(command, whole, parser)]
    problems += lone_option_problems(lone_options_in(page), parser)
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_checker_catches_what_it_is_for(parser: argparse.ArgumentParser) -> None:
    """Each kind of drift is reported; the forms the docs use (synopses, comments) are not."""
    assert problems_of("run --source visible=a.mp4 --model m.onnx --no-such", True, parser)
    assert problems_of("gallery enrol --gallery g.db", True, parser)  # a command that is not there
    assert problems_of("export m.safetensors --to onnx --calib data", True, parser)  # abbreviations
    assert problems_of("bench m.onnx --batch one", True, parser)  # a value the option refuses
    assert problems_of("run --model m.onnx", True, parser)  # --source is required
    assert not problems_of("run --source visible=a.mp4 --model m.onnx   # a comment --x", True, parser)
    assert not problems_of("bench MODEL [--batch 1,8,32] [--mode fast|realtime]", True, parser)
    assert not problems_of("-v run --source visible=a.mp4 --model m.onnx", True, parser)
    assert not problems_of("run --stall-timeout", False, parser)  # an inline mention of one option
    assert not problems_of("run --help", True, parser)  # prints help and leaves with 0
    assert lone_option_problems(["--pair-threshold"], parser)  # a renamed option named on its own
    assert not lone_option_problems(["--cross-threshold", "--fp16"], parser)  # vireid's; trtexec's


def test_lone_options_are_found_outside_other_programs_commands(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Set `--cross-threshold` or `--threshold 0.66`; `python tools/ablation.py --only x` is not ours.\n"
        "```sh\nvireid run --fats\n```\n",
        encoding="utf-8",
    )
    assert lone_options_in(page) == ["--cross-threshold", "--threshold"]
