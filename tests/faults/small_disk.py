"""Small filesystems for the disk-full scenarios: a tmpfs of a few megabytes mounted by the test
over a service's data folder, filled up with a filler file under load and freed again.

Every mount's source is named ``TAG``; ``cleanup`` unmounts whatever a test left (run by
conftest.py at the session's start and end).
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from services.common import config

# Mounts carry this checkout's tag: a clean-up unmounts only its own suite's, never another
# checkout's running on the same machine (then its filler would fill the real disk).
def tag_of(kind: str, root: Path = config.PROJECT_ROOT) -> str:
    return f"{kind}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


TAG = tag_of("sandan-faults-disk")
FILLER = ".filler"


class NotASmallDisk(RuntimeError):
    """The folder to fill is not this module's small filesystem: filling it would fill a real disk."""


def _mounts() -> list[str]:
    """Mount points of this module's filesystems, deepest first."""
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[0] == TAG]
    return sorted(points, key=len, reverse=True)


@contextmanager
def mounted(folder: Path, size_mb: int):
    """``folder`` (emptied: whatever it held is hidden by the mount) on a tmpfs of ``size_mb``."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", TAG, str(folder)], check=True,
                   capture_output=True, text=True, timeout=30)
    try:
        yield folder
    finally:
        _unmount(str(folder))


@contextmanager
def data_moved_onto(private, service: str, folder: Path, headroom_mb: int):
    """A private-stack service's data ``folder`` on a tmpfs of its present size + ``headroom_mb``:
    the service stopped, its data copied onto the mount, started; afterwards stopped again, its
    data (what it wrote meanwhile) copied back onto the real disk, and started as before."""
    private.down(service)
    used_mb = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) // (1 << 20)
    outside = Path(tempfile.mkdtemp(prefix=f"sandan-faults-{service}-"))
    try:
        shutil.copytree(folder, outside / "data", symlinks=True)
        with mounted(folder, used_mb + headroom_mb):
            shutil.copytree(outside / "data", folder, symlinks=True, dirs_exist_ok=True)
            private.up()
            try:
                yield folder
            finally:
                private.down(service)
                free(folder)
                shutil.rmtree(outside / "data")
                shutil.copytree(folder, outside / "data", symlinks=True)
        shutil.rmtree(folder)
        shutil.copytree(outside / "data", folder, symlinks=True)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
        private.up()


def _unmount(point: str) -> None:
    # lazy: a process that still has a file open there must not keep the mount alive
    subprocess.run(["umount", "-l", point], check=False, capture_output=True, timeout=30)


def fill(folder: Path) -> int:
    """Writes a filler file until the filesystem is full; returns its size in bytes. Only on a
    filesystem of this module's mounted right at ``folder``, and never more than its size."""
    if str(folder) not in _mounts():
        raise NotASmallDisk(f"{folder} is not a small filesystem of this suite (mounted: {_mounts()})")
    stats = os.statvfs(folder)
    limit = stats.f_blocks * stats.f_frsize
    written = 0
    chunk = b"\0" * (1 << 16)
    with open(folder / FILLER, "wb", buffering=0) as out:
        while True:
            if written >= limit:
                raise NotASmallDisk(f"{folder} took {written} bytes, its whole size, and is still not full")
            try:
                written += out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written


def free(folder: Path) -> None:
    (folder / FILLER).unlink(missing_ok=True)


def cleanup() -> list[str]:
    """Unmounts every filesystem of this module still mounted; returns their mount points."""
    points = _mounts()
    for point in points:
        _unmount(point)
    return points
