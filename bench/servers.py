"""Servers under test: subprocesses on their own unix sockets, and their CPU time and memory from /proc."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO

import grpc

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tools"))
from launcher_client import LauncherClient  # noqa: E402

# The socket name `pinning-hook serve` chooses for CONTAINER_NAME=hook-sidecar-0.
CONTAINER_NAME = "hook-sidecar-0"
SOCKET_NAME = f"pinning-hook-{CONTAINER_NAME}.sock"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.002
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HOST_CPUS_ENV = "PINNING_HOOK_HOST_CPUS"


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of a process and all its threads."""
    text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which may hold spaces: state is
    # field 3, utime field 14 and stime field 15.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_mib(pid: int, key: str) -> float:
    """Read a `kB` line such as VmRSS or VmHWM from /proc/PID/status, in MiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0]) / 1024
    raise KeyError(f"/proc/{pid}/status has no {key} line")


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux 4.0 and later)."""
    pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")


def children_cpu_seconds() -> float:
    """Return the CPU time of the child processes that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass
class Server:
    """A server subprocess on its own socket, with its log in a file."""

    name: str
    process: subprocess.Popen[bytes]
    socket_path: pathlib.Path
    log: IO[bytes]
    started: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self) -> LauncherClient:
        return LauncherClient(self.socket_path)

    def wait_until_answering(self, probe: Callable[[], object]) -> float:
        """Call `probe` until it succeeds; return the wall seconds since exec."""
        deadline = self.started + START_TIMEOUT_SECONDS
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log.name}")
            if self.socket_path.exists():
                try:
                    probe()
                    return time.perf_counter() - self.started
                except grpc.RpcError:
                    pass
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"{self.name} did not respond within {START_TIMEOUT_SECONDS} s; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        if self.process.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log.name}")


def start_server(name: str, command: list[str], work_dir: pathlib.Path) -> Server:
    """Start `command` with its own socket directory under `work_dir`; its stderr goes to NAME.log."""
    socket_dir = work_dir / name
    socket_dir.mkdir()
    socket_path = socket_dir / SOCKET_NAME
    log = (work_dir / f"{name}.log").open("wb")
    environment = {**os.environ, "CONTAINER_NAME": CONTAINER_NAME}
    # Each sidecar finds its host CPUs itself, or gets them as an option.
    environment.pop(HOST_CPUS_ENV, None)
    # `{socket_dir}` and `{socket_path}` in the command are filled in here.
    command = [part.format(socket_dir=socket_dir, socket_path=socket_path) for part in command]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=work_dir, env=environment, stdin=subprocess.DEVNULL, stderr=log)
    return Server(name=name, process=process, socket_path=socket_path, log=log, started=started)
