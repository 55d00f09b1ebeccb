"""free_port: ports the tests and the demo start processes on."""
from __future__ import annotations

import socket

from services.demo.ports import free_port


def test_free_port_never_hands_out_a_port_twice_and_each_can_be_bound():
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    for port in ports[-20:]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nobody holds it: a listener could start on it
