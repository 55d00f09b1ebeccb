"""`sandan config`: the settings table (Markdown), as the README shows it."""
from __future__ import annotations

from services.common import config


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="print every setting with its default and meaning (Markdown)")
    p.set_defaults(run=run)


def run(args) -> int:
    print(config.markdown_table())
    return 0
