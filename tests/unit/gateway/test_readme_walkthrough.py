"""The gateway README's "Running it" walkthrough is run as written: every `sandan` command line
in it must parse with the CLI's own argparse, so the text cannot drift from the CLI."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from services.cli import build_parser

README = Path(__file__).resolve().parents[3] / "services" / "gateway" / "README.md"
SANDAN = ".venv/bin/sandan"


def walkthrough_commands(text: str) -> list[list[str]]:
    """The argument lists of the `sandan` command lines in the walkthrough's sh blocks."""
    section = text.split("### Running it", 1)[1].split("\n### ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.lstrip().startswith("#") or SANDAN + " " not in line:
                continue
            lexer = shlex.shlex(line.split(SANDAN + " ", 1)[1], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            argv = []
            for token in lexer:
                if set(token) <= set("();<>|&"):  # a redirection, `&` or `;` ends the command's arguments
                    break
                argv.append(token)
            commands.append(argv)
    return commands


def _parse(argv: list[str]):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"walkthrough command does not parse: sandan {shlex.join(argv)}\n{stderr.getvalue()}")


def test_every_walkthrough_command_parses_with_the_cli():
    commands = walkthrough_commands(README.read_text(encoding="utf-8"))
    seen = set()
    for argv in commands:
        args = _parse(argv)
        seen.add(" ".join(argv[:2]))
        assert "…" not in " ".join(argv), f"placeholder in a command meant to be run: sandan {shlex.join(argv)}"
        assert callable(args.run)
    # The extraction found the whole flow, not a part of it.
    assert {"topics create", "generate --count", "worker order-match", "worker tax-guarantee", "worker returns",
            "guarantee register", "gateway add-client", "gateway serve", "gateway submit", "gateway receipts",
            "gateway subscribe", "gateway report"} <= seen


def test_walkthrough_adds_each_client_once_unless_it_rotates():
    # add-client refuses an existing id without --rotate, so a second add of one id must rotate.
    added = set()
    for argv in walkthrough_commands(README.read_text(encoding="utf-8")):
        if argv[:2] != ["gateway", "add-client"]:
            continue
        args = _parse(argv)
        assert args.client_id not in added or args.rotate, \
            f"client {args.client_id} is added twice without --rotate: sandan {shlex.join(argv)}"
        added.add(args.client_id)
    assert {"platform", "payer", "carrier", "agent", "customs"} <= added


def test_extraction_stops_at_redirections_and_joins_continued_lines():
    text = ("### Running it\n```sh\n"
            "X=1 \\\n    .venv/bin/sandan gateway report --ebp-code \"$(code ebpCode a.xml)\" \\\n"
            "    --order-no SO1 --status 120 > out.txt 2>&1 & echo $!\n"
            "# .venv/bin/sandan not a command\n"
            "```\n### Next\n```sh\n.venv/bin/sandan outside\n```\n")
    assert walkthrough_commands(text) == [
        ["gateway", "report", "--ebp-code", "$(code ebpCode a.xml)", "--order-no", "SO1", "--status", "120"]]
