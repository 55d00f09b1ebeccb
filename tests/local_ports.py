"""Ports and brokers of a test's own on loopback: a set of free ports below the kernel's
ephemeral range (an outgoing connection may take any port inside it between the check and the
bind), and scripts/stack.sh run with a test's settings."""
from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from services.common import config

STACK_SH = config.PROJECT_ROOT / "scripts" / "stack.sh"


def free_base(first: int, offsets: Iterable[int], what: str) -> int:
    """The first of ``first``, ``first + 100``, ... (up to the next thousand) for which every
    ``base + offset`` is free and below the ephemeral range."""
    offsets = tuple(offsets)
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    last = first - first % 1000 + 1000
    for base in range(first, last, 100):
        assert base + max(offsets) < low, f"the ports of {what} must lie below the ephemeral range"
        if all(free(base + offset) for offset in offsets):
            return base
    raise RuntimeError(f"no free port set for {what} in {first}-{last - 1}")


def free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def stack(env: dict[str, str], *args: str) -> str:
    """``scripts/stack.sh ARGS`` with ``env``; its output, or a failed assertion with it."""
    done = subprocess.run([str(STACK_SH), *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"stack.sh {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout
