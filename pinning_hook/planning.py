"""Planning: which host CPUs each vCPU may run on.

Planning is pure. It takes the parsed pin list, the domain's vCPU count and
the host CPUs that pins may use, and returns a Plan. An entry that cannot be
honoured is dropped with a Problem, and its vCPU floats: it keeps the pin
the domain already had, or else runs on any available host CPU.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping

from pinning_hook.cpusets import format_cpuset
from pinning_hook.pinlist import PinEntry, quote, vcpu_out_of_range
from pinning_hook.problems import Problem, ProblemList


@dataclasses.dataclass(frozen=True)
class Plan:
    """The cpuset of every pinned vCPU, and what went wrong on the way."""

    # Number of vCPUs in the domain: the `<vcpu>` value, the maximum when
    # vCPU hotplug is configured.
    vcpu_count: int
    # Host CPUs that a pin may use; a floating vCPU runs on all of them.
    available: frozenset[int]
    # vCPU -> host CPUs, in vCPU order, for every vCPU that gets a `<vcpupin>`.
    pins: Mapping[int, frozenset[int]]
    problems: ProblemList = dataclasses.field(default_factory=ProblemList)

    def affinity(self, vcpu: int) -> frozenset[int]:
        """Return the host CPUs the vCPU will run on: its pin, or all available CPUs."""
        return self.pins.get(vcpu, self.available)


def plan_pins(
    entries: Iterable[PinEntry],
    *,
    vcpu_count: int,
    available: frozenset[int],
    existing_pins: Mapping[int, frozenset[int]] | None = None,
    unpinned: str = "",
) -> Plan:
    """Check each entry against the domain and the host, and build the Plan.

    `existing_pins` are the `<vcpupin>` elements the domain already has.
    They stay for every vCPU the entries do not pin successfully.
    `unpinned` describes, for the hints, what happens to a vCPU left without
    a pin under the policy in force. By default it floats.
    """
    pins = dict(existing_pins or {})
    problems = ProblemList()

    for entry in entries:
        # The common case, checked inline: a long list is mostly valid entries.
        if entry.vcpu < vcpu_count and entry.cpus <= available:
            pins[entry.vcpu] = entry.cpus
            continue
        problem = check_entry(
            entry, vcpu_count=vcpu_count, available=available, existing=pins.get(entry.vcpu), unpinned=unpinned
        )
        if problem is not None:
            problems.append(problem)
            continue
        pins[entry.vcpu] = entry.cpus

    ordered = {vcpu: pins[vcpu] for vcpu in sorted(pins)}
    return Plan(vcpu_count=vcpu_count, available=available, pins=ordered, problems=problems)


def _fallback(vcpu: int, existing: frozenset[int] | None, available: frozenset[int], unpinned: str) -> str:
    """Describe what happens to a vCPU whose entry is rejected."""
    if existing is not None:
        return f"vCPU {vcpu} keeps its pin {format_cpuset(existing)}"
    if unpinned:
        return f"vCPU {vcpu} {unpinned}"
    # Formatted only for a rejected entry, and cached: `available` may hold
    # thousands of CPUs, and formatting it for every entry would make
    # planning quadratic in the vCPU count.
    return f"vCPU {vcpu} floats over {format_available(available)}"


def check_entry(
    entry: PinEntry,
    *,
    vcpu_count: int,
    available: frozenset[int],
    existing: frozenset[int] | None = None,
    unpinned: str = "",
) -> Problem | None:
    """Return the Problem that keeps the entry from being applied, if any.

    `existing` and `unpinned` describe, for the hint, what happens to the
    vCPU instead; see plan_pins.
    """
    if entry.vcpu >= vcpu_count:
        return vcpu_out_of_range(entry, vcpu_count)

    missing = entry.cpus - available
    if missing:
        listed = format_available(available)
        fallback = _fallback(entry.vcpu, existing, available, unpinned)
        return Problem(
            code="cpu-not-available",
            message=f"impossible to pin {min(missing)} on host where we have only {describe_cpus(available)}",
            hint=f"entry {quote(entry.text)} is ignored and {fallback}; pin it to one of {listed}",
            entry=entry.text,
            vcpu=entry.vcpu,
        )
    return None


@functools.lru_cache(maxsize=16)
def format_available(cpus: frozenset[int]) -> str:
    """Format a set of available CPUs, caching the few sets that one process handles."""
    return format_cpuset(cpus)


@functools.lru_cache(maxsize=16)
def describe_cpus(cpus: frozenset[int]) -> str:
    """Describe a set of host CPUs by their count, listing them unless they are 0..count-1."""
    if cpus == frozenset(range(len(cpus))):
        return str(len(cpus))
    return f"{len(cpus)} ({format_available(cpus)})"
