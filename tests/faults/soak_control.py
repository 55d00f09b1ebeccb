"""How a soak is stopped and kept alone on its stack: signals that end it as Ctrl-C does (so the
report and the checkpoint are written) and a lock that refuses a second soak on the same stack."""
from __future__ import annotations

import fcntl
import os
import signal
import sys
from pathlib import Path
from typing import IO


def stop_like_ctrl_c() -> None:
    """SIGTERM and SIGHUP end the soak as Ctrl-C does: inside a chunk's asyncio run the load is
    cancelled and the chunk's services stopped, outside it KeyboardInterrupt unwinds; either way
    the partial report and the checkpoint are written and `SOAK_RESUME=1` goes on from there.
    SIGINT itself is set back to Python's Ctrl-C: a shell starts a background job (`make soak &`)
    with SIGINT ignored, and then neither Ctrl-C nor the SIGINT sent here would do anything."""
    def to_sigint(signum, frame) -> None:
        os.kill(os.getpid(), signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, to_sigint)


def hold_the_stack(local_dir: Path) -> IO[str] | None:
    """One soak per private stack: two would restart each other's Kafka and Redis and audit each
    other's faults. The lock file holds the running soak's pid (for `kill`); the lock goes with
    the process, however it ends."""
    local_dir.mkdir(parents=True, exist_ok=True)
    handle = open(local_dir / "soak.pid", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        print(f"[soak] another soak is running on this stack (pid {handle.read().strip() or '?'},"
              f" {local_dir / 'soak.pid'}): stop it first (kill <pid>: it writes its report and checkpoint)",
              file=sys.stderr)
        handle.close()
        return None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
