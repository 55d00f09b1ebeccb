"""The machine a benchmark ran on, as every benchmark's JSON names it.

The interpreter's path is part of it: two builds of the same Python version differ by a
quarter in sandan's CPU per declaration (README, "Which Python").
"""
from __future__ import annotations

import os
import platform
import sys


def describe() -> str:
    interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()} ({interpreter})"
