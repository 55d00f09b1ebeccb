"""The fault suite (`make test-faults`): tests that break things on purpose.

They run on a private Kafka and Redis (``stack.env``: other ports, another data folder),
never on the shared stack, because they stop, restart and wipe them. The settings are put
into the environment when this file is loaded, before any fixture, helper or service
process reads one. `make test` does not collect this folder (pyproject's addopts).

The session ends with the fault table (``table.py``), also saved as JSON next to the
private stack's data.
"""
from __future__ import annotations

import os
import random
import shutil
import time

import pytest

from tests.conftest import Stack
from tests.faults import netfault, private_stack, small_disk
from tests.faults.table import TABLE

SETTINGS = private_stack.settings()
os.environ.update(SETTINGS)
# One seed per session drives every random choice (kill moments, fuzz data); set it to replay a run.
SEED = int(os.environ.get("SANDAN_FAULT_SEED") or time.time_ns() % 1_000_000)


@pytest.fixture(scope="session")
def private() -> private_stack.PrivateStack:
    """The private stack, started for the session; what this session started is stopped at the end."""
    stack = private_stack.PrivateStack(SETTINGS)
    before = stack.running()
    if not before:  # an empty broker restarts in seconds; one holding every earlier run's topics does not
        stack.reset()
        shutil.rmtree(stack.runs_dir(), ignore_errors=True)
    stack.up()
    yield stack
    started = sorted(stack.running() - before)
    if started:
        stack.down(*started)


@pytest.fixture(scope="session", autouse=True)
def machine_restored():
    """Firewall rules and cgroups of the network scenarios and the disk-full scenarios' small
    filesystems, removed at the start (a run killed before its ``finally``) and at the end."""
    netfault.cleanup()
    small_disk.cleanup()
    yield
    netfault.cleanup()
    small_disk.cleanup()


@pytest.fixture(scope="session")
def stack(private) -> Stack:
    """Overrides the shared-stack fixture of tests/conftest.py: here it is the private one."""
    return Stack(bootstrap=SETTINGS["SANDAN_KAFKA_BOOTSTRAP"], redis_url=SETTINGS["SANDAN_REDIS_URL"])


@pytest.fixture
def rnd(request) -> random.Random:
    """A random source per test, reproducible from the session seed and the test's name."""
    return random.Random(f"{SEED}:{request.node.name}")


def pytest_collection_modifyitems(items) -> None:
    """The security tests last: their log scans cover every scenario the session ran."""
    items.sort(key=lambda item: item.path.name == "test_security.py")


def pytest_terminal_summary(terminalreporter) -> None:
    if not TABLE.rows:
        return
    terminalreporter.section(f"sandan fault report (SANDAN_FAULT_SEED={SEED})")
    for line in TABLE.lines():
        terminalreporter.write_line(line)
    TABLE.save(private_stack.PrivateStack(SETTINGS).local_dir / "fault-report.json")
