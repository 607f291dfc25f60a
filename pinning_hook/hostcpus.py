"""The host CPUs that a vCPU pin may use.

By default these are the online CPUs, read from sysfs, intersected with the
sidecar's own CPU affinity. Inside a virt-launcher pod the sidecar shares
the node's shared CPU pool with the compute container, and libvirt there
applies pins with sched_setaffinity, so a pin outside that affinity makes
QEMU fail to start. An explicit cpuset (`--host-cpus`) overrides both.
"""

from __future__ import annotations

import os
import pathlib

from pinning_hook.cpusets import CpusetSyntaxError, parse_cpuset
from pinning_hook.errors import HostCpuError, InvalidInput

SYSFS_CPU_ROOT = pathlib.Path("/sys/devices/system/cpu")
HOST_CPUS_ENV = "PINNING_HOOK_HOST_CPUS"
# One read returns a whole sysfs attribute, which is at most one page. The
# bound also fits the longest list libvirt allows: 16384 single ids, 85 KiB.
SYSFS_READ_BYTES = 128 * 1024


def read_online_cpus(sysfs_cpu_root: pathlib.Path = SYSFS_CPU_ROOT) -> frozenset[int]:
    """Read the online CPUs from `<root>/online`, such as `0-3,8-11`."""
    path = sysfs_cpu_root / "online"
    try:
        # Every OnDefineDomain call reads this file, and read_text's
        # text-file layer costs more than the read itself.
        descriptor = os.open(path, os.O_RDONLY)
        try:
            text = os.read(descriptor, SYSFS_READ_BYTES).decode("ascii")
        finally:
            os.close(descriptor)
    except (OSError, UnicodeDecodeError) as error:
        raise HostCpuError(f"cannot read the online host CPUs from {path}: {error}") from error

    try:
        return parse_cpuset(text)
    except CpusetSyntaxError as error:
        raise HostCpuError(f"{path} contains {text.strip()!r}, which is not a CPU list: {error}") from error


def detect_available_cpus(sysfs_cpu_root: pathlib.Path = SYSFS_CPU_ROOT) -> frozenset[int]:
    """Return the online CPUs that this process may also run on."""
    return available_within(read_online_cpus(sysfs_cpu_root))


def available_within(online: frozenset[int]) -> frozenset[int]:
    """Return the CPUs of `online` that this process may run on, raising HostCpuError if none."""
    available = online & frozenset(os.sched_getaffinity(0))
    if not available:
        raise HostCpuError(
            f"none of the online host CPUs ({sorted(online)}) is in this process's CPU affinity; "
            f"set --host-cpus or {HOST_CPUS_ENV}"
        )
    return available


def parse_host_cpus_option(text: str, *, source: str) -> frozenset[int]:
    """Parse a `--host-cpus` style cpuset, naming `source` in the error."""
    try:
        cpus = parse_cpuset(text)
    except CpusetSyntaxError as error:
        raise InvalidInput(f"{source} {text!r} is not a valid cpuset: {error}; write it like '0-3,8-11'") from error
    if not cpus:
        raise InvalidInput(f"{source} {text!r} leaves no host CPU; name at least one CPU")
    return cpus
