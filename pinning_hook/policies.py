"""Pinning policies: what happens to the vCPUs that the pin list leaves floating.

- `float` (default): bad entries are logged and their vCPUs float over all
  available host CPUs.
- `strict`: any problem with the pin list fails OnDefineDomain, so the VM
  does not start with pins other than the ones written.
- `auto`: each vCPU that would float gets one free host CPU of its own.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable

from pinning_hook.cpusets import format_cpuset
from pinning_hook.pinlist import quote
from pinning_hook.problems import Problem, ProblemList
from pinning_hook.topology import HostTopology
from pinning_hook.vmi import CpuTopology


class Policy(enum.Enum):
    FLOAT = "float"
    STRICT = "strict"
    AUTO = "auto"


def parse_policy(value: str | None) -> tuple[Policy, Problem | None]:
    """Read the policy annotation's value; an unknown value yields `float` and a Problem."""
    if value is None:
        return Policy.FLOAT, None
    try:
        return Policy(value.strip().lower()), None
    except ValueError:
        accepted = ", ".join(policy.value for policy in Policy)
        return Policy.FLOAT, Problem(
            code="unknown-policy",
            message=f"unknown pinning policy {value[:40]!r}; using float",
            hint=f"set the policy annotation to one of: {accepted}",
        )


def assign_free_cpus(
    floating: Iterable[int],
    *,
    free: frozenset[int],
    guest: CpuTopology,
    host: HostTopology,
) -> tuple[dict[int, frozenset[int]], list[Problem]]:
    """Give each floating vCPU one free host CPU, following the guest topology.

    The choice is deterministic: guest sockets in order, each placed in the
    first host NUMA node (or package) with room for all its floating vCPUs,
    else spread over nodes in order. Within a node, guest thread siblings go
    to the SMT siblings of one host core when one has room, and a vCPU
    without guest siblings takes a wholly free host core before sharing one.
    vCPUs left over when free CPUs run out keep floating, with one Problem.
    """
    remaining = set(free)
    assigned: dict[int, frozenset[int]] = {}
    unplaced: list[int] = []

    threads = max(guest.threads, 1)
    per_socket = max(guest.cores, 1) * threads
    by_socket: dict[int, list[int]] = defaultdict(list)
    for vcpu in sorted(set(floating)):
        by_socket[vcpu // per_socket].append(vcpu)

    for socket in sorted(by_socket):
        vcpus = by_socket[socket]
        for node_cpus in _nodes_for(len(vcpus), remaining, host):
            vcpus = _place_in(vcpus, node_cpus, remaining, assigned, threads, host)
            if not vcpus:
                break
        unplaced += vcpus

    problems = []
    if unplaced:
        problems.append(
            Problem(
                code="auto-exhausted",
                message=f"no free host CPU left for vCPUs {format_cpuset(unplaced)}; they float",
                hint="pin them explicitly or free host CPUs; before the auto policy ran, the free CPUs were "
                f"{format_cpuset(free) or 'none'}",
            )
        )
    return assigned, problems


def _nodes_for(count: int, remaining: set[int], host: HostTopology) -> list[frozenset[int]]:
    """Order the host's locality domains for a guest socket of `count` floating vCPUs.

    The first domain that fits them all comes first; then every domain in id order.
    """
    domains: dict[int, set[int]] = defaultdict(set)
    for cpu in remaining:
        domains[host.locality_of(cpu)].add(cpu)
    ordered = [frozenset(domains[key]) for key in sorted(domains)]
    fitting = [cpus for cpus in ordered if len(cpus) >= count]
    return fitting[:1] + [cpus for cpus in ordered if cpus not in fitting[:1]]


def _place_in(
    vcpus: list[int],
    node_cpus: frozenset[int],
    remaining: set[int],
    assigned: dict[int, frozenset[int]],
    threads: int,
    host: HostTopology,
) -> list[int]:
    """Assign as many vCPUs as fit on the node's remaining CPUs; return the rest."""
    left: list[int] = []
    guest_cores: dict[int, list[int]] = defaultdict(list)
    for vcpu in vcpus:
        guest_cores[vcpu // threads].append(vcpu)

    for core in sorted(guest_cores):
        siblings = guest_cores[core]
        chosen = _pick_cpus(len(siblings), node_cpus & remaining, host)
        for vcpu, cpu in zip(siblings, chosen, strict=False):
            assigned[vcpu] = frozenset({cpu})
            remaining.discard(cpu)
        left += siblings[len(chosen) :]
    return left


def _pick_cpus(count: int, free: frozenset[int], host: HostTopology) -> list[int]:
    """Choose up to `count` free CPUs for one guest core's floating threads."""
    host_cores = _free_host_cores(free, host)
    if count > 1:
        # Guest thread siblings share one host core when one has room.
        fitting = [cpus for cpus in host_cores if len(cpus) >= count]
        if fitting:
            return sorted(fitting[0])[:count]
    else:
        # A lone vCPU takes a host core whose threads are all free, so that
        # it shares its core with no other vCPU.
        whole = [cpus for cpus in host_cores if cpus == host.core_of(min(cpus))]
        if whole:
            return [min(whole[0])]
    return sorted(free)[:count]


def _free_host_cores(cpus: frozenset[int], host: HostTopology) -> list[frozenset[int]]:
    """Group free CPUs by physical core, in order of their lowest CPU id."""
    cores: dict[int, set[int]] = defaultdict(set)
    for cpu in cpus:
        cores[min(host.core_of(cpu))].add(cpu)
    return [frozenset(cores[key]) for key in sorted(cores)]


# gRPC carries the status message in a trailer, and clients reject trailers
# beyond 8 KiB by default (grpc.max_metadata_size), so the list is cut.
MAX_STRICT_MESSAGE_CHARACTERS = 4000


def strict_message(problems: ProblemList) -> str:
    """Build the status message that rejects a VM under the strict policy.

    It lists the problems in the log's wording, as many as fit in
    MAX_STRICT_MESSAGE_CHARACTERS, then counts the rest.
    """
    text = "the strict pinning policy rejects the pin list: "
    for index, problem in enumerate(problems):
        separator = "; " if index else ""
        item = problem.message
        if problem.entry is not None and problem.entry not in item:
            item += f" (entry {quote(problem.entry)})"
        if len(text) + len(separator) + len(item) > MAX_STRICT_MESSAGE_CHARACTERS:
            return f"{text}; and {len(problems) - index} more (see the hook sidecar's log)"
        text += separator + item
    listed = len(list(problems))
    if listed < len(problems):
        text += f"; and {len(problems) - listed} more (see the hook sidecar's log)"
    return text
