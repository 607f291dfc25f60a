"""Runs the real `pinning-hook serve` in a subprocess for the tests."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
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
        self._log_path: pathlib.Path | None = None
        self.stderr = ""

    @property
    def socket_path(self) -> pathlib.Path:
        return self.socket_dir / "pinning-hook-hook-sidecar-0.sock"

    def start(self, timeout: float = 10.0) -> Sidecar:
        # Run from the socket directory, so that `python -m` imports the
        # installed package, which carries the generated stubs, and not the
        # source tree.
        # The log goes to a file opened for appending, not to a pipe: a pipe
        # that no process reads fills up after 64 KiB and then blocks the
        # sidecar's logging.
        descriptor, log_name = tempfile.mkstemp(prefix="pinning-hook-log-")
        os.close(descriptor)
        self._log_path = pathlib.Path(log_name)
        with self._log_path.open("a") as log:
            self.process = subprocess.Popen(self.command, cwd=self.socket_dir, env=self.env, stderr=log)
        deadline = time.monotonic() + timeout
        while not self._accepts_connections():
            if self.process.poll() is not None:
                self.wait()
                raise RuntimeError(f"sidecar exited with {self.process.returncode}: {self.stderr}")
            if time.monotonic() > deadline:
                self.stop()
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
        assert self.process is not None and self._log_path is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self.stderr = self.read_log()
            self._log_path.unlink(missing_ok=True)
        return self.process.returncode

    def read_log(self) -> str:
        """Return what the sidecar has logged so far, or all of it once it has exited."""
        if self._log_path is None or not self._log_path.exists():
            return self.stderr
        return self._log_path.read_text(encoding="utf-8", errors="backslashreplace")

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
        # Also after the process exited by itself, so that its log file is removed.
        if self.process is not None and self._log_path is not None and self._log_path.exists():
            self.stop()
