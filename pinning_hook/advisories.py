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
    problems = []
    first_vcpus = sorted({vcpu - vcpu % guest.threads for vcpu in pins})
    for first in first_vcpus:
        siblings = [vcpu for vcpu in range(first, first + guest.threads) if vcpu in pins]
        if len(siblings) < 2:
            continue
        cores = {min(host.core_of(cpu)) for vcpu in siblings for cpu in pins[vcpu]}
        if len(cores) > 1:
            cpus = format_cpuset(set().union(*(pins[vcpu] for vcpu in siblings)))
            problems.append(
                Problem(
                    code="guest-siblings-split",
                    message=f"vCPUs {format_cpuset(siblings)} are thread siblings in the guest, "
                    f"but host CPUs {cpus} are not SMT siblings",
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
    owners: dict[int, list[int]] = {}
    for vcpu, cpus in sorted(pins.items()):
        for cpu in cpus:
            owners.setdefault(cpu, []).append(vcpu)

    problems = []
    for cpu, vcpus in sorted(owners.items()):
        exclusive = [vcpu for vcpu in vcpus if pins[vcpu] == frozenset({cpu})]
        if len(vcpus) > 1 and exclusive:
            problems.append(
                Problem(
                    code="shared-cpu",
                    message=f"vCPUs {format_cpuset(vcpus)} share host CPU {cpu}",
                    hint="give each vCPU a host CPU of its own unless the sharing is intended",
                    advisory=True,
                )
            )
    return problems
