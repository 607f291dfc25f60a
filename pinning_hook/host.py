"""The host CPUs that planning works with: the available CPUs and their topology."""

from __future__ import annotations

import dataclasses
import pathlib

from pinning_hook.errors import HostCpuError
from pinning_hook.hostcpus import SYSFS_CPU_ROOT, detect_available_cpus
from pinning_hook.topology import NO_TOPOLOGY, HostTopology, read_host_topology


@dataclasses.dataclass(frozen=True)
class HostCpuSource:
    """Source of the available host CPUs and of the topology.

    `override` replaces the detected available CPUs (`--host-cpus`), but the
    topology is still read from sysfs, for the CPUs that exist there.
    """

    override: frozenset[int] | None = None
    sysfs_cpu_root: pathlib.Path = SYSFS_CPU_ROOT

    def available(self) -> frozenset[int]:
        """Return the host CPUs that a pin may use; raises HostCpuError when they cannot be read."""
        if self.override is not None:
            return self.override
        return detect_available_cpus(self.sysfs_cpu_root)

    def topology(self) -> HostTopology:
        """Return the host topology, or NO_TOPOLOGY where sysfs cannot be read."""
        try:
            return read_host_topology(self.sysfs_cpu_root)
        except HostCpuError:
            return NO_TOPOLOGY
