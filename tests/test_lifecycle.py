"""The sidecar process across faults: kill -9, a read-only socket directory, a stop with a call in flight."""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from conftest import GOLDEN_DIR, vmi_bytes
from sidecar import Sidecar

DOMAIN = (GOLDEN_DIR / "launcher-4vcpu.xml").read_bytes()
WAIT_SECONDS = 10


def require_mount_namespace() -> None:
    """Skip unless this process may create a mount namespace; fail instead when CI=true."""
    if shutil.which("unshare") is not None:
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10)
        if probe.returncode == 0:
            return
    reason = "needs root and unshare (util-linux) to create a private mount namespace"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def wait_for(condition: Callable[[], bool], event: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{event} did not happen within {WAIT_SECONDS} s")
        time.sleep(0.02)


def test_restart_after_kill_9(socket_dir: pathlib.Path) -> None:
    killed = Sidecar(socket_dir, "--host-cpus", "0-3").start()
    killed.process.kill()
    killed.wait()
    assert killed.socket_path.exists()

    with Sidecar(socket_dir, "--host-cpus", "0-3") as restarted:
        output = restarted.client().on_define_domain(DOMAIN, vmi_bytes(["0-2"], cores=4))
    messages = [record["msg"] for record in restarted.log_records()]

    assert b'<vcpupin vcpu="0" cpuset="2">' in output
    assert any(message.startswith("removed stale socket") for message in messages)


def test_read_only_socket_dir_fails(socket_dir: pathlib.Path) -> None:
    """Root ignores permission bits but not a read-only mount, made here in a private mount namespace."""
    require_mount_namespace()
    mount_read_only = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    serve = [sys.executable, "-m", "pinning_hook", "serve", "--socket-dir", str(socket_dir)]
    command = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount_read_only, str(socket_dir), *serve]

    result = subprocess.run(command, cwd=socket_dir, capture_output=True, text=True, timeout=30)

    assert result.returncode == 1
    assert f"socket directory '{socket_dir}' is not writable by uid 0" in result.stderr
    assert list(socket_dir.iterdir()) == []


def cpu_seconds(pid: int) -> float:
    """Return the CPU time that process `pid` has used, user and system, from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood_pin_list(count: int) -> list[str]:
    """Pin `count` vCPUs that the 4-vCPU domain lacks, then vCPU 0 to host CPU 2."""
    return [f"{vcpu}-1" for vcpu in range(4, count + 3)] + ["0-2"]


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "Shutdown"])
def test_stop_finishes_call_in_flight(socket_dir: pathlib.Path, stop: str) -> None:
    # About 0.6 s of work for the sidecar on a 2-core VM: long enough to
    # stop it halfway, short enough to finish within its 1.5 s grace period.
    vmi = vmi_bytes(flood_pin_list(60_000), cores=4)

    with Sidecar(socket_dir, "--host-cpus", "0-3") as sidecar, concurrent.futures.ThreadPoolExecutor(1) as pool:
        client = sidecar.client()
        idle = cpu_seconds(sidecar.process.pid)
        in_flight = pool.submit(client.on_define_domain, DOMAIN, vmi)
        # The sidecar uses CPU time only once it works on the call.
        wait_for(lambda: cpu_seconds(sidecar.process.pid) > idle + 0.05, "work on the call")
        if stop == "Shutdown":
            client.shutdown()
        else:
            sidecar.process.send_signal(getattr(signal, stop))
        output = in_flight.result(timeout=WAIT_SECONDS)
        exit_code = sidecar.wait()
    messages = [record["msg"] for record in sidecar.log_records()]

    assert b'<vcpupin vcpu="0" cpuset="2">' in output
    assert exit_code == 0
    assert not sidecar.socket_path.exists()
    stopping = next(index for index, message in enumerate(messages) if message.startswith("stopping: "))
    # The stop began while the call was still in flight.
    assert stopping < messages.index("OnDefineDomain completed")
