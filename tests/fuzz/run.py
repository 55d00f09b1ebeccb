"""`make fuzz`: the long, coverage-guided run of the fuzz targets (atheris, libFuzzer), or a replay.

    python -m tests.fuzz.run --target ceb_xml|submit|worker [--seconds N]   fuzz, growing the corpus
    python -m tests.fuzz.run --target T FILE...                             replay inputs (a crash's file)

A fuzzing run starts from ``tests/fuzz/corpus/<target>/`` (the committed seed corpus) and adds to
it every input that reached new code; commit the new files worth keeping (`make test` replays the
corpus as seeds). A crash stops the run and leaves its input in ``.local/fuzz/crashes/``.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from services.common import config

CRASHES = config.PROJECT_ROOT / ".local" / "fuzz" / "crashes"


def main(argv=None) -> int:
    from tests.fuzz import inputs

    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, choices=inputs.TARGETS)
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("files", nargs="*", type=Path, help="replay these inputs instead of fuzzing")
    args = parser.parse_args(argv)
    if args.files:
        return replay(args.target, args.files)
    return fuzz(args.target, args.seconds)


def _target(name: str):
    from tests.fuzz import inputs, targets

    targets.set_submit_codes(inputs.sender_codes())
    return getattr(targets, name)


def replay(name: str, files: list[Path]) -> int:
    run, failed = _target(name), 0
    for path in files:
        try:
            print(f"{path}: {run(path.read_bytes())}")
        except Exception:  # noqa: BLE001 - a replay shows the crash in full
            failed += 1
            print(f"{path}: CRASH")
            traceback.print_exc()
    return 1 if failed else 0


def fuzz(name: str, seconds: int) -> int:
    import atheris

    from tests.fuzz import inputs

    run = _target(name)
    atheris.instrument_all()  # services are imported already: instrument what is loaded
    corpus = inputs.CORPUS / name
    corpus.mkdir(parents=True, exist_ok=True)
    CRASHES.mkdir(parents=True, exist_ok=True)
    args = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-max_len=262144", "-rss_limit_mb=2048",
            f"-artifact_prefix={CRASHES}/{name}-"]
    atheris.Setup(args, lambda data: run(data))
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
