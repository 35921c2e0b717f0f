"""A real `hermes gateway run` subprocess for platform tests, and its HERMES_HOME.

``write_home`` writes config.yaml (the loopback ScriptedLLM as the provider
plus the given ``gateway`` section) and .env; ``GatewayProcess`` runs the
gateway with its output in a file and waits for log lines, so a test can tell
when a platform connected without any HTTP endpoint of its own.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from conftest import HERMES, clean_env
from peers.llm_server import ScriptedLLM


def write_home(
    home: Path,
    llm: ScriptedLLM,
    gateway: dict[str, Any],
    env: dict[str, str] | None = None,
    model: dict[str, Any] | None = None,
) -> None:
    """config.yaml and .env for a gateway answering with ``llm``; ``model`` adds model keys."""
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "model": {
            "provider": "custom",
            "base_url": llm.openai_base_url,
            "default": "test-model",
            **(model or {}),
        },
        "gateway": gateway,
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    (home / ".env").write_text("".join(f"{k}={v}\n" for k, v in (env or {}).items()))


class GatewayProcess:
    """One `hermes gateway run`, its stdout and stderr in ``workdir/gateway-N.out``."""

    def __init__(
        self, home: Path, workdir: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.home = home
        self.log = workdir / f"gateway-{time.monotonic_ns()}.out"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [str(HERMES), "gateway", "run", *args],
            env=clean_env(home, **(env or {})),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, pattern: str, *, count: int = 1, timeout: float = 30.0) -> str:
        """Wait until ``pattern`` (a regex) matched ``count`` times in the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if len(re.findall(pattern, text)) >= count:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited ({self.proc.returncode}):\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {pattern!r} in the gateway log:\n{self.output()}")

    def wait_ready(self, timeout: float = 30.0) -> GatewayProcess:
        """Wait until the gateway says it is running (its platforms started)."""
        self.wait_for_log("gateway running", timeout=timeout)
        return self

    def wait_exit(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._out.close()
        return code

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
