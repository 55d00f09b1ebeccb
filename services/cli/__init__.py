"""The ``sandan`` command: one subcommand module per concern, each with ``add_parser``."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from services.common import config

# Subcommand modules, imported lazily so `sandan ceb parse` does not pay for Kafka clients or grpc.
_MODULES = ["ceb", "topics", "publish", "generate", "check", "worker", "demo", "settings", "guarantee", "gateway",
            "returns", "quota", "paydata", "platform", "certs"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandan", description="sandan: cross-border retail import clearance")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _MODULES:
        try:
            module = importlib.import_module(f"services.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"services.cli.{name}":
                continue  # a subcommand not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=config.get("SANDAN_LOG_LEVEL"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("kafka", "aiokafka"):  # connection chatter drowns the service's own log
        logging.getLogger(chatty).setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
