"""The host's CPU topology, read from sysfs: SMT siblings, packages and NUMA nodes.

Only online CPUs are read, because an offline CPU has no topology directory
and present does not mean online (a host may have 0-255 present and 0-127
online). CPU ids are not assumed to be contiguous. A CPU whose topology
files are missing still counts, as its own core in package and node -1, so
that a container with a partial sysfs degrades to "no topology" rather than
failing.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Iterable, Mapping

from pinning_hook.cpusets import CpusetSyntaxError, parse_cpuset
from pinning_hook.hostcpus import SYSFS_CPU_ROOT, read_online_cpus

UNKNOWN = -1


@dataclasses.dataclass(frozen=True)
class HostTopology:
    """The placement of each online host CPU: its SMT siblings, package and NUMA node."""

    # Host CPU -> the CPUs sharing its physical core, itself included.
    siblings: Mapping[int, frozenset[int]]
    # Host CPU -> physical_package_id, or UNKNOWN.
    package: Mapping[int, int]
    # Host CPU -> NUMA node, or UNKNOWN.
    numa_node: Mapping[int, int]

    @property
    def has_smt(self) -> bool:
        """Whether any physical core runs more than one hardware thread."""
        return any(len(group) > 1 for group in self.siblings.values())

    def core_of(self, cpu: int) -> frozenset[int]:
        return self.siblings.get(cpu, frozenset({cpu}))

    def locality_of(self, cpu: int) -> int:
        """Return the NUMA node of a CPU, or its package when NUMA is unknown."""
        node = self.numa_node.get(cpu, UNKNOWN)
        return node if node != UNKNOWN else self.package.get(cpu, UNKNOWN)

    def nodes_of(self, cpus: Iterable[int]) -> frozenset[int]:
        """Return the known NUMA nodes that these CPUs belong to."""
        return frozenset(node for cpu in cpus if (node := self.numa_node.get(cpu, UNKNOWN)) != UNKNOWN)


NO_TOPOLOGY = HostTopology(siblings={}, package={}, numa_node={})


def read_host_topology(sysfs_cpu_root: pathlib.Path = SYSFS_CPU_ROOT) -> HostTopology:
    """Read the topology of the online CPUs below `sysfs_cpu_root` (/sys/devices/system/cpu).

    The result is cached per root and set of online CPUs, so CPU hotplug
    is seen on the next call.
    """
    return topology_of(sysfs_cpu_root, read_online_cpus(sysfs_cpu_root))


@functools.lru_cache(maxsize=8)
def topology_of(sysfs_cpu_root: pathlib.Path, online: frozenset[int]) -> HostTopology:
    """Read the topology of the given online CPUs, cached per root and CPU set."""
    siblings: dict[int, frozenset[int]] = {}
    package: dict[int, int] = {}
    for cpu in sorted(online):
        topology_dir = sysfs_cpu_root / f"cpu{cpu}" / "topology"
        group = _read_cpuset_file(topology_dir / "thread_siblings_list")
        siblings[cpu] = (group & online) | {cpu} if group is not None else frozenset({cpu})
        package[cpu] = _read_int_file(topology_dir / "physical_package_id")

    numa_node: dict[int, int] = {}
    node_root = sysfs_cpu_root.parent / "node"
    for node_dir in sorted(node_root.glob("node[0-9]*")):
        cpus = _read_cpuset_file(node_dir / "cpulist")
        node_id = int(node_dir.name[len("node") :])
        for cpu in (cpus or frozenset()) & online:
            numa_node[cpu] = node_id

    return HostTopology(siblings=siblings, package=package, numa_node=numa_node)


def _read_cpuset_file(path: pathlib.Path) -> frozenset[int] | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text:
        # A memory-only NUMA node has an empty cpulist.
        return frozenset()
    try:
        return parse_cpuset(text)
    except CpusetSyntaxError:
        return None


def _read_int_file(path: pathlib.Path) -> int:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError):
        return UNKNOWN
