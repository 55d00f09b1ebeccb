"""Loopback ports for the processes the demo, the benchmarks and the tests start."""
from __future__ import annotations

import socket

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nobody holds now, never one this process handed out before: the kernel
    may give a just-closed port to the next bind(0), and two ports asked for in a row (a
    gateway's gRPC and metrics ports) were once the same, so the gateway could not listen."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
