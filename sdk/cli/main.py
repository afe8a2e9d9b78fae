"""Entry point of the `vireid` command.

Each command is a module under `vireid.cli` with `add_arguments(parser)` and `run(args) -> int`, listed
once in `COMMANDS`. Command modules import nothing heavy at module level, so `vireid --help` is instant
and works without torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._version import __version__
from ..errors import VireidError

log = logging.getLogger("vireid")

# command name -> (module, one-line help). Register only commands that work.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("vireid.cli.info", "show the model card of an exported artifact"),
    "doctor": (
        "vireid.cli.doctor",
        "check what this machine can run: ONNX Runtime providers, OpenCV video, TensorRT, GPU, extras",
    ),
    "synth": (
        "vireid.cli.synth",
        "render synthetic visible-infrared data (sysu, regdb, scene) and score untrained baselines",
    ),
    "train": ("vireid.cli.train", "train a cross-modal re-id model from a YAML config (needs torch)"),
    "evaluate": (
        "vireid.cli.evaluate",
        "evaluate a checkpoint or artifact on sysu-all, sysu-indoor, regdb-v2t or regdb-t2v",
    ),
    "export": (
        "vireid.cli.export",
        "export a checkpoint: ONNX, FP16, INT8, TensorRT engine, Triton repo; each step verified",
    ),
    "verify": (
        "vireid.cli.verify",
        "compare two models' embeddings and print the parity report (exit 1 on failure)",
    ),
    "run": ("vireid.cli.run", "run the real-time cross-modal pipeline on cameras or video files"),
    "bench": (
        "vireid.cli.bench",
        "time a model on every runtime (latency, throughput, memory), or the pipeline on a scene",
    ),
    "gallery": (
        "vireid.cli.gallery",
        "manage a gallery of enrolled people: enroll, list, remove, rename, search, purge, export, import, "
        "backup",
    ),
}


_GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet")


class _Parser(argparse.ArgumentParser):
    """Says where the global logging flags go when they are given after the command."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:") and set(message.split()) & set(_GLOBAL_FLAGS):
            message += (
                " (-v/--verbose and -q/--quiet are vireid's own: put them before the command, "
                "e.g. vireid -v run ...)"
            )
        super().error(message)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' example lines and shows each option's default where its help does not."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text, default = action.help or "", action.default
        # by identity: `0 in (False,)` is True, and a default of 0 is worth showing
        quiet = default is None or default is False or default is argparse.SUPPRESS or default in ([], ())
        if not action.option_strings or "default" in text or quiet:
            return action.help
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command."""
    parser = _Parser(
        prog="vireid",
        description="Visible-infrared person re-identification: data, training, export, runtime.",
        epilog="exit status: 0 done; 1 an error (the message says what and the fix) or a check that "
        "failed (verify or export parity, bench without a row; run without frames, or with an output or "
        "camera that failed for good; doctor --require); 2 a usage error; 130 interrupted "
        "(Ctrl-C; `run` stopped by SIGTERM or SIGHUP exits 0). `vireid COMMAND --help` for each command; "
        "`vireid @FILE ...` reads the first arguments from FILE (shell-like words, # comments).",
    )
    parser.add_argument("--version", action="version", version=f"vireid {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    loudness.add_argument(  # not `quiet`: run and synth have a --quiet of their own
        "-q", "--quiet", dest="log_quiet", action="store_true", help="log warnings and errors only"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=module.__doc__,
            formatter_class=HelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def arguments_from_file(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """`argv` with a first argument `@FILE` replaced by the words in FILE (shell-like quoting; a word
    starting with `#` comments out the rest of its line), for a service's options kept in a file.

    Only the first argument: a later `@name` stays what it is (an identity may be called `@alice`).
    Errors name the file and line number, never the line (it may hold a password).
    """
    if not argv or not argv[0].startswith("@") or len(argv[0]) == 1:
        return list(argv)
    path = argv[0][1:]
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(
            f"{argv[0]}: cannot read the argument file {path}: {getattr(exc, 'strerror', None) or exc}"
        )
    words: list[str] = []
    for number, line in enumerate(lines, 1):
        try:
            parts = shlex.split(line)
        except ValueError as exc:  # an unbalanced quote
            parser.error(f"{argv[0]}: line {number}: {exc} (the line is not shown: it may hold a secret)")
        comment = next((i for i, word in enumerate(parts) if word.startswith("#")), len(parts))
        words += parts[:comment]
    return words + list(argv[1:])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (1 for a `VireidError`, 2 for usage)."""
    parser = build_parser()
    args = parser.parse_args(arguments_from_file(sys.argv[1:] if argv is None else argv, parser))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.log_quiet else logging.INFO,
        # a terminal's reader sees when; a log file (a service's, a CI job's) needs it on every line
        format=("" if sys.stderr.isatty() else "%(asctime)s ") + "%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a reader that left shows here, inside the try, not at exit
        return code
    except VireidError as exc:
        print(f"vireid {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vireid {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe (a socket, a subprocess) broke: a real error
        _silence_stdout()  # `vireid info m.onnx | head`: the reader left, nothing is wrong
        return 0
    except OSError as exc:  # a folder that cannot be created, a full disk: the system's message, one line
        log.debug("%s failed", args.command, exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"vireid {args.command}: error: {where}{exc.strerror or exc} (vireid -v {args.command} ... shows "
            "where)",
            file=sys.stderr,
        )
        return 1


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (as opposed to some other pipe breaking)."""
    try:
        poller = select.poll()  # a pipe without a reader polls as an error or hang-up, whatever is buffered
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        if any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):  # Linux | BSD
            return True
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or stdout without a descriptor
        pass
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not raise a second BrokenPipeError."""
    if sys.stdout is not sys.__stdout__:  # a caller's own stream (tests, an embedding program): theirs
        return
    if sys.stdout is None:  # no stdout at all (pythonw): nothing to silence
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


if __name__ == "__main__":
    sys.exit(main())
