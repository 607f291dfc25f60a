"""Advisories: pins that work but fight the hardware, logged as warnings.

None of these changes a pin. They point at layouts that cost latency: guest
thread siblings on host CPUs of different physical cores, one VM spread
over NUMA nodes, and two vCPUs competing for one host CPU.
"""

from __future__ import annotations

from collections.abc import Mapping

from pinning_hook.cpusets import format_cpuset
from pinning_hook.problems import Problem
from pinning_hook.topology import HostTopology
from pinning_hook.vmi import CpuTopology


def check_pins(pins: Mapping[int, frozenset[int]], *, guest: CpuTopology, host: HostTopology) -> list[Problem]:
    """Return one advisory per guest core split across host cores, NUMA spread, or shared CPU."""
    return [*_split_guest_cores(pins, guest, host), *_numa_spread(pins, host), *_shared_cpus(pins)]


def _split_guest_cores(pins: Mapping[int, frozenset[int]], guest: CpuTopology, host: HostTopology) -> list[Problem]:
    if guest.threads < 2 or not host.siblings:
        return []
    # A CPU outside sysfs (given with --host-cpus) has no known core, so
    # only guest cores whose pins all lie within sysfs can be judged.
    known = host.siblings.keys()
    guest_cores: dict[int, list[int]] = {}
    for vcpu in sorted(pins):
        guest_cores.setdefault(vcpu // guest.threads, []).append(vcpu)
    unknown_cores = {vcpu // guest.threads for vcpu, cpus in pins.items() if not cpus <= known}

    problems = []
    for core, siblings in guest_cores.items():
        if len(siblings) < 2 or core in unknown_cores:
            continue
        cpus_used = frozenset().union(*(pins[vcpu] for vcpu in siblings))
        if len({min(host.core_of(cpu)) for cpu in cpus_used}) > 1:
            problems.append(
                Problem(
                    code="guest-siblings-split",
                    message=f"vCPUs {format_cpuset(siblings)} are thread siblings in the guest, "
                    f"but host CPUs {format_cpuset(cpus_used)} are not SMT siblings",
                    hint="pin guest thread siblings to the thread_siblings_list of one host core"
                    if host.has_smt
                    else "this host has no SMT; give the guest one thread per core",
                    advisory=True,
                )
            )
    return problems


def _numa_spread(pins: Mapping[int, frozenset[int]], host: HostTopology) -> list[Problem]:
    nodes = host.nodes_of(cpu for cpus in pins.values() for cpu in cpus)
    if len(nodes) < 2:
        return []
    return [
        Problem(
            code="numa-spread",
            message=f"the pins span host NUMA nodes {format_cpuset(nodes)}",
            hint="pin the VM within one NUMA node, or give the guest a matching NUMA topology",
            advisory=True,
        )
    ]


def _shared_cpus(pins: Mapping[int, frozenset[int]]) -> list[Problem]:
    """Report each host CPU that is the whole pin of one vCPU and within the pin of another."""
    # Only a CPU that is some vCPU's whole pin can be reported, so the
    # search starts from those: a one-to-one pin list costs one pass.
    singles = [cpus for cpus in pins.values() if len(cpus) == 1]
    if len(singles) == len(pins) and len(frozenset().union(*singles)) == len(singles):
        return []

    exclusive: dict[int, list[int]] = {}
    for vcpu, cpus in pins.items():
        if len(cpus) == 1:
            exclusive.setdefault(next(iter(cpus)), []).append(vcpu)
    if not exclusive:
        return []

    sharing = {cpu: list(vcpus) for cpu, vcpus in exclusive.items()}
    for vcpu, cpus in pins.items():
        if len(cpus) > 1:
            for cpu in cpus & exclusive.keys():
                sharing[cpu].append(vcpu)

    problems = []
    for cpu, vcpus in sorted(sharing.items()):
        if len(vcpus) > 1:
            problems.append(
                Problem(
                    code="shared-cpu",
                    message=f"vCPUs {format_cpuset(vcpus)} share host CPU {cpu}",
                    hint="give each vCPU a host CPU of its own unless the sharing is intended",
                    advisory=True,
                )
            )
    return problems
