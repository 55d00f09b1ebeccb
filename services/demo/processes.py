"""Starting and stopping sandan's own processes for the demo (and the benchmarks)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.common import config


class ServiceProcess:
    """One sandan process (`sandan worker X`, `sandan gateway serve`), logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", *self.args], env=self.env,
                                     stdout=handle, stderr=subprocess.STDOUT, cwd=config.PROJECT_ROOT,
                                     start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no final commit, no flush (crash tests)."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def service_env(prefix: str, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(SANDAN_TOPIC_PREFIX=prefix, PYTHONPATH=str(config.PROJECT_ROOT))
    env.update(extra)
    return env
