"""The fault suite's private Kafka and Redis (``stack.env``), driven by scripts/stack.sh.

The fault tests stop, restart and wipe these, so every setting is checked against the
shared stack's defaults before anything runs: a slip in ``stack.env`` must not take down
the stack other developers and the normal test suite use.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from services.common import config

STACK_ENV = Path(__file__).with_name("stack.env")
STACK_SH = config.PROJECT_ROOT / "scripts" / "stack.sh"
_PORTS = ("SANDAN_KAFKA_PORT", "SANDAN_KAFKA_CONTROLLER_PORT", "SANDAN_REDIS_PORT", "SANDAN_PROMETHEUS_PORT")


def settings() -> dict[str, str]:
    """``stack.env`` as environment variables (the data folder made absolute), checked apart from the shared stack."""
    values = {}
    for line in STACK_ENV.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    values["SANDAN_LOCAL_DIR"] = str(config.PROJECT_ROOT / values["SANDAN_LOCAL_DIR"])
    defaults = {s.env: s.default for s in config.SETTINGS}
    clashes = [name for name in (*_PORTS, "SANDAN_LOCAL_DIR") if name in defaults and values.get(name) == defaults[name]]
    if clashes or not values["SANDAN_KAFKA_BOOTSTRAP"].endswith(":" + values["SANDAN_KAFKA_PORT"]) \
            or f":{values['SANDAN_REDIS_PORT']}/" not in values["SANDAN_REDIS_URL"]:
        raise RuntimeError(f"{STACK_ENV} must name a stack apart from the shared one (clashes: {clashes or 'urls'})")
    return values


class PrivateStack:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.local_dir = Path(env["SANDAN_LOCAL_DIR"])

    def sh(self, *args: str) -> str:
        done = subprocess.run([str(STACK_SH), *args], env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=300, check=False)
        if done.returncode not in (0, 3):  # 3: `status` says a service is stopped
            raise RuntimeError(f"scripts/stack.sh {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    def running(self) -> set[str]:
        lines = self.sh("status").splitlines()
        return {line.split(":")[0] for line in lines if ": running" in line}

    def up(self) -> None:
        """Start whatever is stopped and wait until it answers (stack.sh waits; this checks it did)."""
        out = self.sh("up")
        missing = {"kafka", "redis"} - self.running()
        if missing:
            raise RuntimeError(f"scripts/stack.sh up left {', '.join(sorted(missing))} stopped:\n{out}")

    def reset(self) -> None:
        """Stopped, its data deleted: the next `up` starts an empty broker and Redis."""
        self.sh("reset")

    def down(self, *services: str) -> None:
        self.sh("down", *services)

    def restart(self, service: str, pause_s: float) -> None:
        """Stop one service (SIGTERM), leave it down for ``pause_s``, start it and wait until it answers."""
        self.down(service)
        time.sleep(pause_s)
        self.up()

    def wipe_redis(self) -> None:
        """Redis loses its disk: stopped, its append-only file deleted, started empty."""
        self.down("redis")
        shutil.rmtree(self.local_dir / "redis" / "appendonlydir", ignore_errors=True)
        self.up()

    def runs_dir(self) -> Path:
        """Where each scenario keeps its services' logs and data."""
        return self.local_dir / "runs"
