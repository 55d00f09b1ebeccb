"""Network faults between one process and the brokers, on loopback only (the fault suite).

- ``ProcessGroup``: a cgroup (v2) of its own for the process, so that firewall rules can name
  its sockets and no one else's (``iptables -m cgroup --path``). A socket belongs to the cgroup
  its process was in when it made it: the process is put there right after it starts, before
  it has opened one.
- ``partition``: every packet the group sends to a port on ``lo`` dropped (a network cut: its
  connections hang, nothing is refused).
- ``DelayProxy`` with ``redirect``: the group's connections to a port taken to a proxy on
  127.0.0.1 that hands on each chunk toward the port a fixed time after it came (this kernel has
  no netem or prio qdisc, so the latency is added in user space, toward the broker only).

Every rule carries the comment ``TAG`` and every cgroup the name prefix: ``cleanup`` removes
whatever a test left, crashed or not (run by conftest.py at the session's start and end).
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from tests.faults.small_disk import tag_of

# Rules and cgroups carry this checkout's tag: a fault suite's clean-up must never remove those of
# another checkout's suite running on the same machine.
TAG = tag_of("sandan-faults")
CGROUP_ROOT = Path("/sys/fs/cgroup/unified")


def _iptables(*args: str) -> None:
    subprocess.run(["iptables", "-w", "5", *args], check=True, capture_output=True, text=True, timeout=30)


class ProcessGroup:
    def __init__(self, name: str) -> None:
        self.name = f"{TAG}-{name}-{os.getpid()}"
        self.path = CGROUP_ROOT / self.name
        self.path.mkdir(exist_ok=True)

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def remove(self) -> None:
        _remove_cgroup(self.path)


def _remove_cgroup(path: Path) -> None:
    """Its processes (if any are left) back to the root group, then the group removed."""
    try:
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                (CGROUP_ROOT / "cgroup.procs").write_text(f"{pid}\n")
            except OSError:
                pass  # exited meanwhile
        path.rmdir()
    except FileNotFoundError:
        pass


def _rule(table: str, group: ProcessGroup, port: int, *target: str) -> tuple[str, ...]:
    return ("-t", table, "OUTPUT", "-o", "lo", "-p", "tcp", "-m", "cgroup", "--path", group.name, "--dport",
            str(port), "-m", "comment", "--comment", TAG, "-j", *target)


@contextmanager
def partition(group: ProcessGroup, port: int):
    rule = _rule("filter", group, port, "DROP")
    _iptables(*rule[:2], "-I", *rule[2:])
    try:
        yield
    finally:
        _iptables(*rule[:2], "-D", *rule[2:])


@contextmanager
def redirect(group: ProcessGroup, port: int, to_port: int):
    """The group's new connections to 127.0.0.1:``port`` go to 127.0.0.1:``to_port`` instead."""
    rule = _rule("nat", group, port, "DNAT", "--to-destination", f"127.0.0.1:{to_port}")
    _iptables(*rule[:2], "-I", *rule[2:])
    try:
        yield
    finally:
        _iptables(*rule[:2], "-D", *rule[2:])


class DelayProxy:
    """127.0.0.1:``port`` -> 127.0.0.1:``target``, each chunk toward the target ``delay_s`` late
    (in order); the answers come back at once."""

    def __init__(self, target: int, delay_s: float) -> None:
        self.target, self.delay_s = target, delay_s
        self.port = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._pipes: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        for task in (self._late(reader, up_writer), self._copy(up_reader, writer)):
            pipe = asyncio.ensure_future(task)
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _late(self, reader, writer) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                queue.put_nowait((time.monotonic() + self.delay_s, chunk))
                if not chunk:
                    break
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            writer.close()

    async def _copy(self, reader, writer) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


def cleanup() -> list[str]:
    """Every rule and cgroup this module makes, removed whoever left them; returns what it removed."""
    removed = []
    for table in ("filter", "nat"):
        listing = subprocess.run(["iptables", "-w", "5", "-t", table, "-S", "OUTPUT"], capture_output=True, text=True,
                                 timeout=30, check=False).stdout
        for line in listing.splitlines():
            words = line.split()
            if line.startswith("-A ") and any(a == "--comment" and b == TAG for a, b in zip(words, words[1:])):
                subprocess.run(["iptables", "-w", "5", "-t", table, "-D", *line.split()[1:]], capture_output=True,
                               timeout=30, check=False)
                removed.append(f"{table}: {line}")
    if CGROUP_ROOT.exists():
        for path in CGROUP_ROOT.glob(f"{TAG}-*"):
            _remove_cgroup(path)
            removed.append(str(path))
    return removed
