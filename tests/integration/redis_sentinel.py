"""A Redis primary, one replica and three Sentinels started by a test on loopback ports of its own
(below the kernel's ephemeral range), with their data in the test's folder.

``redis-server --sentinel`` runs the Sentinels: the Debian package's ``redis-server`` binary is
all they need (``make setup`` installs it).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

MASTER = "sandan"
PORTS = range(26400, 26999)   # below 32768, where the kernel never hands out ephemeral ports


def free_ports(count: int, start: int = PORTS.start) -> list[int]:
    found = []
    for port in range(start, PORTS.stop):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError(f"fewer than {count} free loopback ports in {PORTS}")


class SentinelGroup:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Start at a port of this process's own, so two such tests at once rarely race for one.
        self.ports = free_ports(5, PORTS.start + os.getpid() % 400)
        self.nodes: dict[int, subprocess.Popen] = {}
        self.sentinels: list[subprocess.Popen] = []

    @property
    def sentinel_setting(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports[2:])

    def _server(self, port: int, *extra: str) -> subprocess.Popen:
        data = self.folder / f"redis-{port}"
        data.mkdir(parents=True, exist_ok=True)
        log = open(data / "redis.log", "ab")
        return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                                 "--save", "", "--appendonly", "no", *extra], stdout=log, stderr=subprocess.STDOUT)

    def start(self, timeout_s: float = 30) -> None:
        primary, replica, *sentinel_ports = self.ports
        self.nodes[primary] = self._server(primary)
        self.nodes[replica] = self._server(replica, "--replicaof", "127.0.0.1", str(primary))
        for port in sentinel_ports:
            conf = self.folder / f"sentinel-{port}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                            f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n"
                            f"sentinel down-after-milliseconds {MASTER} 1000\n"
                            f"sentinel failover-timeout {MASTER} 10000\n")
            log = open(self.folder / f"sentinel-{port}.log", "ab")
            self.sentinels.append(subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=log,
                                                   stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            assert time.monotonic() < deadline, f"the Redis primary, replica and Sentinels never came up; see {self.folder}"
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            link = redis.Redis(port=self.ports[1], socket_timeout=1).info("replication")
            if link.get("master_link_status") != "up":
                return False
            for port in self.ports[2:]:
                state = redis.Redis(port=port, socket_timeout=1).sentinel_master(MASTER)
                if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                    return False
            return True
        except redis.RedisError:
            return False

    def primary(self) -> int:
        """The port the Sentinels name as the primary now."""
        host, port = redis.Redis(port=self.ports[2], socket_timeout=1).sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def kill_primary(self) -> int:
        """kill -9 of the primary; returns its port."""
        port = self.primary()
        self.nodes[port].send_signal(signal.SIGKILL)
        self.nodes[port].wait(10)
        return port

    def wait_promoted(self, old: int, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                port = self.primary()
                if port != old and redis.Redis(port=port, socket_timeout=1).info("replication")["role"] == "master":
                    return port
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, f"no replica was promoted within {timeout_s}s; see {self.folder}"
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in [*self.sentinels, *self.nodes.values()]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.sentinels, *self.nodes.values()]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
