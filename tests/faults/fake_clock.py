"""A process's wall clock moved by the test while it runs: libfaketime (Debian's ``faketime``,
installed by ``scripts/stack.sh setup``) preloaded, its offset read from a file the test rewrites.

Only the wall clock moves (``FAKETIME_DONT_FAKE_MONOTONIC``), as when NTP steps a machine's
clock: timers, timeouts and Kafka's heartbeats run on the monotonic clock and go on as before.
"""
from __future__ import annotations

import os
from pathlib import Path

LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
SITE = Path(__file__).with_name("faketime_site")  # its time.sleep works under libfaketime


class FakeClock:
    def __init__(self, offset_file: Path) -> None:
        self.file = offset_file
        self.set(0)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base``, the environment of a sandan process, made to run on this clock."""
        if not LIBRARY.exists():
            raise RuntimeError(f"{LIBRARY} missing: run scripts/stack.sh setup (it installs faketime)")
        # read the file at every call: a cached offset would lag the test's jumps
        path = os.pathsep.join(p for p in (str(SITE), base.get("PYTHONPATH", "")) if p)
        return {**base, "PYTHONPATH": path, "LD_PRELOAD": str(LIBRARY), "FAKETIME_TIMESTAMP_FILE": str(self.file),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def set(self, seconds: int) -> None:
        """The process's wall clock from now on: ``seconds`` ahead of the real one (behind if negative)."""
        fresh = self.file.with_name(self.file.name + ".new")
        fresh.write_text(f"{seconds:+d}\n")
        fresh.replace(self.file)  # whole: the preloaded library may read it at any moment

