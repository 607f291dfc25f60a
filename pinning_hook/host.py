"""The host CPUs that planning works with: the available CPUs and their topology."""

from __future__ import annotations

import dataclasses
import pathlib

from pinning_hook.errors import HostCpuError
from pinning_hook.hostcpus import SYSFS_CPU_ROOT, available_within, read_online_cpus
from pinning_hook.topology import NO_TOPOLOGY, HostTopology, read_host_topology, topology_of


@dataclasses.dataclass(frozen=True)
class HostCpuSource:
    """Source of the available host CPUs and of the topology.

    `override` replaces the detected available CPUs (`--host-cpus`), but the
    topology is still read from sysfs, for the CPUs that exist there.
    """

    override: frozenset[int] | None = None
    sysfs_cpu_root: pathlib.Path = SYSFS_CPU_ROOT

    def read(self) -> tuple[frozenset[int], HostTopology]:
        """Return the available CPUs and the topology, reading sysfs's online list once.

        Raises HostCpuError when the available CPUs cannot be read. With an
        override, an unreadable sysfs gives NO_TOPOLOGY instead.
        """
        try:
            online = read_online_cpus(self.sysfs_cpu_root)
        except HostCpuError:
            if self.override is None:
                raise
            return self.override, NO_TOPOLOGY
        available = self.override if self.override is not None else available_within(online)
        return available, topology_of(self.sysfs_cpu_root, online)

    def topology(self) -> HostTopology:
        """Return the host topology, or NO_TOPOLOGY where sysfs cannot be read."""
        try:
            return read_host_topology(self.sysfs_cpu_root)
        except HostCpuError:
            return NO_TOPOLOGY
