"""Runs the real `pinning-hook serve` in a subprocess for the tests."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from launcher_client import LauncherClient


class Sidecar:
    """A `pinning-hook serve` process on a private socket directory."""

    def __init__(self, socket_dir: pathlib.Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.socket_dir = socket_dir
        self.command = [sys.executable, "-m", "pinning_hook", "serve", "--socket-dir", str(socket_dir), *args]
        self.env = {**os.environ, "CONTAINER_NAME": "hook-sidecar-0", **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.stderr = ""

    @property
    def socket_path(self) -> pathlib.Path:
        return self.socket_dir / "pinning-hook-hook-sidecar-0.sock"

    def start(self, timeout: float = 10.0) -> Sidecar:
        # Run from the socket directory, so that `python -m` imports the
        # installed package, which carries the generated stubs, and not the
        # source tree.
        self.process = subprocess.Popen(
            self.command, cwd=self.socket_dir, env=self.env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + timeout
        while not self._accepts_connections():
            if self.process.poll() is not None:
                log = self.process.stderr.read() if self.process.stderr else ""
                raise RuntimeError(f"sidecar exited with {self.process.returncode}: {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sidecar did not listen on {self.socket_path} within {timeout} s")
            time.sleep(0.02)
        return self

    def _accepts_connections(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.socket_path))
        except OSError:
            return False
        finally:
            probe.close()
        return True

    def client(self) -> LauncherClient:
        return LauncherClient(self.socket_path)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit and collect its log."""
        assert self.process is not None
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
            raise
        self.stderr = stderr
        return self.process.returncode

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait()

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.splitlines() if line.strip()]

    def __enter__(self) -> Sidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
